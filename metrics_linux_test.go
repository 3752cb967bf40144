//go:build linux && (amd64 || arm64)

package etcdebpfreceiver

import (
	"context"
	"fmt"
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

	"github.com/etcdebpf/etcdebpfreceiver/internal/convert"
	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/logtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// durationPoint finds the duration data point of pid with the given attributes.
func durationPoint(md pmetric.Metrics, pid int, name, kind, class string) (pmetric.ExponentialHistogramDataPoint, bool) {
	for _, rm := range md.ResourceMetrics().All() {
		if p, ok := rm.Resource().Attributes().Get(convert.AttrProcessPID); !ok || p.Int() != int64(pid) {
			continue
		}
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				if m.Name() != convert.MetricDuration {
					continue
				}
				for _, dp := range m.ExponentialHistogram().DataPoints().All() {
					attrs := dp.Attributes()
					n, _ := attrs.Get(convert.AttrName)
					k, _ := attrs.Get(convert.AttrFDKind)
					c, _ := attrs.Get(convert.AttrFileClass)
					if n.Str() == name && k.Str() == kind && c.Str() == class {
						return dp, true
					}
				}
			}
		}
	}
	return pmetric.NewExponentialHistogramDataPoint(), false
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
		require.NotNil(t, r.ctrl, "the programs stay loaded until the last Shutdown")
		require.NoError(t, lr.Shutdown(context.Background()))
		require.Nil(t, r.ctrl, "the last Shutdown unloads")
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
			assert.Nil(t, lr.(*etcdReceiver).ctrl, "the last Shutdown unloads")
		})
	}
}

// countRecords counts the records of pid's syscall name in ld.
func countRecords(ld plog.Logs, pid int, name string) int {
	n := 0
	for _, r := range logtest.Flatten(ld) {
		if r.Int(convert.AttrProcessPID) == int64(pid) && r.Str(convert.AttrName) == name {
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

	before, err := r.ctrl.Session().Counters()
	require.NoError(t, err)
	w.Release(t, time.Minute)
	after, err := r.ctrl.Session().Counters()
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
		hists, err := r.ctrl.Session().Histograms()
		require.NoError(t, err)
		key := tracer.HistKey{PID: uint32(srv.PID()), Syscall: tracer.SyscallFdatasync, FDKind: tracer.FDKindFile, FileClass: tracer.FileClassWAL}
		var n uint64
		for _, h := range hists {
			if !h.Overflow && h.Key == key {
				for _, b := range h.Buckets {
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

	// The same batch's etcd.syscall.time: the WAL syncs' time by part adds up to
	// the histogram's sum, and they waited for something.
	parts := timeParts(t, metrics, dp.Timestamp(), srv.PID(), "fdatasync", "wal")
	var sum float64
	for _, v := range parts {
		sum += v
	}
	t.Logf("WAL fdatasync time by part: %v of %.4f s", parts, dp.Sum())
	assert.InDelta(t, dp.Sum(), sum, 1e-6, "the parts add up to the duration's sum")
	assert.Greater(t, parts["cpu"], 0.0)
	if bpftest.InMemory(t, srv.DataDir) {
		t.Logf("etcd's data directory %s is in memory: its syncs wait for no disk", srv.DataDir)
		return
	}
	assert.Less(t, parts["cpu"], dp.Sum(), "the syncs left the CPU")
}

// timeParts is pid's etcd.syscall.time of one syscall and file class by part,
// from the batch collected at ts.
func timeParts(t *testing.T, sink *consumertest.MetricsSink, ts pcommon.Timestamp, pid int, name, class string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, md := range sink.AllMetrics() {
		for _, rm := range md.ResourceMetrics().All() {
			if p, ok := rm.Resource().Attributes().Get(convert.AttrProcessPID); !ok || p.Int() != int64(pid) {
				continue
			}
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					if m.Name() != convert.MetricTime {
						continue
					}
					for _, p := range m.Sum().DataPoints().All() {
						n, _ := p.Attributes().Get(convert.AttrName)
						c, _ := p.Attributes().Get(convert.AttrFileClass)
						part, _ := p.Attributes().Get(convert.AttrTimePart)
						if p.Timestamp() == ts && n.Str() == name && c.Str() == class {
							out[part.Str()] = p.DoubleValue()
						}
					}
				}
			}
		}
	}
	require.NotEmpty(t, out, "etcd.syscall.time points of pid %d's %s on %s files", pid, name, class)
	return out
}
