//go:build linux && (amd64 || arm64)

package tracer

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

// encodeEvent lays out ev and payload as they are, including what
// EncodeRecord would never write: another version, a PayloadLen that lies.
func encodeEvent(t testing.TB, ev bpf.MonitorEvent, payload []byte) []byte {
	raw, err := binary.Append(nil, binary.LittleEndian, ev)
	require.NoError(t, err)
	return append(raw, payload...)
}

func TestDecodeRecord(t *testing.T) {
	good := bpf.MonitorEvent{Version: bpf.RecordVersion, Type: uint16(SyscallFdatasync), Pid: 42, Tid: 43, Fd: 7, Ret: 0, DurationNs: 1234,
		WaitNs: [8]uint64{WaitRunnable: 200, WaitJournal: 1000}, Measured: uint32(bpf.MonitorRecordMeasuredMEASURED_SCHED)}
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
		{name: "fixed part only", raw: encodeEvent(t, good, nil)},
		{name: "payload", raw: encodeEvent(t, withPayload, []byte("abc")), wantPayload: []byte("abc")},
		{name: "padding after payload is ignored", raw: encodeEvent(t, withPayload, []byte("abc\x00\x00\x00")), wantPayload: []byte("abc")},
		{name: "empty", raw: nil, wantErr: "shorter than the 232-byte event"},
		{name: "truncated", raw: encodeEvent(t, good, nil)[:eventSize-1], wantErr: "shorter than the 232-byte event"},
		{name: "payload longer than record", raw: encodeEvent(t, tooLong, []byte("abc")), wantErr: "claims 4 payload bytes but carries 3"},
		{name: "other version", raw: encodeEvent(t, wrongVersion, nil), wantErr: "out of step"},
		{name: "version 2", raw: encodeEvent(t, versionTwo, nil), wantErr: "record version 2, want 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := decodeRecord(tt.raw)
			if tt.wantErr != "" {
				require.ErrorIs(t, err, ErrMalformedRecord)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			waits, ok := rec.Waits()
			assert.True(t, ok)
			assert.Equal(t, [WaitKinds]uint64{WaitRunnable: 200, WaitJournal: 1000}, waits.Ns)
			assert.Equal(t, RecordFields{Syscall: SyscallFdatasync, PID: 42, TID: 43, FD: 7, DurationNs: 1234}, withoutWaits(rec.Fields()))
			assert.Equal(t, string(tt.wantPayload), string(rec.Payload()))
			assert.Equal(t, tt.raw, rec.Raw(), "the record is a view of its bytes, padding included")
		})
	}
}

func withoutWaits(f RecordFields) RecordFields {
	f.Waits, f.Payload, f.PayloadArea = nil, nil, 0
	return f
}

// The ring's records are read in place: decoding one and reading every field
// the log records carry allocates nothing.
func TestDecodeRecordAllocatesNothing(t *testing.T) {
	raw := EncodeRecord(RecordFields{Syscall: SyscallWrite, Comm: "etcd", FileName: "0000000000000000-0000000000000000.wal",
		Waits: &Waits{}, Payload: []byte("data"), PayloadArea: PayloadMax})
	var sink int
	allocs := testing.AllocsPerRun(1000, func() {
		rec, err := decodeRecord(raw)
		if err != nil {
			t.Fatal(err)
		}
		w, _ := rec.Waits()
		sink += len(rec.Raw()) + len(rec.CommName()) + len(rec.FileName()) + len(rec.Payload()) + int(w.Ns[0]) + int(rec.Comm()[0])
	})
	assert.Zero(t, allocs)
	assert.NotZero(t, sink)
}

func BenchmarkDecodeRecord(b *testing.B) {
	raw := EncodeRecord(RecordFields{Syscall: SyscallWrite, Comm: "etcd", FileName: "0000000000000000-0000000000000000.wal"})
	b.ReportAllocs()
	for range b.N {
		rec, err := decodeRecord(raw)
		if err != nil || len(rec.FileName()) == 0 {
			b.Fatal(err)
		}
	}
}

