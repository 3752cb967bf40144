//go:build linux && (amd64 || arm64)

package tracer

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

// childEnv, when set, makes the test binary a child of TestStartUnprivileged:
// it calls Start once, prints the outcome on stdout and exits.
const childEnv = "ETCDEBPF_TRACER_TEST_CHILD"

func TestMain(m *testing.M) {
	if cpu, ok := strings.CutPrefix(os.Getenv(childEnv), "spin:"); ok {
		spin(cpu)
	}
	if path, ok := strings.CutPrefix(os.Getenv(childEnv), "direct:"); ok {
		rewriteDirect(path)
	}
	if args, ok := strings.CutPrefix(os.Getenv(childEnv), "syncs:"); ok {
		syncLoop(args)
	}
	if dir, ok := strings.CutPrefix(os.Getenv(childEnv), "dirty:"); ok {
		dirtyNewFiles(dir)
	}
	if os.Getenv(childEnv) == "start" {
		if name := os.Getenv(childSeccompEnv); name != "" {
			if err := refuseBySeccomp(name); err != nil {
				fmt.Printf("SECCOMP-ERROR: %v\n", err)
				os.Exit(0)
			}
		}
		// The limit a service starts with (the kernel's default before 5.16), not
		// the unlimited one it inherits from the test, which raised its own.
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 64 << 10, Max: 64 << 10}); err != nil {
			fmt.Printf("SETRLIMIT-ERROR: %v\n", err)
			os.Exit(0)
		}
		t, err := Start(Options{Comm: "etcd", RingBufferSize: 1 << 20})
		if err != nil {
			fmt.Printf("START-ERROR: %v\n", err)
		} else {
			fmt.Println("START-OK")
			t.Close()
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// replace sets *v to value for the rest of the test.
func replace[T any](t *testing.T, v *T, value T) {
	old := *v
	*v = value
	t.Cleanup(func() { *v = old })
}

func TestStartHostileHosts(t *testing.T) {
	tmp := t.TempDir()
	regular := filepath.Join(tmp, "regular-file")
	require.NoError(t, os.WriteFile(regular, nil, 0o644))
	missingBTF := filepath.Join(tmp, "no-btf", "vmlinux")
	notTracefs := filepath.Join(regular, "tracing") // inside a regular file: stat and mount fail with ENOTDIR
	missingCgroup := filepath.Join(tmp, "missing")
	plainDir := t.TempDir()

	tests := []struct {
		name      string
		needsRoot bool // the failure comes after steps that need privileges
		setup     func(t *testing.T)
		opts      Options
		want      []string // each must appear in the error
	}{
		{
			name:  "no kernel BTF",
			setup: func(t *testing.T) { replace(t, &btfPath, missingBTF) },
			want:  []string{"BTF", missingBTF, "CONFIG_DEBUG_INFO_BTF=y"},
		},
		{
			name:  "kernel older than the oldest tested",
			setup: func(t *testing.T) { replace(t, &kernelRelease, func() string { return "5.4.0-150-generic" }) },
			want:  []string{"Linux 5.4.0-150-generic", "needs Linux 5.10 or newer"},
		},
		{
			name:  "kernel release unreadable",
			setup: func(t *testing.T) { replace(t, &kernelRelease, func() string { return "(unknown release)" }) },
			want:  []string{"cannot read the kernel version", "(unknown release)"},
		},
		{
			name:      "no ring buffer",
			needsRoot: true,
			setup: func(t *testing.T) {
				replace(t, &haveRingBuf, func() error {
					return fmt.Errorf("detecting support for map type RingBuf: %w", ebpf.ErrNotSupported)
				})
			},
			want: []string{"no BPF ring buffer", "5.10 or newer"},
		},
		{
			name:      "tracefs neither mounted nor mountable",
			needsRoot: true,
			setup:     func(t *testing.T) { replace(t, &tracefsDirs, []string{notTracefs}) },
			want:      []string{"tracefs is not mounted", "mount -t tracefs tracefs " + notTracefs, "not a directory"},
		},
		{
			name:      "cgroup path missing",
			needsRoot: true,
			opts:      Options{CgroupPath: missingCgroup},
			want:      []string{"cgroup_path", missingCgroup, "no such file or directory", "existing cgroup v2 directory"},
		},
		{
			name:      "cgroup path not on cgroup2",
			needsRoot: true,
			opts:      Options{CgroupPath: plainDir},
			want:      []string{"cgroup_path", plainDir, "not on a cgroup v2 file system", "/sys/fs/cgroup"},
		},
		{
			// Fails after the programs and maps are loaded: the deferred Close must free them.
			name:      "more pids than the target_pids map holds",
			needsRoot: true,
			opts:      Options{PIDs: sequence(4097)},
			want:      []string{"adding pid 4097 to the target_pids map"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needsRoot {
				bpftest.RequireBPF(t)
			}
			if tt.setup != nil {
				tt.setup(t)
			}
			opts := tt.opts
			opts.Comm, opts.RingBufferSize = "etcd", 1<<20
			before := bpftest.OpenFDs(t)
			tr, err := Start(opts)
			if tr != nil {
				tr.Close()
			}
			require.Error(t, err)
			require.Nil(t, tr, "no tracer on error")
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			bpftest.RequireNoNewFDs(t, before)
		})
	}
}

func sequence(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i + 1
	}
	return s
}

