//go:build linux && (amd64 || arm64)

package bpf_test

import (
	"encoding/binary"
	"testing"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

func TestEventSizeMatchesKernelLayout(t *testing.T) {
	// etcd_monitor.c's struct event: 5 x 4-byte fields after 8 bytes of
	// version/type/kind/len, 7 x 8-byte fields, comm[16] and file_name[48];
	// version 3 adds wait_ns[8], io_device_ns, other_wait_ip and 2 x 4-byte fields.
	if bpf.EventSize != 232 {
		t.Fatalf("EventSize = %d, want 232: the generated type no longer matches the record layout", bpf.EventSize)
	}
	if binary.Size(bpf.MonitorEvent{}) != bpf.EventSize {
		t.Fatalf("MonitorEvent has implicit padding: %d encoded bytes vs %d in memory", binary.Size(bpf.MonitorEvent{}), bpf.EventSize)
	}
}

func TestNames(t *testing.T) {
	for typ, want := range map[bpf.MonitorSyscallType]string{
		bpf.MonitorSyscallTypeSYSCALL_WRITE: "write", bpf.MonitorSyscallTypeSYSCALL_PWRITE64: "pwrite64",
		bpf.MonitorSyscallTypeSYSCALL_WRITEV: "writev", bpf.MonitorSyscallTypeSYSCALL_PWRITEV: "pwritev",
		bpf.MonitorSyscallTypeSYSCALL_FSYNC: "fsync", bpf.MonitorSyscallTypeSYSCALL_FDATASYNC: "fdatasync",
		bpf.MonitorSyscallTypeSYSCALL_SYNC_FILE_RANGE: "sync_file_range", 0: "unknown", 99: "unknown",
	} {
		if got := typ.String(); got != want {
			t.Errorf("MonitorSyscallType(%d) = %q, want %q", typ, got, want)
		}
	}
	for kind, want := range map[bpf.MonitorFdKind]string{
		bpf.MonitorFdKindFD_KIND_FILE: "file", bpf.MonitorFdKindFD_KIND_SOCKET: "socket", bpf.MonitorFdKindFD_KIND_PIPE: "pipe",
		bpf.MonitorFdKindFD_KIND_EVENTFD: "eventfd", bpf.MonitorFdKindFD_KIND_DIRECTORY: "directory",
		bpf.MonitorFdKindFD_KIND_OTHER: "other", bpf.MonitorFdKindFD_KIND_UNKNOWN: "unknown", 200: "other",
	} {
		if got := kind.String(); got != want {
			t.Errorf("MonitorFdKind(%d) = %q, want %q", kind, got, want)
		}
	}
}
