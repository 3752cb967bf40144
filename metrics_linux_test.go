//go:build linux

package etcdebpfreceiver

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/logtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

func histKey(pid uint32, syscall bpf.MonitorSyscallType, kind bpf.MonitorFdKind, class bpf.MonitorFileClass) bpf.MonitorHistKey {
	return bpf.MonitorHistKey{Tgid: pid, Type: uint8(syscall), FdKind: uint8(kind), FileClass: uint8(class)}
}

// durationPoint finds the duration data point of pid with the given attributes.
func durationPoint(md pmetric.Metrics, pid int, name, kind, class string) (pmetric.ExponentialHistogramDataPoint, bool) {
	for _, rm := range md.ResourceMetrics().All() {
		if p, ok := rm.Resource().Attributes().Get(attrProcessPID); !ok || p.Int() != int64(pid) {
			continue
		}
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				if m.Name() != metricDuration {
					continue
				}
				for _, dp := range m.ExponentialHistogram().DataPoints().All() {
					attrs := dp.Attributes()
					n, _ := attrs.Get(attrName)
					k, _ := attrs.Get(attrFDKind)
					c, _ := attrs.Get(attrFileClass)
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
	c := newHistogramCollector("scope", "v1", 100)
	exited := map[uint32]bool{}
	c.exited = func(tgid uint32) bool { return exited[tgid] }
	c.comms[7] = "etcd"

	walSync := histKey(7, bpf.MonitorSyscallTypeSYSCALL_FDATASYNC, bpf.MonitorFdKindFD_KIND_FILE, bpf.MonitorFileClassFILE_CLASS_WAL)
	sockWrite := histKey(7, bpf.MonitorSyscallTypeSYSCALL_WRITE, bpf.MonitorFdKindFD_KIND_SOCKET, bpf.MonitorFileClassFILE_CLASS_NONE)
	var sync, write bpf.MonitorHist
	sync.Buckets[120], sync.Buckets[123] = 5, 1
	sync.SumNs = 6_000_000
	write.Buckets[60] = math.MaxUint32 - 1 // about to wrap
	write.SumNs, write.Bytes = 1000, 4096

	md, gone := c.collect([]tracer.Histogram{{Key: walSync, Value: sync}, {Key: sockWrite, Value: write}, {Key: walSync, Value: sync}}, 200)
	assert.Empty(t, gone)
	require.Equal(t, 1, md.ResourceMetrics().Len())
	res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, map[string]any{attrProcessPID: int64(7), attrProcessExecName: "etcd"}, res)

	dp, ok := durationPoint(md, 7, "fdatasync", "file", "wal")
	require.True(t, ok)
	assert.Equal(t, 2, md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).ExponentialHistogram().DataPoints().Len(),
		"a key the map iteration returned twice is one point")
	assert.EqualValues(t, bpf.HistScale, dp.Scale())
	assert.Equal(t, bpf.HistFirstIndex+120, dp.Positive().Offset(), "trimmed to the first non-empty bucket")
	assert.Equal(t, []uint64{5, 0, 0, 1}, dp.Positive().BucketCounts().AsRaw())
	assert.EqualValues(t, 6, dp.Count())
	assert.InDelta(t, 0.006, dp.Sum(), 1e-12)
	assert.Equal(t, pcommon.Timestamp(100), dp.StartTimestamp())
	assert.Equal(t, pcommon.Timestamp(200), dp.Timestamp())

	// The kernel's 32-bit counter wraps: the cumulative count keeps growing.
	write.Buckets[60] = 2 // 4 more calls
	write.Bytes = 8192
	exited[7] = true
	md, gone = c.collect([]tracer.Histogram{{Key: walSync, Value: sync}, {Key: sockWrite, Value: write}}, 300)
	dp, ok = durationPoint(md, 7, "write", "socket", "")
	require.True(t, ok)
	_, hasClass := dp.Attributes().Get(attrFileClass)
	assert.False(t, hasClass, "a socket has no file class")
	assert.EqualValues(t, uint64(math.MaxUint32-1)+4, dp.Count())

	// Bytes are reported for writes only.
	sums := 0
	for _, m := range md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().All() {
		if m.Name() == metricBytesWritten {
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
	assert.ElementsMatch(t, []bpf.MonitorHistKey{walSync, sockWrite}, gone)
	md, _ = c.collect(nil, 400)
	assert.Zero(t, md.ResourceMetrics().Len())

	// Calls that found the kernel's map full: one series, marked as the SDKs mark theirs.
	var over bpf.MonitorHist
	over.Buckets[0] = 3
	md, _ = c.collect([]tracer.Histogram{{Overflow: true, Value: over}}, 500)
	require.Equal(t, 1, md.ResourceMetrics().Len())
	dp = md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).ExponentialHistogram().DataPoints().At(0)
	assert.Equal(t, map[string]any{attrOverflow: true}, dp.Attributes().AsRaw())
	assert.EqualValues(t, 3, dp.Count())
}

// startBoth creates and starts a logs and a metrics pipeline's receiver on the
// same configuration, as the collector does for one component ID in both.
func startBoth(t *testing.T, cfg *Config) (*consumertest.LogsSink, *consumertest.MetricsSink, receiver.Logs, receiver.Metrics) {
	t.Helper()
	logs, metrics := new(consumertest.LogsSink), new(consumertest.MetricsSink)
	set := receivertest.NewNopSettings(metadata.Type)
	lr, err := NewFactory().CreateLogs(context.Background(), set, cfg, logs)
	require.NoError(t, err)
	mr, err := NewFactory().CreateMetrics(context.Background(), set, cfg, metrics)
	require.NoError(t, err)
	require.Same(t, lr, mr, "one receiver serves both pipelines")
	host := componenttest.NewNopHost()
	require.NoError(t, lr.Start(context.Background(), host))
	require.NoError(t, mr.Start(context.Background(), host))
	return logs, metrics, lr, mr
}

// startShared is startBoth with a stop that shuts both down (at cleanup at the
// latest), checking that only the last Shutdown unloads.
func startShared(t *testing.T, cfg *Config) (*consumertest.LogsSink, *consumertest.MetricsSink, *etcdReceiver, func()) {
	t.Helper()
	logs, metrics, lr, mr := startBoth(t, cfg)
	r := lr.(*etcdReceiver)
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		require.NoError(t, mr.Shutdown(context.Background()))
		require.NotNil(t, r.tracer, "the programs stay loaded until the last Shutdown")
		require.NoError(t, lr.Shutdown(context.Background()))
		require.Nil(t, r.tracer, "the last Shutdown unloads")
	}
	t.Cleanup(stop)
	return logs, metrics, r, stop
}

