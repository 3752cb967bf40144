//go:build linux && (amd64 || arm64)

// Package bpftest gates tests on what they need from the host: root for BPF, an
// etcd binary. Where ETCDEBPF_REQUIRE_ALL=1 (CI sets it), a missing need fails the
// test instead of skipping it, so CI cannot pass by skipping the tests that matter.
package bpftest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpfobjects"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter"
)

// SkipOrFail skips the test for reason, a need the host does not meet, or fails
// it under ETCDEBPF_REQUIRE_ALL=1.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("ETCDEBPF_REQUIRE_ALL") == "1" {
		t.Fatalf("%s (ETCDEBPF_REQUIRE_ALL=1 forbids skipping)", reason)
	}
	t.Skip(reason)
}

// Log is a writer into t's log, a line a Write: for the progress of a build.
func Log(t testing.TB) io.Writer { return testLog{t} }

type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// KernelAtLeast reports whether the running kernel is major.minor or newer.
func KernelAtLeast(t testing.TB, major, minor int) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var have [2]int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &have[0], &have[1]); err != nil {
		t.Fatalf("kernel release %q: %v", u.Release, err)
	}
	return have[0] > major || have[0] == major && have[1] >= minor
}

// RequireLinks checks the BPF links a started tracer holds: one per attached
// program, where there are BPF links for tracepoints at all. Raw tracepoints
// (sched_switch's) attach through a BPF link on every kernel the receiver runs on.
func RequireLinks(t testing.TB, objs bpfobjects.Held, tracepoints, rawTracepoints int) {
	t.Helper()
	if KernelAtLeast(t, 5, 15) {
		if len(objs.Links) != tracepoints+rawTracepoints {
			t.Fatalf("%d BPF links, want one per attached program (%d)", len(objs.Links), tracepoints+rawTracepoints)
		}
		return
	}
	if len(objs.Links) != rawTracepoints {
		t.Fatalf("%d BPF links before Linux 5.15, want %d: tracepoints attach through perf events there, which are no BPF links; raw tracepoints are",
			len(objs.Links), rawTracepoints)
	}
	t.Logf("before Linux 5.15 only raw tracepoints attach through BPF links: tracepoints' perf events are not checked; their programs and maps are")
}

// RequireBPF skips the test unless it can load BPF programs: it needs root.
func RequireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root (CAP_BPF, CAP_PERFMON) to load BPF programs: run the tests with sudo")
	}
}

// RequireEtcd returns the path of an etcd server binary, or skips.
func RequireEtcd(t testing.TB) string {
	t.Helper()
	bin, err := etcdtest.Binary()
	if err != nil {
		SkipOrFail(t, err.Error())
	}
	return bin
}