func TestStartDefaults(t *testing.T) {
	bpftest.RequireBPF(t)
	found := false
	for _, dir := range tracefsDirs {
		if _, err := os.Stat(dir + "/events/syscalls"); err == nil {
			found = true
		}
	}
	if !found {
		t.Skipf("no syscall tracepoints under %v", tracefsDirs)
	}
	// Warm the library's caches (kernel BTF, feature probes) so that the fd
	// comparison sees only what this Start holds.
	warm, err := Start(Options{Comm: "etcd", RingBufferSize: 1 << 20})
	require.NoError(t, err)
	require.NoError(t, warm.Close())

	before := bpftest.OpenFDs(t)
	var tr *Tracer
	objs := bpftest.Started(t, func() {
		tr, err = Start(Options{Comm: "etcd", RingBufferSize: 1 << 20})
		require.NoError(t, err)
	})
	require.NotNil(t, tr.reader)
	assert.Len(t, objs.Programs, 15, "an enter and an exit per syscall, and sched_switch's")
	assert.Len(t, objs.Maps, 21)         // 16 of its own, the 5 it shares with the disks' view (bpf/disk.h)
	bpftest.RequireLinks(t, objs, 14, 0) // scheduler off: sched_switch's program is loaded, not attached
	_, err = tr.Counters()
	require.NoError(t, err)
	require.NoError(t, tr.Close())
	require.NoError(t, tr.Close(), "Close twice")
	bpftest.RequireNoNewFDs(t, before)
	bpftest.RequireGone(t, objs)
}

