//go:build linux && (amd64 || arm64)

package convert

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// benchRecord is a realistic record: etcd's WAL write(2) of 4 KiB, as the kernel
// side writes it. With a payload, the kernel reserves the whole payload area
// (tracer.PayloadMax bytes) whatever payload_bytes is, and payloadLen of it is valid.
func benchRecord(payloadLen int) tracer.Record {
	f := tracer.RecordFields{
		Syscall: tracer.SyscallWrite, FDKind: tracer.FDKindFile,
		PID: 4242, TID: 4251, FD: 12, CgroupID: 1234, Inode: 3670031,
		Count: 4096, Offset: -1, Ret: 4096, StartNs: 123456789012, DurationNs: 14500,
		Comm: "etcd", FileName: "0000000000000000-0000000000000000.wal",
	}
	if payloadLen > 0 {
		f.Payload, f.PayloadArea = make([]byte, payloadLen), tracer.PayloadMax
		for i := range payloadLen {
			f.Payload[i] = byte(i)
		}
	}
	return tracer.NewRecord(f)
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
	rec := benchRecord(payloadLen)
	lb := NewLogBuilder(decode, "bench", "0", 1024)
	lb.reset(batchSize)
	ts := pcommon.Timestamp(1)
	b.ReportAllocs()
	b.SetBytes(int64(len(rec.Raw())))
	b.ResetTimer()
	defer reportCPU(b)()
	for range b.N {
		lb.Append(rec, ts)
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
			rec := benchRecord(tc.payloadLen)
			raw, payload := rec.Raw(), rec.Payload()
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
// pdata alone: reading the record's fields, interning the names and grouping by
// process add no allocation of their own (a batch's own allocations, its
// Resource and its slice of records, come once per batch, not per record). The
// tracer's decoding, before Append, allocates nothing either: its own test says so.
func TestAppendAllocatesAsPdataAlone(t *testing.T) {
	for _, tc := range []struct {
		decode     bool
		payloadLen int
	}{{false, 0}, {true, 0}, {true, 64}} {
		rec := benchRecord(tc.payloadLen)
		raw, payload := rec.Raw(), rec.Payload()
		const runs = 1000
		lb := NewLogBuilder(tc.decode, "bench", "0", 2*runs)
		lb.Append(rec, 1) // the batch's Resource
		got := testing.AllocsPerRun(runs, func() { lb.Append(rec, 1) })
		lrs := plog.NewLogRecordSlice()
		lrs.EnsureCapacity(2 * runs)
		floor := testing.AllocsPerRun(runs, func() { pdataOnly(lrs, tc.decode, raw, payload) })
		if got > floor {
			t.Errorf("decode=%v payload=%d: %.0f allocations a record, pdata alone %.0f", tc.decode, tc.payloadLen, got, floor)
		}
	}
}
