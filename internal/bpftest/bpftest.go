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

	"github.com/cilium/ebpf"

	"github.com/etcdebpf/etcdebpfreceiver/internal/etcdtest"
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

// OurPrograms lists the ids of loaded BPF programs whose names are in names.
func OurPrograms(t testing.TB, names map[string]bool) []ebpf.ProgramID {
	t.Helper()
	var ids []ebpf.ProgramID
	for id, err := ebpf.ProgramGetNextID(0); err == nil; id, err = ebpf.ProgramGetNextID(id) {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded meanwhile
		}
		info, err := p.Info()
		p.Close()
		if err == nil && names[info.Name] {
			ids = append(ids, id)
		}
	}
	return ids
}