// TestStartUnprivileged runs Start as nobody in a child copy of the test
// binary. A uid change away from root clears every capability; each case raises
// some as ambient capabilities. Tracepoint programs need CAP_BPF and CAP_PERFMON
// whatever kernel.unprivileged_bpf_disabled says, so without them Start fails.
func TestStartUnprivileged(t *testing.T) {
	bpftest.RequireBPF(t)
	exe, err := os.Executable()
	require.NoError(t, err)
	dir := t.TempDir() // 0700 under root, as is its parent: nobody could not reach the copy
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	bin := filepath.Join(dir, "tracer.test")
	data, err := os.ReadFile(exe)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, data, 0o755))
	sysctl, _ := os.ReadFile("/proc/sys/kernel/unprivileged_bpf_disabled")
	t.Logf("kernel.unprivileged_bpf_disabled = %s", strings.TrimSpace(string(sysctl)))
	tracefs, err := os.Stat(tracefsDirs[0])
	require.NoError(t, err)
	tracefsOpen := tracefs.Mode().Perm()&0o001 != 0 // can others search it?

	run := func(t *testing.T, caps ...uintptr) string {
		t.Helper()
		var bounding uint64
		status, err := os.ReadFile("/proc/self/status")
		require.NoError(t, err)
		for line := range strings.Lines(string(status)) {
			if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
				_, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &bounding)
				require.NoError(t, err)
			}
		}
		for _, c := range caps {
			if bounding&(1<<c) == 0 {
				t.Skipf("capability %d is not in this process's bounding set", c)
			}
		}
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), childEnv+"=start")
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
			AmbientCaps: caps,
		}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "child: %s", out)
		msg := strings.TrimSpace(string(out))
		t.Logf("as nobody: %s", msg)
		return msg
	}

	t.Run("no capabilities", func(t *testing.T) {
		msg := run(t)
		require.True(t, strings.HasPrefix(msg, "START-ERROR: "), "nobody must not be able to trace: %s", msg)
		assert.Contains(t, msg, "operation not permitted", "the kernel's refusal is kept")
		assert.Contains(t, msg, "as root", "the message says to run as root")
		assert.Contains(t, msg, "run the collector as root")
		assert.Contains(t, msg, "lacks CAP_BPF")
		assert.Contains(t, msg, "CAP_PERFMON")
	})

	// Before 5.11 BPF maps are charged to RLIMIT_MEMLOCK, which only
	// CAP_SYS_RESOURCE may raise.
	bpfCaps := []uintptr{unix.CAP_BPF, unix.CAP_PERFMON}
	if !bpftest.KernelAtLeast(t, 5, 11) {
		t.Run("without CAP_SYS_RESOURCE before 5.11", func(t *testing.T) {
			msg := run(t, unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_DAC_READ_SEARCH)
			require.True(t, strings.HasPrefix(msg, "START-ERROR: "), "RLIMIT_MEMLOCK cannot be raised: %s", msg)
			assert.Contains(t, msg, "lacks CAP_SYS_RESOURCE (before Linux 5.11 BPF maps are charged to RLIMIT_MEMLOCK", "the cause")
			assert.Contains(t, msg, "grant it CAP_SYS_RESOURCE", "and the fix")
		})
		bpfCaps = append(bpfCaps, unix.CAP_SYS_RESOURCE)
	}

	t.Run("CAP_BPF and CAP_PERFMON", func(t *testing.T) {
		msg := run(t, bpfCaps...)
		if tracefsOpen {
			require.Equal(t, "START-OK", msg, "%s is searchable by others", tracefsDirs[0])
			return
		}
		// BPF is allowed, but tracefs (mode 0700 here) cannot be searched
		// and nobody may not mount another.
		require.True(t, strings.HasPrefix(msg, "START-ERROR: "), "%s is %v: %s", tracefsDirs[0], tracefs.Mode(), msg)
		assert.Contains(t, msg, "tracefs")
		assert.Contains(t, msg, tracefsDirs[0])
		assert.True(t, strings.Contains(msg, "permission denied") || strings.Contains(msg, "operation not permitted"),
			"the kernel's refusal is kept")
		assert.Contains(t, msg, "as root")
		assert.Contains(t, msg, "CAP_DAC_READ_SEARCH")
	})

	// Reading tracefs's event ids is the last need.
	enough := append(bpfCaps, unix.CAP_DAC_READ_SEARCH)

	// Debian's kernels add perf_event_paranoid level 3 (their default):
	// no perf event, so no tracepoint, without CAP_SYS_ADMIN.
	if paranoid := perfEventParanoid(); paranoid > 2 {
		t.Run(fmt.Sprintf("without CAP_SYS_ADMIN at perf_event_paranoid %d", paranoid), func(t *testing.T) {
			msg := run(t, enough...)
			require.True(t, strings.HasPrefix(msg, "START-ERROR: "), "perf_event_paranoid %d: %s", paranoid, msg)
			assert.Contains(t, msg, fmt.Sprintf("kernel.perf_event_paranoid is %d", paranoid))
			assert.Contains(t, msg, "CAP_SYS_ADMIN")
			assert.Contains(t, msg, "sysctl kernel.perf_event_paranoid=2")
			assert.Contains(t, msg, "permission denied", "the kernel's refusal is kept")
		})
		setPerfEventParanoid(t, 2)
	}

	t.Run("enough capabilities", func(t *testing.T) {
		msg := run(t, enough...)
		require.Equal(t, "START-OK", msg)
	})
}

