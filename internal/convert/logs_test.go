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

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/recordtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

func walSync() bpf.MonitorEvent {
	ev := bpf.MonitorEvent{
		Version: bpf.RecordVersion, Type: uint16(tracer.SyscallFdatasync),
		FdKind: uint8(tracer.FDKindFile), Pid: 100, Tid: 101, Fd: 9, Inode: 555,
		Offset: -1, StartNs: 5_000_000_000, DurationNs: 244_000,
	}
	copy(ev.Comm[:], recordtest.Chars("etcd", len(ev.Comm)))
	copy(ev.FileName[:], recordtest.Chars("0000000000000000-0000000000000000.wal", len(ev.FileName)))
	return ev
}

func TestAppendDecodedRecord(t *testing.T) {
	b := NewLogBuilder(true, "scope", "v1", 1)
	b.bootOffset = 1_700_000_000_000_000_000
	raw := recordtest.Encode(walSync(), nil)
	observed := pcommon.Timestamp(42)
	require.NoError(t, b.Append(raw, observed))

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
		AttrRaw:        raw,
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
		name     string
		waits    map[bpf.MonitorWaitKind]uint64
		ioDevice uint64
		measured bpf.MonitorRecordMeasured
		want     map[string]any
	}{
		{
			name:     "on the CPU throughout",
			measured: bpf.MonitorRecordMeasuredMEASURED_SCHED | bpf.MonitorRecordMeasuredMEASURED_IO_DEVICE,
			want:     map[string]any{AttrTimeNs(tracer.PartCPU): int64(244_000), AttrCause: "cpu"},
		},
		{
			name: "the journal and a flush",
			waits: map[bpf.MonitorWaitKind]uint64{bpf.MonitorWaitKindWAIT_RUNNABLE: 4_000, bpf.MonitorWaitKindWAIT_JOURNAL: 150_000,
				bpf.MonitorWaitKindWAIT_FLUSH: 60_000},
			ioDevice: 50_000,
			measured: bpf.MonitorRecordMeasuredMEASURED_SCHED | bpf.MonitorRecordMeasuredMEASURED_IO_DEVICE,
			want: map[string]any{AttrTimeNs(tracer.PartCPU): int64(30_000), AttrTimeNs(tracer.PartRunnable): int64(4_000),
				AttrTimeNs(tracer.PartJournal): int64(150_000), AttrTimeNs(tracer.PartIOQueue): int64(10_000),
				AttrTimeNs(tracer.PartIODevice): int64(50_000), AttrIOFlushNs: int64(60_000), AttrCause: "journal"},
		},
		{
			name:     "own I/O without the disks' view",
			waits:    map[bpf.MonitorWaitKind]uint64{bpf.MonitorWaitKindWAIT_WRITEBACK: 200_000},
			measured: bpf.MonitorRecordMeasuredMEASURED_SCHED,
			want: map[string]any{AttrTimeNs(tracer.PartCPU): int64(44_000), AttrTimeNs(tracer.PartIO): int64(200_000),
				AttrIOWritebackNs: int64(200_000), AttrCause: "io"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := walSync()
			for w, ns := range tt.waits {
				ev.WaitNs[w] = ns
			}
			ev.IoDeviceNs, ev.Measured = tt.ioDevice, uint32(tt.measured)
			b := NewLogBuilder(true, "scope", "v1", 1)
			require.NoError(t, b.Append(recordtest.Encode(ev, nil), 0))
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
			ev := walSync()
			ev.Type, ev.Count = uint16(tc.typ), 0 // a write of 0 bytes still has a count
			b := NewLogBuilder(true, "scope", "v1", 1)
			require.NoError(t, b.Append(recordtest.Encode(ev, nil), 0))
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
	ev := walSync()
	ev.Type = uint16(tracer.SyscallPwrite64)
	ev.Offset, ev.Count, ev.Ret, ev.PayloadLen = 4096, 100, 100, 4

	raw := recordtest.Encode(ev, []byte("abcd"))
	b := NewLogBuilder(true, "scope", "v1", 1)
	require.NoError(t, b.Append(raw, 0))
	attrs := b.Take(1).ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Attributes()
	off, _ := attrs.Get(AttrOffset)
	assert.Equal(t, int64(4096), off.Int())
	count, _ := attrs.Get(AttrCount)
	assert.Equal(t, int64(100), count.Int())
	payload, _ := attrs.Get(AttrPayload)
	assert.Equal(t, []byte("abcd"), payload.Bytes().AsRaw())

	b = NewLogBuilder(false, "scope", "v1", 1)
	require.NoError(t, b.Append(raw, 0))
	rl := b.Take(1).ResourceLogs().At(0)
	lr := rl.ScopeLogs().At(0).LogRecords().At(0)
	assert.ElementsMatch(t, []string{AttrType, AttrRaw, AttrTID}, keys(lr.Attributes()), "decode off: the raw bytes, the type and the thread")
	assert.ElementsMatch(t, []string{AttrProcessPID, AttrProcessExecName}, keys(rl.Resource().Attributes()), "decode off: the process's identity")
	assert.Equal(t, "pwrite64", lr.Body().Str(), "decode off: the body still names the syscall")
}

func TestAppendGroupsRecordsByProcess(t *testing.T) {
	record := func(pid, tid uint32, comm string) bpf.MonitorEvent {
		ev := walSync()
		ev.Pid, ev.Tid = pid, tid
		copy(ev.Comm[:], recordtest.Chars(comm, len(ev.Comm)))
		return ev
	}
	events := []bpf.MonitorEvent{
		record(100, 100, "etcd"), record(200, 201, "etcd"), record(100, 102, "etcd"),
		record(100, 103, "renamed"), // a thread that renamed itself: its own Resource
		record(200, 202, "etcd"),
	}
	b := NewLogBuilder(true, "scope", "v1", 8)
	for _, ev := range events {
		require.NoError(t, b.Append(recordtest.Encode(ev, nil), 0))
	}
	require.Equal(t, len(events), b.Len())
	logs := b.Take(8)
	assert.Equal(t, len(events), logs.LogRecordCount())

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

	require.NoError(t, b.Append(recordtest.Encode(events[0], nil), 0))
	assert.Equal(t, 1, b.Take(8).ResourceLogs().Len(), "a new batch starts without Resources")
}

// The ring buffer reader reuses its buffer for the next record: the byte
// attributes must be copies that no later record overwrites.
func TestAppendOwnsItsBytes(t *testing.T) {
	b := NewLogBuilder(true, "scope", "v1", 4096)
	ev := walSync()
	ev.PayloadLen = 8
	buf := recordtest.Encode(ev, []byte("payload0"))
	want := make([][]byte, 0, 300)
	for i := range cap(want) {
		binary.LittleEndian.PutUint64(buf[bpf.EventSize:], uint64(i))
		want = append(want, bytes.Clone(buf))
		require.NoError(t, b.Append(buf, 0))
	}
	clear(buf)
	lrs := b.Take(1).ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
	require.Equal(t, len(want), lrs.Len())
	for i, lr := range lrs.All() {
		raw, _ := lr.Attributes().Get(AttrRaw)
		payload, _ := lr.Attributes().Get(AttrPayload)
		require.Equal(t, want[i], raw.Bytes().AsRaw(), "record %d", i)
		require.Equal(t, want[i][bpf.EventSize:], payload.Bytes().AsRaw(), "record %d", i)
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

func TestAppendRejectsMalformed(t *testing.T) {
	b := NewLogBuilder(true, "scope", "v1", 1)
	raw := recordtest.Encode(walSync(), nil)
	for _, bad := range [][]byte{nil, raw[:10], raw[:len(raw)-1]} {
		assert.Error(t, b.Append(bad, 0))
	}
	assert.Equal(t, 0, b.Len(), "nothing is added for a malformed record")
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

// FuzzAppend: whatever the ring buffer hands over, building a log record never panics.
func FuzzAppend(f *testing.F) {
	f.Add(recordtest.Encode(walSync(), nil))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		b := NewLogBuilder(true, "scope", "v1", 1)
		if err := b.Append(raw, 0); err == nil && b.Len() != 1 {
			t.Fatal("accepted record not added")
		}
	})
}
