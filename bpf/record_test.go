//go:build linux

package bpf

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// encode lays an event out as the kernel does (little endian, no padding).
func encode(t testing.TB, ev MonitorEvent, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, ev); err != nil {
		t.Fatal(err)
	}
	buf.Write(payload)
	return buf.Bytes()
}

func TestEventSizeMatchesKernelLayout(t *testing.T) {
	// etcd_monitor.c's struct event: 5 x 4-byte fields after 8 bytes of
	// version/type/kind/len, 7 x 8-byte fields, comm[16] and file_name[48].
	if EventSize != 144 {
		t.Fatalf("EventSize = %d, want 144: the generated type no longer matches the record layout", EventSize)
	}
	if binary.Size(MonitorEvent{}) != EventSize {
		t.Fatalf("MonitorEvent has implicit padding: %d encoded bytes vs %d in memory", binary.Size(MonitorEvent{}), EventSize)
	}
}

func TestDecode(t *testing.T) {
	good := MonitorEvent{Version: RecordVersion, Type: uint16(MonitorSyscallTypeSYSCALL_FDATASYNC), Pid: 42, Tid: 43, Fd: 7, Ret: 0, DurationNs: 1234}
	withPayload := good
	withPayload.PayloadLen = 3
	tooLong := good
	tooLong.PayloadLen = 4
	wrongVersion := good
	wrongVersion.Version = RecordVersion + 1

	tests := []struct {
		name        string
		raw         []byte
		wantPayload []byte
		wantErr     string
	}{
		{name: "fixed part only", raw: encode(t, good, nil)},
		{name: "payload", raw: encode(t, withPayload, []byte("abc")), wantPayload: []byte("abc")},
		{name: "padding after payload is ignored", raw: encode(t, withPayload, []byte("abc\x00\x00\x00")), wantPayload: []byte("abc")},
		{name: "empty", raw: nil, wantErr: "shorter than the 144-byte event"},
		{name: "truncated", raw: encode(t, good, nil)[:EventSize-1], wantErr: "shorter than the 144-byte event"},
		{name: "payload longer than record", raw: encode(t, tooLong, []byte("abc")), wantErr: "claims 4 payload bytes but carries 3"},
		{name: "other version", raw: encode(t, wrongVersion, nil), wantErr: "out of step"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, payload, err := Decode(tt.raw)
			if tt.wantErr != "" {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.wantErr)) {
					t.Fatalf("Decode error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.Pid != 42 || ev.Tid != 43 || ev.Fd != 7 || ev.DurationNs != 1234 || MonitorSyscallType(ev.Type).String() != "fdatasync" {
				t.Errorf("decoded %+v", ev)
			}
			if !bytes.Equal(payload, tt.wantPayload) {
				t.Errorf("payload = %q, want %q", payload, tt.wantPayload)
			}
		})
	}
}

func TestNames(t *testing.T) {
	for typ, want := range map[MonitorSyscallType]string{
		MonitorSyscallTypeSYSCALL_WRITE: "write", MonitorSyscallTypeSYSCALL_PWRITE64: "pwrite64",
		MonitorSyscallTypeSYSCALL_WRITEV: "writev", MonitorSyscallTypeSYSCALL_PWRITEV: "pwritev",
		MonitorSyscallTypeSYSCALL_FSYNC: "fsync", MonitorSyscallTypeSYSCALL_FDATASYNC: "fdatasync",
		MonitorSyscallTypeSYSCALL_SYNC_FILE_RANGE: "sync_file_range", 0: "unknown", 99: "unknown",
	} {
		if got := typ.String(); got != want {
			t.Errorf("MonitorSyscallType(%d) = %q, want %q", typ, got, want)
		}
	}
	for kind, want := range map[MonitorFdKind]string{
		MonitorFdKindFD_KIND_FILE: "file", MonitorFdKindFD_KIND_SOCKET: "socket", MonitorFdKindFD_KIND_PIPE: "pipe",
		MonitorFdKindFD_KIND_EVENTFD: "eventfd", MonitorFdKindFD_KIND_DIRECTORY: "directory",
		MonitorFdKindFD_KIND_OTHER: "other", MonitorFdKindFD_KIND_UNKNOWN: "unknown", 200: "other",
	} {
		if got := kind.String(); got != want {
			t.Errorf("MonitorFdKind(%d) = %q, want %q", kind, got, want)
		}
	}
}

// FuzzDecode: no input panics, and what decodes is consistent with its input.
func FuzzDecode(f *testing.F) {
	ev := MonitorEvent{Version: RecordVersion, Type: 1, PayloadLen: 4}
	f.Add(encode(f, ev, []byte("data")))
	f.Add(encode(f, ev, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, payload, err := Decode(raw)
		if err != nil {
			return
		}
		if len(raw) < EventSize || ev.Version != RecordVersion {
			t.Fatalf("accepted %d bytes with version %d", len(raw), ev.Version)
		}
		if len(payload) != int(ev.PayloadLen) || len(payload) > PayloadMax || EventSize+len(payload) > len(raw) {
			t.Fatalf("payload of %d bytes for PayloadLen %d in %d raw bytes", len(payload), ev.PayloadLen, len(raw))
		}
		_ = MonitorSyscallType(ev.Type).String()
		_ = MonitorFdKind(ev.FdKind).String()
	})
}