// setPerfEventParanoid sets kernel.perf_event_paranoid for the rest of the test.
func setPerfEventParanoid(t *testing.T, level int) {
	const path = "/proc/sys/kernel/perf_event_paranoid"
	old, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, []byte(strconv.Itoa(level)), 0))
	t.Cleanup(func() { require.NoError(t, os.WriteFile(path, old, 0)) })
}

// A verifier rejection names the verifier and its log, never a privilege: the
// verifier refuses with EACCES too.
func TestExplainLoadError(t *testing.T) {
	bpftest.RequireBPF(t)
	_, rejected := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.TracePoint,
		Instructions: asm.Instructions{asm.Mov.Reg(asm.R0, asm.R2), asm.Return()}, // R2 is never set
		License:      "GPL",
	})
	require.Error(t, rejected)
	tests := []struct {
		name    string
		err     error
		want    []string
		notWant string
	}{
		{
			name:    "verifier",
			err:     fmt.Errorf("field ExitWrite: program exit_write: %w", rejected),
			want:    []string{"verifier rejected", "Linux " + kernelRelease(), "program exit_write", "last lines of the verifier log", "R2 !read_ok"},
			notWant: "as root",
		},
		{
			name: "privilege",
			err:  fmt.Errorf("field ExitWrite: program exit_write: load program: %w", unix.EPERM),
			want: []string{"refused", "run the collector as root", "CAP_BPF", "operation not permitted"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := explainLoadError(tt.err).Error()
			for _, w := range tt.want {
				assert.Contains(t, msg, w)
			}
			if tt.notWant != "" {
				assert.NotContains(t, msg, tt.notWant)
			}
		})
	}
}

func TestExplainAttachError(t *testing.T) {
	refused := fmt.Errorf("opening tracepoint perf event: %w", unix.EACCES)
	tests := []struct {
		name     string
		paranoid int
		err      error
		want     []string
	}{
		{"paranoid 3", 3, refused, []string{"sys_exit_write was refused", "perf_event_paranoid is 3", "CAP_SYS_ADMIN", "sysctl kernel.perf_event_paranoid=2", "permission denied"}},
		{"paranoid 2", 2, refused, []string{"sys_exit_write was refused", "CAP_PERFMON", "permission denied"}},
		{"not a privilege", 3, fmt.Errorf("opening tracepoint perf event: %w", unix.ENOENT), []string{"attaching to tracepoint syscalls:sys_exit_write: opening"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			replace(t, &perfEventParanoid, func() int { return tt.paranoid })
			msg := explainAttachError("syscalls:sys_exit_write", tt.err).Error()
			for _, w := range tt.want {
				assert.Contains(t, msg, w)
			}
		})
	}
}

// Every configurable payload_bytes loads and copies exactly the start of each
// write. The payload area's size is a load-time constant; the verifiers of 5.10
// and 6.1 rejected every size but 0 and 256 until the copy's size was bounded in
// the register the helper receives (make kernels runs this on them).
func TestPayloadCaptureAtEverySize(t *testing.T) {
	bpftest.RequireBPF(t)
	writer := bpftest.BuildWriter(t)
	const writes, size = 3, 300 // more than PayloadMax: every size is copied whole
	for _, n := range []int{0, 1, 7, 8, 63, 64, 255, 256} {
		t.Run(fmt.Sprintf("payload_bytes %d", n), func(t *testing.T) {
			w := bpftest.StartWriter(t, writer, writes, size)
			tr, err := Start(Options{Comm: "etcd", PIDs: []int{w.PID()}, RingBufferSize: 1 << 20, PayloadBytes: n})
			require.NoError(t, err)
			defer tr.Close()
			w.Release(t, time.Minute)
			// Three records are too few to wake the reader: read what is pending.
			require.NoError(t, tr.reader.Flush())
			tr.reader.SetDeadline(time.Now().Add(10 * time.Second))
			for i := range writes {
				rec, err := tr.reader.Read()
				require.NoError(t, err, "record %d of %d", i+1, writes)
				ev, payload, err := decodeEvent(rec.RawSample)
				require.NoError(t, err)
				require.EqualValues(t, w.PID(), ev.Pid)
				require.EqualValues(t, size, ev.Ret)
				require.Equal(t, bpftest.WriterData(size)[:n], payload, "the first %d bytes of the write", n)
			}
		})
	}
}
