//go:build linux && (amd64 || arm64)

package bpf_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/recordtest"
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

func TestDecode(t *testing.T) {
	good := bpf.MonitorEvent{Version: bpf.RecordVersion, Type: uint16(bpf.MonitorSyscallTypeSYSCALL_FDATASYNC), Pid: 42, Tid: 43, Fd: 7, Ret: 0, DurationNs: 1234,
		WaitNs: [8]uint64{bpf.MonitorWaitKindWAIT_RUNNABLE: 200, bpf.MonitorWaitKindWAIT_JOURNAL: 1000}, Measured: uint32(bpf.MonitorRecordMeasuredMEASURED_SCHED)}
	withPayload := good
	withPayload.PayloadLen = 3
	tooLong := good
	tooLong.PayloadLen = 4
	wrongVersion := good
	wrongVersion.Version = bpf.RecordVersion + 1
	versionTwo := good // a record of version 2, before the waits
	versionTwo.Version = 2

	tests := []struct {
		name        string
		raw         []byte
		wantPayload []byte
		wantErr     string
	}{
		{name: "fixed part only", raw: recordtest.Encode(good, nil)},
		{name: "payload", raw: recordtest.Encode(withPayload, []byte("abc")), wantPayload: []byte("abc")},
		{name: "padding after payload is ignored", raw: recordtest.Encode(withPayload, []byte("abc\x00\x00\x00")), wantPayload: []byte("abc")},
		{name: "empty", raw: nil, wantErr: "shorter than the 232-byte event"},
		{name: "truncated", raw: recordtest.Encode(good, nil)[:bpf.EventSize-1], wantErr: "shorter than the 232-byte event"},
		{name: "payload longer than record", raw: recordtest.Encode(tooLong, []byte("abc")), wantErr: "claims 4 payload bytes but carries 3"},
		{name: "other version", raw: recordtest.Encode(wrongVersion, nil), wantErr: "out of step"},
		{name: "version 2", raw: recordtest.Encode(versionTwo, nil), wantErr: "record version 2, want 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, payload, err := bpf.Decode(tt.raw)
			if tt.wantErr != "" {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.wantErr)) {
					t.Fatalf("Decode error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.Pid != 42 || ev.Tid != 43 || ev.Fd != 7 || ev.DurationNs != 1234 || bpf.MonitorSyscallType(ev.Type).String() != "fdatasync" ||
				ev.WaitNs[bpf.MonitorWaitKindWAIT_JOURNAL] != 1000 || ev.WaitNs[bpf.MonitorWaitKindWAIT_RUNNABLE] != 200 || ev.Measured != uint32(bpf.MonitorRecordMeasuredMEASURED_SCHED) {
				t.Errorf("decoded %+v", ev)
			}
			if !bytes.Equal(payload, tt.wantPayload) {
				t.Errorf("payload = %q, want %q", payload, tt.wantPayload)
			}
		})
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

// FuzzDecode: no input panics, and what decodes is consistent with its input.
func FuzzDecode(f *testing.F) {
	ev := bpf.MonitorEvent{Version: bpf.RecordVersion, Type: 1, PayloadLen: 4}
	f.Add(recordtest.Encode(ev, []byte("data")))
	f.Add(recordtest.Encode(ev, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, payload, err := bpf.Decode(raw)
		if err != nil {
			return
		}
		if len(raw) < bpf.EventSize || ev.Version != bpf.RecordVersion {
			t.Fatalf("accepted %d bytes with version %d", len(raw), ev.Version)
		}
		if len(payload) != int(ev.PayloadLen) || len(payload) > bpf.PayloadMax || bpf.EventSize+len(payload) > len(raw) {
			t.Fatalf("payload of %d bytes for PayloadLen %d in %d raw bytes", len(payload), ev.PayloadLen, len(raw))
		}
		_ = bpf.MonitorSyscallType(ev.Type).String()
		_ = bpf.MonitorFdKind(ev.FdKind).String()
	})
}
