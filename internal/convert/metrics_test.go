//go:build linux && (amd64 || arm64)

package convert

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/etcdebpf/etcdebpfreceiver/internal/process"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/proctest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// tick is procfs's clock tick, the unit of a process's start time: the tests'
// procfs booted at the Unix epoch, so a process started n ticks after boot
// started at n*tick.
const tick = pcommon.Timestamp(10 * time.Millisecond)

// durationPoint finds the duration data point of pid with the given attributes.
func durationPoint(md pmetric.Metrics, pid int, name, kind, class string) (pmetric.ExponentialHistogramDataPoint, bool) {
	for _, rm := range md.ResourceMetrics().All() {
		if p, ok := rm.Resource().Attributes().Get(AttrProcessPID); !ok || p.Int() != int64(pid) {
			continue
		}
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				if m.Name() != MetricDuration {
					continue
				}
				for _, dp := range m.ExponentialHistogram().DataPoints().All() {
					attrs := dp.Attributes()
					n, _ := attrs.Get(AttrName)
					k, _ := attrs.Get(AttrFDKind)
					c, _ := attrs.Get(AttrFileClass)
					if n.Str() == name && k.Str() == kind && c.Str() == class {
						return dp, true
					}
				}
			}
		}
	}
	return pmetric.NewExponentialHistogramDataPoint(), false
}

func TestHistogramCollector(t *testing.T) {
	fs := proctest.NewProcfs(t)
	fs.Run(7, 50, "etcd") // started before the session (100)
	c := NewMetrics("scope", "v1", 100*tick, process.NewRegistry(fs.FS()))

	walSync := tracer.HistKey{PID: 7, Syscall: tracer.SyscallFdatasync, FDKind: tracer.FDKindFile, FileClass: tracer.FileClassWAL}
	sockWrite := tracer.HistKey{PID: 7, Syscall: tracer.SyscallWrite, FDKind: tracer.FDKindSocket, FileClass: tracer.FileClassNone}
	sync, write := tracer.Histogram{Key: walSync}, tracer.Histogram{Key: sockWrite}
	sync.Buckets[120], sync.Buckets[123] = 5, 1
	sync.SumNs = 6_000_000
	sync.MinNs, sync.MaxNs = 980_000, 1_300_000
	write.Buckets[60] = math.MaxUint32 - 1 // about to wrap
	write.SumNs, write.Bytes = 1000, 4096

	md, gone := c.Collect([]tracer.Histogram{sync, write, sync}, 200*tick, c.Ended())
	assert.Empty(t, gone)
	require.Equal(t, 1, md.ResourceMetrics().Len())
	res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, map[string]any{AttrProcessPID: int64(7), AttrProcessExecName: "etcd",
		AttrProcessCreationTime: "1970-01-01T00:00:00.5Z"}, res)

	dp, ok := durationPoint(md, 7, "fdatasync", "file", "wal")
	require.True(t, ok)
	assert.Equal(t, 2, md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).ExponentialHistogram().DataPoints().Len(),
		"a key the map iteration returned twice is one point")
	assert.EqualValues(t, tracer.HistScale, dp.Scale())
	assert.Equal(t, tracer.HistFirstIndex+120, dp.Positive().Offset(), "trimmed to the first non-empty bucket")
	assert.Equal(t, []uint64{5, 0, 0, 1}, dp.Positive().BucketCounts().AsRaw())
	assert.EqualValues(t, 6, dp.Count())
	assert.InDelta(t, 0.006, dp.Sum(), 1e-12)
	assert.True(t, dp.HasMin() && dp.HasMax())
	assert.InDelta(t, 0.00098, dp.Min(), 1e-12)
	assert.InDelta(t, 0.0013, dp.Max(), 1e-12)
	assert.Equal(t, 100*tick, dp.StartTimestamp(), "counted from the session's start, after the process's")
	assert.Equal(t, 200*tick, dp.Timestamp())

	// The kernel's 32-bit counter wraps: the cumulative count keeps growing.
	write.Buckets[60] = 2 // 4 more calls
	write.Bytes = 8192
	fs.Exit(7)
	md, gone = c.Collect([]tracer.Histogram{sync, write}, 300*tick, c.Ended())
	dp, ok = durationPoint(md, 7, "write", "socket", "")
	require.True(t, ok)
	_, hasClass := dp.Attributes().Get(AttrFileClass)
	assert.False(t, hasClass, "a socket has no file class")
	assert.EqualValues(t, uint64(math.MaxUint32-1)+4, dp.Count())

	// Bytes are reported for writes only.
	sums := 0
	for _, m := range md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().All() {
		if m.Name() == MetricBytesWritten {
			for _, wp := range m.Sum().DataPoints().All() {
				sums++
				assert.EqualValues(t, 8192, wp.IntValue())
				assert.True(t, m.Sum().IsMonotonic())
				assert.Equal(t, pmetric.AggregationTemporalityCumulative, m.Sum().AggregationTemporality())
			}
		}
	}
	assert.Equal(t, 1, sums, "one bytes series: the socket write")

	// An exited process's series is reported one last time, then forgotten.
	assert.ElementsMatch(t, []tracer.HistKey{walSync, sockWrite}, gone)
	md, _ = c.Collect(nil, 400*tick, c.Ended())
	assert.Zero(t, md.ResourceMetrics().Len())

	// Calls that found the kernel's map full: one series, marked as the SDKs mark theirs.
	over := tracer.Histogram{Overflow: true}
	over.Buckets[0] = 3
	md, _ = c.Collect([]tracer.Histogram{over}, 500*tick, c.Ended())
	require.Equal(t, 1, md.ResourceMetrics().Len())
	dp = md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).ExponentialHistogram().DataPoints().At(0)
	assert.Equal(t, map[string]any{AttrOverflow: true}, dp.Attributes().AsRaw())
	assert.EqualValues(t, 3, dp.Count())
}

