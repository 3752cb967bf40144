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
