//go:build linux && (amd64 || arm64)

package convert

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/recordtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// benchRecord is a realistic record: etcd's WAL write(2) of 4 KiB, as the kernel
// side writes it. With a payload, the kernel reserves the whole payload area
// (bpf.PayloadMax bytes) whatever payload_bytes is, and payloadLen of it is valid.
func benchRecord(payloadLen int) []byte {
	ev := bpf.MonitorEvent{
		Version: bpf.RecordVersion, Type: uint16(tracer.SyscallWrite),
		FdKind: uint8(tracer.FDKindFile), PayloadLen: uint16(payloadLen),
		Pid: 4242, Tid: 4251, Fd: 12, CgroupId: 1234, Inode: 3670031,
		Count: 4096, Offset: -1, Ret: 4096, StartNs: 123456789012, DurationNs: 14500,
	}
	copy(ev.Comm[:], recordtest.Chars("etcd", len(ev.Comm)))
	copy(ev.FileName[:], recordtest.Chars("0000000000000000-0000000000000000.wal", len(ev.FileName)))
	var payload []byte
	if payloadLen > 0 {
		payload = make([]byte, bpf.PayloadMax)
		for i := range payloadLen {
			payload[i] = byte(i)
		}
	}
	return recordtest.Encode(ev, payload)
}

// reportCPU adds the process's CPU time per operation (cpu-ns/op): unlike ns/op,
// it counts the garbage collector's work on the other cores, which the collector
// pays too, and it is less sensitive to a machine shared with other work.
func reportCPU(b *testing.B) func() {
	start := processCPU(b)
	return func() {
		b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op")
	}
}

func processCPU(b *testing.B) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return ts.Nano()
}

// benchAppend drives logBuilder.append the way the receiver's run loop does: a
// batch of batchSize records, then take() hands it over and a new one starts.
func benchAppend(b *testing.B, decode bool, payloadLen int) {
	const batchSize = 1024 // the default max_batch_size
	raw := benchRecord(payloadLen)
	lb := NewLogBuilder(decode, "bench", "0", 1024)
	lb.reset(batchSize)
	ts := pcommon.Timestamp(1)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	defer reportCPU(b)()
	for range b.N {
		if err := lb.Append(raw, ts); err != nil {
			b.Fatal(err)
		}
		if lb.Len() == batchSize {
			_ = lb.Take(batchSize)
		}
	}
}

func BenchmarkLogBuilderAppend(b *testing.B) {
	b.Run("decode=false/payload=0", func(b *testing.B) { benchAppend(b, false, 0) })
	b.Run("decode=true/payload=0", func(b *testing.B) { benchAppend(b, true, 0) })
	b.Run("decode=true/payload=64", func(b *testing.B) { benchAppend(b, true, 64) })
}

// BenchmarkPdataOnly builds the same log records with pdata calls alone, from
// values known in advance (no decoding, no string interning, byte attributes
// handed over without a copy): the allocations it reports are pdata's own, the
// floor under BenchmarkLogBuilderAppend.
func BenchmarkPdataOnly(b *testing.B) {
	for _, tc := range []struct {
		name       string
		decode     bool
		payloadLen int
	}{{"decode=false/payload=0", false, 0}, {"decode=true/payload=0", true, 0}, {"decode=true/payload=64", true, 64}} {
		b.Run(tc.name, func(b *testing.B) {
			const batchSize = 1024
			raw := benchRecord(tc.payloadLen)
			payload := raw[bpf.EventSize:][:tc.payloadLen]
			newBatch := func() plog.LogRecordSlice {
				logs := plog.NewLogs()
				rl := logs.ResourceLogs().AppendEmpty()
				rl.Resource().Attributes().PutInt(AttrProcessPID, 4242)
				rl.Resource().Attributes().PutStr(AttrProcessExecName, "etcd")
				lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
				lrs.EnsureCapacity(batchSize)
				return lrs
			}
			lrs := newBatch()
			b.ReportAllocs()
			b.ResetTimer()
			defer reportCPU(b)()
			for range b.N {
				pdataOnly(lrs, tc.decode, raw, payload)
				if lrs.Len() == batchSize {
					lrs = newBatch()
				}
			}
		})
	}
}

// pdataOnly appends benchRecord's log record to lrs with pdata calls alone.
func pdataOnly(lrs plog.LogRecordSlice, decode bool, raw, payload []byte) {
	const file, inode = "0000000000000000-0000000000000000.wal", "3670031"
	lr := lrs.AppendEmpty()
	lr.SetTimestamp(2)
	lr.SetObservedTimestamp(1)
	lr.Body().SetStr("write")
	attrs := lr.Attributes()
	switch {
	case !decode:
		attrs.EnsureCapacity(3)
	case len(payload) > 0:
		attrs.EnsureCapacity(12)
	default:
		attrs.EnsureCapacity(11)
	}
	attrs.PutInt(AttrType, 1)
	attrs.PutEmptyBytes(AttrRaw).FromRaw(raw)
	attrs.PutInt(AttrTID, 4251)
	if decode {
		attrs.PutStr(AttrName, "write")
		attrs.PutInt(AttrFD, 12)
		attrs.PutStr(AttrFDKind, "file")
		attrs.PutStr(AttrFileName, file)
		attrs.PutStr(AttrFileInode, inode)
		attrs.PutInt(AttrCount, 4096)
		attrs.PutInt(AttrRet, 4096)
		attrs.PutInt(AttrDurationNs, 14500)
		if len(payload) > 0 {
			attrs.PutEmptyBytes(AttrPayload).FromRaw(payload)
		}
	}
}

// Converting a record allocates no more than building its log record with
// pdata alone: decoding, interning the names and grouping by process add no
// allocation of their own (a batch's own allocations, its Resource and its
// slice of records, come once per batch, not per record).
func TestAppendAllocatesAsPdataAlone(t *testing.T) {
	for _, tc := range []struct {
		decode     bool
		payloadLen int
	}{{false, 0}, {true, 0}, {true, 64}} {
		raw := benchRecord(tc.payloadLen)
		payload := raw[bpf.EventSize:][:tc.payloadLen]
		const runs = 1000
		lb := NewLogBuilder(tc.decode, "bench", "0", 2*runs)
		if err := lb.Append(raw, 1); err != nil { // the batch's Resource
			t.Fatal(err)
		}
		got := testing.AllocsPerRun(runs, func() {
			if err := lb.Append(raw, 1); err != nil {
				t.Fatal(err)
			}
		})
		lrs := plog.NewLogRecordSlice()
		lrs.EnsureCapacity(2 * runs)
		floor := testing.AllocsPerRun(runs, func() { pdataOnly(lrs, tc.decode, raw, payload) })
		if got > floor {
			t.Errorf("decode=%v payload=%d: %.0f allocations a record, pdata alone %.0f", tc.decode, tc.payloadLen, got, floor)
		}
	}
}
