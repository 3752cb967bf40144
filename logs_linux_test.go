//go:build linux

package etcdebpfreceiver

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
)

func cBytes(s string, n int) []int8 {
	out := make([]int8, n)
	for i := range min(len(s), n-1) {
		out[i] = int8(s[i])
	}
	return out
}

func walSync() bpf.MonitorEvent {
	ev := bpf.MonitorEvent{
		Version: bpf.RecordVersion, Type: uint16(bpf.MonitorSyscallTypeSYSCALL_FDATASYNC),
		FdKind: uint8(bpf.MonitorFdKindFD_KIND_FILE), Pid: 100, Tid: 101, Fd: 9, Inode: 555,
		Offset: -1, StartNs: 5_000_000_000, DurationNs: 244_000,
	}
	copy(ev.Comm[:], cBytes("etcd", 16))
	copy(ev.FileName[:], cBytes("0000000000000000-0000000000000000.wal", 48))
	return ev
}

func rawRecord(t testing.TB, ev bpf.MonitorEvent, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, binary.Write(&buf, binary.LittleEndian, ev))
	buf.Write(payload)
	return buf.Bytes()
}

func TestAppendDecodedRecord(t *testing.T) {
	b := newLogBuilder(true, "scope", "v1", 1)
	b.bootOffset = 1_700_000_000_000_000_000
	raw := rawRecord(t, walSync(), nil)
	observed := pcommon.Timestamp(42)
	require.NoError(t, b.append(raw, observed))

	require.Equal(t, 1, b.len())
	logs := b.take(16)
	assert.Equal(t, 0, b.len(), "take starts a new batch")
	sl := logs.ResourceLogs().At(0).ScopeLogs().At(0)
	assert.Equal(t, "scope", sl.Scope().Name())
	lr := sl.LogRecords().At(0)
	assert.Equal(t, pcommon.Timestamp(1_700_000_005_000_000_000), lr.Timestamp(), "entry time on the wall clock")
	assert.Equal(t, observed, lr.ObservedTimestamp())
	assert.Equal(t, map[string]any{
		attrType:       int64(6),
		attrRaw:        raw,
		attrPID:        int64(100),
		attrTID:        int64(101),
		attrThreadName: "etcd",
		attrName:       "fdatasync",
		attrFD:         int64(9),
		attrFDKind:     "file",
		attrFileName:   "0000000000000000-0000000000000000.wal",
		attrFileInode:  int64(555),
		attrCount:      int64(0),
		attrRet:        int64(0),
		attrDurationNs: int64(244_000),
	}, lr.Attributes().AsRaw(), "no offset for fdatasync, no payload when none was captured")
}

func TestAppendRawOnlyAndPayload(t *testing.T) {
	ev := walSync()
	ev.Type = uint16(bpf.MonitorSyscallTypeSYSCALL_PWRITE64)
	ev.Offset, ev.Count, ev.Ret, ev.PayloadLen = 4096, 100, 100, 4

	raw := rawRecord(t, ev, []byte("abcd"))
	b := newLogBuilder(true, "scope", "v1", 1)
	require.NoError(t, b.append(raw, 0))
	attrs := b.take(1).ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Attributes()
	off, _ := attrs.Get(attrOffset)
	assert.Equal(t, int64(4096), off.Int())
	payload, _ := attrs.Get(attrPayload)
	assert.Equal(t, []byte("abcd"), payload.Bytes().AsRaw())

	b = newLogBuilder(false, "scope", "v1", 1)
	require.NoError(t, b.append(raw, 0))
	attrs = b.take(1).ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Attributes()
	assert.ElementsMatch(t, []string{attrType, attrRaw, attrPID, attrTID, attrThreadName}, keys(attrs), "decode off: raw bytes and identity only")
}

func keys(m pcommon.Map) []string {
	var out []string
	for k := range m.All() {
		out = append(out, k)
	}
	return out
}

func TestAppendRejectsMalformed(t *testing.T) {
	b := newLogBuilder(true, "scope", "v1", 1)
	raw := rawRecord(t, walSync(), nil)
	for _, bad := range [][]byte{nil, raw[:10], raw[:len(raw)-1]} {
		assert.Error(t, b.append(bad, 0))
	}
	assert.Equal(t, 0, b.len(), "nothing is added for a malformed record")
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
	assert.Equal(t, "etcd", c.get(cBytes("etcd", 16)))
	assert.Equal(t, "etcd", c.get(cBytes("etcd", 16)))
	unterminated := make([]int8, 4)
	copy(unterminated, cBytes("abcde", 6)[:4])
	assert.Equal(t, "abcd", c.get(unterminated), "a full field has no NUL")
	for i := range 2 * maxCachedStrings {
		c.get(cBytes(string(rune('a'+i%26))+string(rune(i)), 16))
	}
	assert.LessOrEqual(t, len(c), maxCachedStrings)
}

// FuzzAppend: whatever the ring buffer hands over, building a log record never panics.
func FuzzAppend(f *testing.F) {
	f.Add(rawRecord(f, walSync(), nil))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		b := newLogBuilder(true, "scope", "v1", 1)
		if err := b.append(raw, 0); err == nil && b.len() != 1 {
			t.Fatal("accepted record not added")
		}
	})
}

func TestLifecycleWithoutStart(t *testing.T) {
	rcv, err := NewFactory().CreateLogs(context.Background(), receivertest.NewNopSettings(metadata.Type), createDefaultConfig(), consumertest.NewNop())
	require.NoError(t, err)
	require.NoError(t, rcv.Shutdown(context.Background()), "Shutdown without Start")
	require.NoError(t, rcv.Shutdown(context.Background()), "Shutdown twice")
}
