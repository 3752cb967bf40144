//go:build linux && (amd64 || arm64)

package convert

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

func walSync() tracer.RecordFields {
	return tracer.RecordFields{
		Syscall: tracer.SyscallFdatasync, FDKind: tracer.FDKindFile, PID: 100, TID: 101, FD: 9, Inode: 555,
		Offset: -1, StartNs: 5_000_000_000, DurationNs: 244_000,
		Comm: "etcd", FileName: "0000000000000000-0000000000000000.wal",
	}
}

func TestAppendDecodedRecord(t *testing.T) {
	b := NewLogBuilder(true, "scope", "v1", 1)
	b.bootOffset = 1_700_000_000_000_000_000
	rec := tracer.NewRecord(walSync())
	observed := pcommon.Timestamp(42)
	b.Append(rec, observed)

	require.Equal(t, 1, b.Len())
	logs := b.Take(16)
	assert.Equal(t, 0, b.Len(), "take starts a new batch")
	require.Equal(t, 1, logs.ResourceLogs().Len())
	rl := logs.ResourceLogs().At(0)
	assert.Equal(t, map[string]any{AttrProcessPID: int64(100), AttrProcessExecName: "etcd"}, rl.Resource().Attributes().AsRaw(),
		"the process's identity is on the Resource")
	sl := rl.ScopeLogs().At(0)
	assert.Equal(t, "scope", sl.Scope().Name())
	assert.Equal(t, "v1", sl.Scope().Version())
	lr := sl.LogRecords().At(0)
	assert.Equal(t, pcommon.Timestamp(1_700_000_005_000_000_000), lr.Timestamp(), "entry time on the wall clock")
	assert.Equal(t, observed, lr.ObservedTimestamp())
	assert.Equal(t, "fdatasync", lr.Body().AsRaw(), "the body is the syscall's name")
	assert.Equal(t, map[string]any{
		AttrType:       int64(6),
		AttrRaw:        rec.Raw(),
		AttrTID:        int64(101),
		AttrName:       "fdatasync",
		AttrFD:         int64(9),
		AttrFDKind:     "file",
		AttrFileName:   "0000000000000000-0000000000000000.wal",
		AttrFileInode:  "555",
		AttrRet:        int64(0),
		AttrDurationNs: int64(244_000),
	}, lr.Attributes().AsRaw(), "no count and no offset for fdatasync, no payload when none was captured")
}

// A record the scheduler part measured carries where its time went: the parts
// that took any time, adding up to its duration, the largest named as its cause,
// what its own I/O waits were for; one it did not (scheduler: false) carries none,
// as TestAppendDecodedRecord's exact attributes show.
func TestAppendTimeParts(t *testing.T) {
	tests := []struct {
		name  string
		waits *tracer.Waits
		want  map[string]any
	}{
		{
			name:  "on the CPU throughout",
			waits: &tracer.Waits{IODeviceKnown: true},
			want:  map[string]any{AttrTimeNs(tracer.PartCPU): int64(244_000), AttrCause: "cpu"},
		},
		{
			name: "the journal and a flush",
			waits: &tracer.Waits{Ns: [tracer.WaitKinds]uint64{tracer.WaitRunnable: 4_000, tracer.WaitJournal: 150_000,
				tracer.WaitFlush: 60_000}, IODeviceNs: 50_000, IODeviceKnown: true},
			want: map[string]any{AttrTimeNs(tracer.PartCPU): int64(30_000), AttrTimeNs(tracer.PartRunnable): int64(4_000),
				AttrTimeNs(tracer.PartJournal): int64(150_000), AttrTimeNs(tracer.PartIOQueue): int64(10_000),
				AttrTimeNs(tracer.PartIODevice): int64(50_000), AttrIOFlushNs: int64(60_000), AttrCause: "journal"},
		},
		{
			name:  "own I/O without the disks' view",
			waits: &tracer.Waits{Ns: [tracer.WaitKinds]uint64{tracer.WaitWriteback: 200_000}},
			want: map[string]any{AttrTimeNs(tracer.PartCPU): int64(44_000), AttrTimeNs(tracer.PartIO): int64(200_000),
				AttrIOWritebackNs: int64(200_000), AttrCause: "io"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := walSync()
			f.Waits = tt.waits
			b := NewLogBuilder(true, "scope", "v1", 1)
			b.Append(tracer.NewRecord(f), 0)
			attrs := b.Take(1).ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Attributes().AsRaw()
			got := map[string]any{}
			var sum int64
			for k, v := range attrs {
				if strings.HasPrefix(k, "etcd.syscall.time.") || strings.HasPrefix(k, "etcd.syscall.io.") || k == AttrCause {
					got[k] = v
				}
				if strings.HasPrefix(k, "etcd.syscall.time.") {
					sum += v.(int64)
				}
			}
			assert.Equal(t, tt.want, got)
			assert.Equal(t, attrs[AttrDurationNs], sum, "the parts add up to the duration")
		})
	}
}