// A pid given to a new process is a new process: the old one's series end, and
// the newcomer's start afresh, from its own start time, under a new Resource.
func TestHistogramCollectorReusedPID(t *testing.T) {
	fs := proctest.NewProcfs(t)
	fs.Run(7, 150, "etcd") // started after the session (100)
	c := NewMetrics("scope", "v1", 100*tick, process.NewRegistry(fs.FS()))
	walSync := tracer.HistKey{PID: 7, Syscall: tracer.SyscallFdatasync, FDKind: tracer.FDKindFile, FileClass: tracer.FileClassWAL}
	h := tracer.Histogram{Key: walSync}
	h.Buckets[120] = 5

	md, gone := c.Collect([]tracer.Histogram{h}, 200*tick, c.Ended())
	assert.Empty(t, gone)
	dp, ok := durationPoint(md, 7, "fdatasync", "file", "wal")
	require.True(t, ok)
	assert.Equal(t, 150*tick, dp.StartTimestamp(), "counted from the process's own start")
	assert.EqualValues(t, 5, dp.Count())

	// The process exits and another gets pid 7 (the kernel's entry holds both's
	// calls since the last read: the old series takes them, one last time).
	fs.Run(7, 250, "etcd")
	h.Buckets[120] = 8
	md, gone = c.Collect([]tracer.Histogram{h}, 300*tick, c.Ended())
	assert.Equal(t, []tracer.HistKey{walSync}, gone, "the old process's keys are deleted from the kernel")
	dp, ok = durationPoint(md, 7, "fdatasync", "file", "wal")
	require.True(t, ok)
	assert.Equal(t, 150*tick, dp.StartTimestamp())
	assert.EqualValues(t, 8, dp.Count())
	creation, _ := md.ResourceMetrics().At(0).Resource().Attributes().Get(AttrProcessCreationTime)
	assert.Equal(t, "1970-01-01T00:00:01.5Z", creation.Str())

	// The kernel's entry was deleted: the newcomer's calls count from zero.
	h.Buckets[120] = 2
	md, gone = c.Collect([]tracer.Histogram{h}, 400*tick, c.Ended())
	assert.Empty(t, gone)
	dp, ok = durationPoint(md, 7, "fdatasync", "file", "wal")
	require.True(t, ok)
	assert.Equal(t, 250*tick, dp.StartTimestamp(), "a new series from the newcomer's start")
	assert.EqualValues(t, 2, dp.Count(), "the old process's counts are not merged in")
	creation, _ = md.ResourceMetrics().At(0).Resource().Attributes().Get(AttrProcessCreationTime)
	assert.Equal(t, "1970-01-01T00:00:02.5Z", creation.Str(), "a new Resource")
}