// Whichever of its pipelines the collector stops first, the first Shutdown
// delivers to both: the collector may stop that pipeline's exporters before the
// receiver's second Shutdown.
func TestFirstShutdownDeliversToBothPipelines(t *testing.T) {
	bpftest.RequireBPF(t)
	const n, size = 500, 64
	bin := bpftest.BuildWriter(t)
	for _, logsFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("logs_first=%v", logsFirst), func(t *testing.T) {
			w := bpftest.StartWriter(t, bin, n, size)
			cfg := createDefaultConfig()
			cfg.PIDs = []int{w.PID()}
			cfg.CollectionInterval = time.Hour // only the collection at Shutdown sends metrics
			cfg.FlushInterval = time.Hour      // only the flush at Shutdown sends records
			cfg.MaxBatchSize = 1 << 16
			logs, metrics, lr, mr := startBoth(t, cfg)
			w.Release(t, time.Minute)

			first, second := component.Component(mr), component.Component(lr)
			if logsFirst {
				first, second = lr, mr
			}
			require.NoError(t, first.Shutdown(context.Background()))
			writes := 0
			for _, ld := range logs.AllLogs() {
				writes += countRecords(ld, w.PID(), "write")
			}
			assert.Equal(t, n, writes, "every write's record delivered by the first Shutdown")
			dp := lastDurationPoint(t, metrics, w.PID(), "write", "other", "")
			assert.EqualValues(t, n, dp.Count(), "the histograms' last counts delivered by the first Shutdown")
			require.NoError(t, second.Shutdown(context.Background()))
			assert.Nil(t, lr.(*etcdReceiver).tracer, "the last Shutdown unloads")
		})
	}
}

// countRecords counts the records of pid's syscall name in ld.
func countRecords(ld plog.Logs, pid int, name string) int {
	n := 0
	for _, r := range logtest.Flatten(ld) {
		if r.Int(attrProcessPID) == int64(pid) && r.Str(attrName) == name {
			n++
		}
	}
	return n
}