// NamedCopy copies the executable at src to a temporary file called name, so
// that a process started from it has name as its comm.
func NamedCopy(t testing.TB, src, name string) string {
	t.Helper()
	path, err := exec.LookPath(src)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// RunDecoy runs dd under another process name, writing and syncing a small file,
// and returns its pid: a process a tracer must not (or, named etcd, may) collect.
func RunDecoy(t testing.TB, name string) int {
	t.Helper()
	cmd := exec.Command(NamedCopy(t, "dd", name), "if=/dev/zero", "of="+filepath.Join(t.TempDir(), "decoy.wal"),
		"bs=512", "count=20", "oflag=dsync", "conv=fdatasync", "status=none")
	if err := cmd.Run(); err != nil {
		t.Fatalf("decoy %s: %v", name, err)
	}
	return cmd.Process.Pid
}

// Started runs start, which loads BPF objects in this process (a tracer or a
// receiver starting), and returns the objects this process holds afterwards and
// did not hold before. It reads them from the kernel, not from the code under
// test. Tests that load BPF objects do not run in parallel, so that what changed
// is start's.
func Started(t testing.TB, start func()) bpfobjects.Held {
	t.Helper()
	before, err := bpfobjects.HeldBy(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	start()
	after, err := bpfobjects.HeldBy(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return after.Since(before)
}

// RequireAlive fails the test unless every object in objs is in the kernel.
func RequireAlive(t testing.TB, objs bpfobjects.Held) {
	t.Helper()
	if alive := objs.Alive(); alive != objs.Len() {
		t.Fatalf("%d of the %d programs, %d maps and %d links are in the kernel", alive, len(objs.Programs), len(objs.Maps), len(objs.Links))
	}
}

// RequireGone fails the test if any object in objs is still in the kernel
// shortly after it was released.
func RequireGone(t testing.TB, objs bpfobjects.Held) {
	t.Helper()
	if err := objs.WaitGone(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// OpenFDs lists this process's open file descriptors and what they refer to:
// every BPF program, map, link and ring buffer is one, and nothing outlives its
// fd (nothing is pinned), so an unchanged set means nothing was left loaded.
func OpenFDs(t testing.TB) map[string]string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := make(map[string]string, len(entries))
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the directory's own fd, closed by now
		}
		fds[e.Name()] = target
	}
	return fds
}

// RequireNoNewFDs fails the test if fds were opened since before (OpenFDs) and
// are still open.
func RequireNoNewFDs(t testing.TB, before map[string]string) {
	t.Helper()
	var leaked []string
	for fd, target := range OpenFDs(t) {
		if before[fd] != target {
			leaked = append(leaked, fd+" -> "+target)
		}
	}
	if len(leaked) > 0 {
		t.Fatalf("file descriptors left open (BPF objects are fds): %v", leaked)
	}
}

// Writer is a process named etcd that makes an exact number of write(2) calls
// once released (package etcdwriter).
type Writer struct {
	Cmd   *exec.Cmd
	start io.WriteCloser
}

// BuildWriter builds the writer into a temporary file named etcd.
func BuildWriter(t testing.TB) string {
	t.Helper()
	bin, err := etcdwriter.Build(t.TempDir(), "etcd")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// WriterData is the data of each of etcdwriter's writes of size bytes.
func WriterData(size int) []byte {
	data := make([]byte, size)
	for i := range data {
		data[i] = 'a' + byte(i%26)
	}
	return data
}

// StartWriter starts bin, which waits for Release before making n writes of size bytes.
func StartWriter(t testing.TB, bin string, n, size int) *Writer {
	t.Helper()
	return StartWriterWith(t, bin, etcdwriter.Options{Calls: int64(n), Size: size})
}

// StartWriterWith is StartWriter with any of the writer's options (a rate, threads,
// a file); it too waits for Release before the first write.
func StartWriterWith(t testing.TB, bin string, o etcdwriter.Options) *Writer {
	t.Helper()
	o.Wait = true
	cmd := exec.Command(bin, o.Args()...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return &Writer{Cmd: cmd, start: stdin}
}

// PID is the writer's process id.
func (w *Writer) PID() int { return w.Cmd.Process.Pid }

// Release lets the writer start and waits, at most timeout, for it to finish.
func (w *Writer) Release(t testing.TB, timeout time.Duration) {
	t.Helper()
	w.Begin(t)
	w.Wait(t, timeout)
}

// Begin lets the writer start, and returns at once.
func (w *Writer) Begin(t testing.TB) {
	t.Helper()
	if _, err := w.start.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
}

// Wait waits, at most timeout, for the writer Begin let start to finish.
func (w *Writer) Wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- w.Cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	case <-time.After(timeout):
		t.Fatalf("the writer did not finish within %v: was it blocked?", timeout)
	}
}

// StartImpostor starts an unprivileged process (uid and gid 65534) named etcd
// that floods write(2) to /dev/null until the test ends, and returns its pid: what
// any local user can run against a receiver that selects etcd by name.
func StartImpostor(t testing.TB) int {
	t.Helper()
	bin := BuildWriter(t)
	// nobody must reach the binary: open the temporary directories on its path.
	for dir := filepath.Dir(bin); dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, etcdwriter.Options{Calls: 1 << 40, Size: 64}.Args()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the impostor as uid 65534: %v", err)
	}
	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)); err != nil || !strings.Contains(string(status), "\nUid:\t65534\t") {
		t.Fatalf("the impostor does not run as uid 65534 (%v)", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

// InMemory reports whether dir is on a file system held in memory (tmpfs, ramfs:
// the QEMU guests' root), where a sync has no disk to wait for.
func InMemory(t testing.TB, dir string) bool {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	return fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC
}
