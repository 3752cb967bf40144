//go:build linux && (amd64 || arm64)

package tracer

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

// childSeccompEnv, beside childEnv, names a system call the child filters out
// with seccomp (answering EPERM, as runtimes' default profiles do) before Start.
const childSeccompEnv = "ETCDEBPF_TRACER_TEST_SECCOMP"

// refuseBySeccomp installs, on every thread of this process, a seccomp filter
// that answers EPERM to the system call name and lets every other through.
func refuseBySeccomp(name string) error {
	nr := map[string]uint32{"bpf": unix.SYS_BPF, "perf_event_open": unix.SYS_PERF_EVENT_OPEN}[name]
	const (
		loadNr  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS // seccomp_data.nr is at offset 0
		jumpIfK = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		retK    = unix.BPF_RET | unix.BPF_K
	)
	filter := []unix.SockFilter{
		{Code: loadNr, K: 0},
		{Code: jumpIfK, Jt: 0, Jf: 1, K: nr},
		{Code: retK, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: retK, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC,
		uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return errno
	}
	return nil
}

// startChild runs Start in a child copy of the test binary, as root, through
// wrapper (a command line ahead of the binary, or none), and returns its verdict.
func startChild(t *testing.T, env []string, wrapper ...string) string {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	args := append(wrapper, exe, "-test.run=^$")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(append(os.Environ(), childEnv+"=start"), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "child: %s", out)
	msg := strings.TrimSpace(string(out))
	t.Logf("child: %s", msg)
	return msg
}

// Start refuses a PID namespace other than the kernel's first, where the pids
// the programs record name other processes or none, and says what to set.
func TestStartOutsideTheHostPIDNamespace(t *testing.T) {
	bpftest.RequireBPF(t)
	unshare, err := exec.LookPath("unshare")
	require.NoError(t, err, "unshare (util-linux) makes the PID namespace")

	msg := startChild(t, nil, unshare, "--pid", "--fork", "--mount-proc")
	require.True(t, strings.HasPrefix(msg, "START-ERROR: "), "Start must fail in a new PID namespace: %s", msg)
	assert.Contains(t, msg, "not in the host's PID namespace")
	assert.Contains(t, msg, "hostPID: true")
	assert.Contains(t, msg, "--pid=host")
	assert.Equal(t, 1, strings.Count(msg, "\n")+1, "one line")

	assert.Equal(t, "START-OK", startChild(t, nil), "the same child in the host's namespace")
}

// Under a seccomp filter that refuses bpf(2) or perf_event_open(2), as container
// runtimes' default profiles do without CAP_SYS_ADMIN, Start names seccomp and
// the call, not memlock or a capability the collector holds.
func TestStartUnderSeccomp(t *testing.T) {
	bpftest.RequireBPF(t)
	for _, tt := range []struct{ syscall, want string }{
		{"bpf", "bpf(2) is refused by the collector's seccomp filter"},
		{"perf_event_open", "perf_event_open(2) is refused by the collector's seccomp filter"},
	} {
		t.Run(tt.syscall, func(t *testing.T) {
			msg := startChild(t, []string{childSeccompEnv + "=" + tt.syscall})
			require.True(t, strings.HasPrefix(msg, "START-ERROR: "), "Start must fail: %s", msg)
			assert.Contains(t, msg, tt.want)
			assert.Contains(t, msg, "Seccomp: 2")
			assert.Contains(t, msg, filepath.Join("examples", "kubernetes", "seccomp", "etcdebpf.json"))
			assert.Contains(t, msg, "operation not permitted", "the refusal is kept")
			assert.NotContains(t, msg, "MEMLOCK")
			assert.NotContains(t, msg, "lacks")
		})
	}
}

func TestMissingCapabilities(t *testing.T) {
	const (
		bpf      = 1 << unix.CAP_BPF
		perfmon  = 1 << unix.CAP_PERFMON
		admin    = 1 << unix.CAP_SYS_ADMIN
		resource = 1 << unix.CAP_SYS_RESOURCE
	)
	for _, tt := range []struct {
		name      string
		effective uint64
		before511 bool
		want      []string
	}{
		{"none", 0, false, []string{"CAP_BPF", "CAP_PERFMON"}},
		{"none before 5.11", 0, true, []string{"CAP_BPF", "CAP_PERFMON", "CAP_SYS_RESOURCE"}},
		{"CAP_BPF only", bpf, false, []string{"CAP_PERFMON"}},
		{"CAP_PERFMON only", perfmon, false, []string{"CAP_BPF"}},
		{"both", bpf | perfmon, false, nil},
		{"both before 5.11", bpf | perfmon, true, []string{"CAP_SYS_RESOURCE"}},
		{"CAP_SYS_ADMIN stands in for both", admin, false, nil},
		{"but not for CAP_SYS_RESOURCE", admin, true, []string{"CAP_SYS_RESOURCE"}},
		{"root", ^uint64(0) >> 23, true, nil},
		{"all three before 5.11", bpf | perfmon | resource, true, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, processStatus{effective: tt.effective}.missingCapabilities(tt.before511))
		})
	}
}

func TestReadProcessStatus(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status")
	require.NoError(t, os.WriteFile(path, []byte("Name:\totelcol-etcd\nCapEff:\t000000c001000000\nSeccomp:\t2\nSeccomp_filters:\t1\n"), 0o600))
	replace(t, &statusPath, path)
	st, err := readProcessStatus()
	require.NoError(t, err)
	assert.Equal(t, 2, st.seccomp)
	assert.True(t, st.has(unix.CAP_BPF))
	assert.True(t, st.has(unix.CAP_PERFMON))
	assert.True(t, st.has(unix.CAP_SYS_RESOURCE))
	assert.False(t, st.has(unix.CAP_SYS_ADMIN))
}