// lastDurationPoint is pid's data point in the last metrics the sink got.
func lastDurationPoint(t *testing.T, sink *consumertest.MetricsSink, pid int, name, kind, class string) pmetric.ExponentialHistogramDataPoint {
	t.Helper()
	all := sink.AllMetrics()
	for i := len(all) - 1; i >= 0; i-- {
		if dp, ok := durationPoint(all[i], pid, name, kind, class); ok {
			return dp
		}
	}
	t.Fatalf("no %s %s %q duration point for pid %d in %d batches", name, kind, class, pid, len(all))
	return pmetric.ExponentialHistogramDataPoint{}
}

// Exactness: a process named etcd makes exactly N write(2) calls; the histogram
// counts exactly N, while min_duration and fd_kinds keep every one of them out of
// the logs. One receiver serves both pipelines.
func TestMetricsCountEveryWrite(t *testing.T) {
	bpftest.RequireBPF(t)
	const n, size = 20_000, 64
	w := bpftest.StartWriter(t, bpftest.BuildWriter(t), n, size)
	cfg := createDefaultConfig()
	cfg.PIDs = []int{w.PID()}
	cfg.MinDuration = time.Hour
	cfg.FDKinds = []string{"socket"} // the writer writes to /dev/null: kind "other"
	cfg.CollectionInterval = time.Second
	logs, metrics, r, stop := startShared(t, cfg)

	before, err := r.tracer.Counters()
	require.NoError(t, err)
	w.Release(t, time.Minute)
	after, err := r.tracer.Counters()
	require.NoError(t, err)
	stop() // the last collection happens at shutdown

	dp := lastDurationPoint(t, metrics, w.PID(), "write", "other", "")
	assert.EqualValues(t, n, dp.Count(), "every write counted in the histogram")
	assert.Positive(t, dp.Sum())
	assert.Zero(t, logs.LogRecordCount(), "no call passed min_duration")
	assert.GreaterOrEqual(t, after.Calls-before.Calls, uint64(n), "the calls-traced counter saw them")
	t.Logf("%d writes: histogram count %d, sum %.6fs, p50 bucket offset %d", n, dp.Count(), dp.Sum(), dp.Positive().Offset())
}

// Against a real etcd: the histogram's WAL fdatasync count grows exactly as much
// as etcd's own etcd_disk_wal_fsync_duration_seconds_count over the same window.
func TestMetricsWALSyncsMatchEtcd(t *testing.T) {
	bpftest.RequireBPF(t)
	srv := startEtcd(t)
	cfg := createDefaultConfig()
	cfg.PIDs = []int{srv.PID()}
	cfg.MinDuration = 10 * time.Second // no log record in a healthy run
	cfg.CollectionInterval = time.Second
	logs, metrics, r, stop := startShared(t, cfg)

	walSyncs := func() uint64 {
		hists, err := r.tracer.Histograms()
		require.NoError(t, err)
		key := histKey(uint32(srv.PID()), bpf.MonitorSyscallTypeSYSCALL_FDATASYNC, bpf.MonitorFdKindFD_KIND_FILE, bpf.MonitorFileClassFILE_CLASS_WAL)
		var n uint64
		for _, h := range hists {
			if !h.Overflow && h.Key == key {
				for _, b := range h.Value.Buckets {
					n += uint64(b)
				}
			}
		}
		return n
	}
	time.Sleep(200 * time.Millisecond) // let the start-up writes of etcd settle
	const puts = 200
	var kernelBefore, kernelAfter uint64
	window, err := srv.MeasureWALSyncs(func() error {
		kernelBefore = walSyncs()
		err := srv.PutN("key", puts, 256)
		kernelAfter = walSyncs()
		return err
	})
	require.NoError(t, err)
	stop()

	t.Logf("WAL fdatasync: histogram +%d, etcd +%d", kernelAfter-kernelBefore, window.Syncs)
	require.GreaterOrEqual(t, window.Syncs, puts/2)
	assert.EqualValues(t, window.Syncs, kernelAfter-kernelBefore, "histogram vs etcd_disk_wal_fsync_duration_seconds_count")
	dp := lastDurationPoint(t, metrics, srv.PID(), "fdatasync", "file", "wal")
	assert.GreaterOrEqual(t, dp.Count(), kernelAfter, "the pipeline got the kernel's count")
	assert.Zero(t, logs.LogRecordCount(), "no call took 10s")
}