func TestAppendCountOnlyForSyscallsThatTakeOne(t *testing.T) {
	for _, tc := range []struct {
		typ       tracer.Syscall
		wantCount bool
	}{
		{tracer.SyscallWrite, true},
		{tracer.SyscallPwrite64, true},
		{tracer.SyscallWritev, true},
		{tracer.SyscallPwritev, true},
		{tracer.SyscallSyncFileRange, true},
		{tracer.SyscallFsync, false},
		{tracer.SyscallFdatasync, false},
	} {
		t.Run(tc.typ.String(), func(t *testing.T) {
			f := walSync()
			f.Syscall, f.Count = tc.typ, 0 // a write of 0 bytes still has a count
			b := NewLogBuilder(true, "scope", "v1", 1)
			b.Append(tracer.NewRecord(f), 0)
			lr := b.Take(1).ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0)
			assert.Equal(t, tc.typ.String(), lr.Body().Str())
			count, ok := lr.Attributes().Get(AttrCount)
			require.Equal(t, tc.wantCount, ok)
			if ok {
				assert.Equal(t, int64(0), count.Int())
			}
		})
	}
}

func TestAppendRawOnlyAndPayload(t *testing.T) {
	f := walSync()
	f.Syscall = tracer.SyscallPwrite64
	f.Offset, f.Count, f.Ret, f.Payload = 4096, 100, 100, []byte("abcd")

	rec := tracer.NewRecord(f)
	b := NewLogBuilder(true, "scope", "v1", 1)
	b.Append(rec, 0)
	attrs := b.Take(1).ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Attributes()
	off, _ := attrs.Get(AttrOffset)
	assert.Equal(t, int64(4096), off.Int())
	count, _ := attrs.Get(AttrCount)
	assert.Equal(t, int64(100), count.Int())
	payload, _ := attrs.Get(AttrPayload)
	assert.Equal(t, []byte("abcd"), payload.Bytes().AsRaw())

	b = NewLogBuilder(false, "scope", "v1", 1)
	b.Append(rec, 0)
	rl := b.Take(1).ResourceLogs().At(0)
	lr := rl.ScopeLogs().At(0).LogRecords().At(0)
	assert.ElementsMatch(t, []string{AttrType, AttrRaw, AttrTID}, keys(lr.Attributes()), "decode off: the raw bytes, the type and the thread")
	assert.ElementsMatch(t, []string{AttrProcessPID, AttrProcessExecName}, keys(rl.Resource().Attributes()), "decode off: the process's identity")
	assert.Equal(t, "pwrite64", lr.Body().Str(), "decode off: the body still names the syscall")
}

func TestAppendGroupsRecordsByProcess(t *testing.T) {
	record := func(pid, tid uint32, comm string) tracer.Record {
		f := walSync()
		f.PID, f.TID, f.Comm = pid, tid, comm
		return tracer.NewRecord(f)
	}
	records := []tracer.Record{
		record(100, 100, "etcd"), record(200, 201, "etcd"), record(100, 102, "etcd"),
		record(100, 103, "renamed"), // a thread that renamed itself: its own Resource
		record(200, 202, "etcd"),
	}
	b := NewLogBuilder(true, "scope", "v1", 8)
	for _, rec := range records {
		b.Append(rec, 0)
	}
	require.Equal(t, len(records), b.Len())
	logs := b.Take(8)
	assert.Equal(t, len(records), logs.LogRecordCount())

	type group struct {
		pid    int64
		thread string
		tids   []int64
	}
	var got []group
	for i := 0; i < logs.ResourceLogs().Len(); i++ {
		rl := logs.ResourceLogs().At(i)
		pid, _ := rl.Resource().Attributes().Get(AttrProcessPID)
		thread, _ := rl.Resource().Attributes().Get(AttrProcessExecName)
		g := group{pid: pid.Int(), thread: thread.Str()}
		require.Equal(t, 1, rl.ScopeLogs().Len())
		assert.Equal(t, "scope", rl.ScopeLogs().At(0).Scope().Name(), "every Resource carries the scope")
		for _, lr := range rl.ScopeLogs().At(0).LogRecords().All() {
			tid, _ := lr.Attributes().Get(AttrTID)
			g.tids = append(g.tids, tid.Int())
		}
		got = append(got, g)
	}
	assert.Equal(t, []group{
		{100, "etcd", []int64{100, 102}},
		{200, "etcd", []int64{201, 202}},
		{100, "renamed", []int64{103}},
	}, got, "one Resource per process and name, in order of first record; records in arrival order")

	b.Append(records[0], 0)
	assert.Equal(t, 1, b.Take(8).ResourceLogs().Len(), "a new batch starts without Resources")
}