// A call longer than the kernel's last bucket (128 s) is counted there; the
// point's Max and Sum say how long it was.
func TestCallBeyondTheLastBucket(t *testing.T) {
	c := NewMetrics("scope", "v1", 100, process.NewRegistry(proctest.NewProcfs(t).FS()))
	hang := tracer.Histogram{Key: tracer.HistKey{PID: 7, Syscall: tracer.SyscallFdatasync, FDKind: tracer.FDKindFile, FileClass: tracer.FileClassWAL}}
	hang.Buckets[tracer.HistBuckets-1] = 1
	hang.SumNs, hang.MinNs, hang.MaxNs = 600e9, 600e9, 600e9

	md, _ := c.Collect([]tracer.Histogram{hang}, 200, nil)
	dp, ok := durationPoint(md, 7, "fdatasync", "file", "wal")
	require.True(t, ok)
	assert.Equal(t, tracer.HistFirstIndex+int32(tracer.HistBuckets)-1, dp.Positive().Offset())
	assert.Less(t, math.Pow(2, float64(dp.Positive().Offset()+1)/8), 129.0, "the last bucket ends at 128 s")
	assert.EqualValues(t, 1, dp.Count())
	assert.InDelta(t, 600.0, dp.Max(), 1e-9)
	assert.InDelta(t, 600.0, dp.Min(), 1e-9)
	assert.InDelta(t, 600.0, dp.Sum(), 1e-9)
}

// timeParts finds pid's etcd.syscall.time points of one syscall, by part.
func timeParts(md pmetric.Metrics, name string) map[string]float64 {
	out := map[string]float64{}
	for _, rm := range md.ResourceMetrics().All() {
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				if m.Name() != MetricTime {
					continue
				}
				for _, dp := range m.Sum().DataPoints().All() {
					if n, _ := dp.Attributes().Get(AttrName); n.Str() == name {
						part, _ := dp.Attributes().Get(AttrTimePart)
						out[part.Str()] = dp.DoubleValue()
					}
				}
			}
		}
	}
	return out
}

// With the scheduler part, each series' time is sent by part: the parts that took
// any time and the time on a CPU, adding up to the histogram's sum, and the time on
// a CPU never falls, though the waits are read a moment before the histograms.
func TestHistogramTimeParts(t *testing.T) {
	fs := proctest.NewProcfs(t)
	fs.Run(7, 50, "etcd")
	c := NewMetrics("scope", "v1", 100, process.NewRegistry(fs.FS())).WithTimeParts()
	sync := tracer.Histogram{Key: tracer.HistKey{PID: 7, Syscall: tracer.SyscallFdatasync, FDKind: tracer.FDKindFile, FileClass: tracer.FileClassWAL}}
	sync.Buckets[120] = 10
	sync.SumNs = 10_000_000
	sync.Waits = tracer.Waits{IODeviceKnown: true, IODeviceNs: 3_000_000}
	sync.Waits.Ns[tracer.WaitJournal] = 4_000_000
	sync.Waits.Ns[tracer.WaitFlush] = 5_000_000

	md, _ := c.Collect([]tracer.Histogram{sync}, 200, c.Ended())
	assert.Equal(t, map[string]float64{"cpu": 0.001, "journal": 0.004, "io_queue": 0.002, "io_device": 0.003}, timeParts(md, "fdatasync"))

	// The next read finds waits of calls its histograms' sum had counted as time on a CPU.
	sync.Waits.Ns[tracer.WaitRunnable] = 2_000_000
	md, _ = c.Collect([]tracer.Histogram{sync}, 300, c.Ended())
	got := timeParts(md, "fdatasync")
	assert.Equal(t, 0.001, got["cpu"], "the time on a CPU does not fall")
	assert.Equal(t, 0.002, got["runnable"])

	plain := NewMetrics("scope", "v1", 100, process.NewRegistry(fs.FS()))
	md, _ = plain.Collect([]tracer.Histogram{sync}, 200, plain.Ended())
	assert.Empty(t, timeParts(md, "fdatasync"), "without the scheduler part, no parts")
}
