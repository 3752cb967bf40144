//go:build linux

// Package bpftest gates tests on what they need from the host: root for BPF, an
// etcd binary. Where ETCDEBPF_REQUIRE_ALL=1 (CI sets it), a missing need fails the
// test instead of skipping it, so CI cannot pass by skipping the tests that matter.
package bpftest

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("ETCDEBPF_REQUIRE_ALL") == "1" {
		t.Fatalf("%s (ETCDEBPF_REQUIRE_ALL=1 forbids skipping)", reason)
	}
	t.Skip(reason)
}

// RequireBPF skips the test unless it can load BPF programs: it needs root.
func RequireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root (CAP_BPF, CAP_PERFMON) to load BPF programs: run the tests with sudo")
	}
}

// RequireEtcd returns the path of an etcd server binary, or skips.
func RequireEtcd(t testing.TB) string {
	t.Helper()
	bin, err := etcdtest.Binary()
	if err != nil {
		skipOrFail(t, err.Error())
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

// RequireAlive fails the test unless every object in objs is in the kernel.
func RequireAlive(t testing.TB, objs tracer.Objects) {
	t.Helper()
	if alive := countAlive(objs); alive != len(objs.Programs)+len(objs.Maps)+len(objs.Links) {
		t.Fatalf("%d of the tracer's %d+%d+%d programs, maps and links are in the kernel", alive, len(objs.Programs), len(objs.Maps), len(objs.Links))
	}
}

// RequireGone fails the test if any object in objs is still in the kernel
// shortly after it was released (the kernel frees them after an RCU grace period).
func RequireGone(t testing.TB, objs tracer.Objects) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for countAlive(objs) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d BPF objects of a closed tracer are still in the kernel: %+v", countAlive(objs), objs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countAlive(objs tracer.Objects) int {
	n := 0
	for _, id := range objs.Programs {
		if p, err := ebpf.NewProgramFromID(id); err == nil {
			p.Close()
			n++
		}
	}
	for _, id := range objs.Maps {
		if m, err := ebpf.NewMapFromID(id); err == nil {
			m.Close()
			n++
		}
	}
	for _, id := range objs.Links {
		if l, err := link.NewFromID(id); err == nil {
			l.Close()
			n++
		}
	}
	return n
}

// Writer is a process named etcd that makes an exact number of write(2) calls
// once released (internal/testing/etcdwriter).
type Writer struct {
	Cmd   *exec.Cmd
	start io.WriteCloser
}

// BuildWriter builds etcdwriter into a temporary file named etcd.
func BuildWriter(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "etcd")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter").CombinedOutput()
	if err != nil {
		t.Fatalf("building etcdwriter: %v\n%s", err, out)
	}
	return bin
}

// StartWriter starts bin, which waits for Release before making n writes of size bytes.
func StartWriter(t testing.TB, bin string, n, size int) *Writer {
	t.Helper()
	cmd := exec.Command(bin, "-n", strconv.Itoa(n), "-size", strconv.Itoa(size))
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
	if _, err := w.start.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
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