// A record's names end at their NUL; a name that fills its field has none.
func TestRecordNames(t *testing.T) {
	ev := bpf.MonitorEvent{Version: bpf.RecordVersion, Type: uint16(SyscallWrite)}
	copy(ev.Comm[:], []int8{'e', 't', 'c', 'd'})
	for i := range ev.FileName {
		ev.FileName[i] = 'a'
	}
	rec, err := decodeRecord(encodeEvent(t, ev, nil))
	require.NoError(t, err)
	assert.Equal(t, "etcd", string(rec.CommName()))
	assert.Len(t, rec.FileName(), len(ev.FileName), "a full field has no NUL")
	assert.Equal(t, SyscallWrite, rec.Syscall())
}

// What EncodeRecord lays out decodes to the fields it was given, and the names
// are cut as the kernel cuts them, leaving room for their NUL.
func TestEncodeRecordRoundTrip(t *testing.T) {
	f := RecordFields{
		Syscall: SyscallPwrite64, FDKind: FDKindFile, PID: 4242, TID: 4251, FD: 12, Dev: 8<<20 | 1, CgroupID: 1234,
		Inode: 3670031, Count: 4096, Offset: 1 << 20, Ret: 4096, StartNs: 123456789012, DurationNs: 14500,
		Comm: "etcd", FileName: "db", OtherWaitIP: 0xffffffff81000100,
		Waits:   &Waits{Ns: [WaitKinds]uint64{WaitRunnable: 1_000, WaitFlush: 300_000}, IODeviceNs: 420_000, IODeviceKnown: true},
		Payload: []byte("abcd"), PayloadArea: 64,
	}
	raw := EncodeRecord(f)
	assert.Len(t, raw, eventSize+64, "the fixed part and the payload area")
	got, err := ParseRecord(raw)
	require.NoError(t, err)
	assert.Equal(t, f, got)
	assert.Equal(t, raw, EncodeRecord(got))

	unmeasured := RecordFields{Syscall: SyscallFsync, Offset: -1, Payload: []byte("xy")}
	assert.Equal(t, unmeasured, NewRecord(unmeasured).Fields(), "no waits, no payload area beyond the payload")

	long := NewRecord(RecordFields{Comm: strings.Repeat("c", 40), FileName: strings.Repeat("f", 100)})
	assert.Equal(t, strings.Repeat("c", CommLen-1), string(long.CommName()))
	assert.Equal(t, strings.Repeat("f", len(bpf.MonitorEvent{}.FileName)-1), string(long.FileName()))
}

// The domain names are the kernel's: every syscall and fd kind parses back.
func TestDomainNamesRoundTrip(t *testing.T) {
	for s := SyscallWrite; s <= SyscallSyncFileRange; s++ {
		got, ok := ParseSyscall(s.String())
		assert.True(t, ok, s.String())
		assert.Equal(t, s, got)
		assert.Equal(t, s <= SyscallPwritev, s.Writes(), s.String())
	}
	for k := FDKindUnknown; k <= FDKindOther; k++ {
		got, ok := ParseFDKind(k.String())
		assert.True(t, ok, k.String())
		assert.Equal(t, k, got)
	}
}

// FuzzDecodeRecord: no input panics, what decodes is consistent with its input,
// and every accessor of a decoded record reads within its bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(EncodeRecord(RecordFields{Syscall: SyscallWrite, Comm: "etcd", Payload: []byte("data")}))
	f.Add(EncodeRecord(RecordFields{Syscall: SyscallFdatasync, Waits: &Waits{}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		rec, err := decodeRecord(raw)
		if err != nil {
			if !errors.Is(err, ErrMalformedRecord) {
				t.Fatalf("error %v does not wrap ErrMalformedRecord", err)
			}
			return
		}
		if len(raw) < eventSize || rec.ev.Version != bpf.RecordVersion {
			t.Fatalf("accepted %d bytes with version %d", len(raw), rec.ev.Version)
		}
		payload := rec.Payload()
		if len(payload) != int(rec.ev.PayloadLen) || len(payload) > PayloadMax || eventSize+len(payload) > len(raw) {
			t.Fatalf("payload of %d bytes for PayloadLen %d in %d raw bytes", len(payload), rec.ev.PayloadLen, len(raw))
		}
		_, _, _ = rec.Syscall().String(), rec.FDKind().String(), rec.Fields()
	})
}
