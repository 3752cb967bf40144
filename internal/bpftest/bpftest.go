//go:build linux

// Package bpftest gates tests on what they need from the host: root for BPF, an
// etcd binary. Where ETCDEBPF_REQUIRE_ALL=1 (CI sets it), a missing need fails the
// test instead of skipping it, so CI cannot pass by skipping the tests that matter.
package bpftest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/etcdebpf/etcdebpfreceiver/internal/etcdtest"
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