// The ring buffer reader reuses its buffer for the next record: the byte
// attributes must be copies that no later record overwrites.
func TestAppendOwnsItsBytes(t *testing.T) {
	b := NewLogBuilder(true, "scope", "v1", 4096)
	f := walSync()
	f.Payload = []byte("payload0")
	rec := tracer.NewRecord(f)
	buf, payloadAt := rec.Raw(), len(rec.Raw())-len(f.Payload)
	want := make([][]byte, 0, 300)
	for i := range cap(want) {
		binary.LittleEndian.PutUint64(buf[payloadAt:], uint64(i)) // the reader's next record, in the same bytes
		want = append(want, bytes.Clone(buf))
		b.Append(rec, 0)
	}
	clear(buf)
	lrs := b.Take(1).ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
	require.Equal(t, len(want), lrs.Len())
	for i, lr := range lrs.All() {
		raw, _ := lr.Attributes().Get(AttrRaw)
		payload, _ := lr.Attributes().Get(AttrPayload)
		require.Equal(t, want[i], raw.Bytes().AsRaw(), "record %d", i)
		require.Equal(t, want[i][payloadAt:], payload.Bytes().AsRaw(), "record %d", i)
	}
	raw, _ := lrs.At(0).Attributes().Get(AttrRaw)
	raw.Bytes().Append(0xff)
	next, _ := lrs.At(1).Attributes().Get(AttrRaw)
	assert.Equal(t, want[1], next.Bytes().AsRaw(), "growing one record's bytes leaves the next record's alone")
}

func keys(m pcommon.Map) []string {
	var out []string
	for k := range m.All() {
		out = append(out, k)
	}
	return out
}

func TestBootOffsetMatchesWallClock(t *testing.T) {
	var mono unix.Timespec
	require.NoError(t, unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono))
	off := bootOffset()
	got := monotonicToWall(uint64(mono.Nano()), off).AsTime()
	assert.WithinDuration(t, time.Now(), got, time.Second)
	assert.Greater(t, off, int64(0), "the wall clock is ahead of the time since boot")
}

func TestStringCacheBounded(t *testing.T) {
	c := stringCache{}
	assert.Equal(t, "etcd", c.get([]byte("etcd")))
	assert.Equal(t, "etcd", c.get([]byte("etcd")))
	assert.Equal(t, "db", c.get([]byte("db")), "not the name last returned")
	assert.Equal(t, "", c.get(nil))
	assert.Equal(t, "etcd", c.get([]byte("etcd")))
	for i := range 2 * maxCachedStrings {
		c.get([]byte(string(rune('a'+i%26)) + string(rune(i))))
	}
	assert.LessOrEqual(t, len(c.m), maxCachedStrings)
}

func TestInodeCacheBounded(t *testing.T) {
	c := inodeCache{}
	assert.Equal(t, "3670031", c.get(3670031))
	assert.Equal(t, "18446744073709551615", c.get(1<<64-1), "inode numbers are unsigned")
	assert.Equal(t, "3670031", c.get(3670031), "not the inode last returned")
	assert.Equal(t, "0", c.get(0))
	for i := range uint64(2 * maxCachedStrings) {
		c.get(i)
	}
	assert.LessOrEqual(t, len(c.m), maxCachedStrings)
}

// FuzzAppend: whatever the fields of a record the tracer hands over, building
// its log record never panics and adds it.
func FuzzAppend(f *testing.F) {
	w := walSync()
	f.Add(uint16(w.Syscall), uint8(w.FDKind), w.Offset, w.DurationNs, w.Comm, w.FileName, []byte(nil), uint64(0), uint64(0))
	f.Add(uint16(99), uint8(200), int64(-1), uint64(0), "", "", []byte("abc"), uint64(1_000_000), uint64(0xffffffff81000100))
	f.Fuzz(func(t *testing.T, syscall uint16, fdKind uint8, offset int64, durationNs uint64, comm, fileName string, payload []byte, waitNs, otherIP uint64) {
		if len(payload) > tracer.PayloadMax {
			payload = payload[:tracer.PayloadMax]
		}
		fields := tracer.RecordFields{Syscall: tracer.Syscall(syscall), FDKind: tracer.FDKind(fdKind), Offset: offset, DurationNs: durationNs,
			Comm: comm, FileName: fileName, Payload: payload, OtherWaitIP: otherIP}
		if waitNs > 0 {
			fields.Waits = &tracer.Waits{Ns: [tracer.WaitKinds]uint64{tracer.WaitOther: waitNs, tracer.WaitFlush: waitNs / 2}}
		}
		b := NewLogBuilder(true, "scope", "v1", 1)
		b.Append(tracer.NewRecord(fields), 0)
		if b.Len() != 1 {
			t.Fatal("record not added")
		}
	})
}
