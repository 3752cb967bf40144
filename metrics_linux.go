//go:build linux

package etcdebpfreceiver

import (
	"context"
	"slices"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// Metric names and attribute keys: part of the receiver's contract, documented in docs/metrics.md.
const (
	metricDuration     = "etcd.syscall.duration"
	metricBytesWritten = "etcd.syscall.bytes_written"

	attrFileClass       = "etcd.syscall.file_class"
	attrOverflow        = "otel.metric.overflow"
	attrProcessPID      = "process.pid"
	attrProcessExecName = "process.executable.name"
)

// series is one kernel histogram made cumulative in 64 bits: the kernel's bucket
// counters are 32 bits wide and wrap, so each read adds its difference to the last.
type series struct {
	buckets [bpf.HistBuckets]uint64
	last    [bpf.HistBuckets]uint32
	sumNs   uint64
	bytes   uint64
}

func (s *series) update(h *bpf.MonitorHist) {
	for i, n := range h.Buckets {
		s.buckets[i] += uint64(n - s.last[i])
		s.last[i] = n
	}
	s.sumNs, s.bytes = h.SumNs, h.Bytes
}

// histogramCollector turns the kernel's histograms into cumulative OTLP metrics:
// a Resource per traced process, a data point per syscall, fd kind and file class.
type histogramCollector struct {
	scope    pcommon.InstrumentationScope
	start    pcommon.Timestamp // the histograms' maps were created then
	series   map[bpf.MonitorHistKey]*series
	overflow *series           // calls that found the kernel's map full
	comms    map[uint32]string // process names by tgid, read once
	exited   func(tgid uint32) bool
}

func newHistogramCollector(scopeName, version string, start pcommon.Timestamp) *histogramCollector {
	c := &histogramCollector{
		scope:  pcommon.NewInstrumentationScope(),
		start:  start,
		series: map[bpf.MonitorHistKey]*series{},
		comms:  map[uint32]string{},
		exited: func(tgid uint32) bool { return processExited(int(tgid)) },
	}
	c.scope.SetName(scopeName)
	c.scope.SetVersion(version)
	return c
}

// collect adds hists, the kernel's current histograms, to the running series and
// returns every series as of now. It returns the keys of processes that exited:
// their series were reported for the last time and can be deleted from the kernel.
func (c *histogramCollector) collect(hists []tracer.Histogram, now pcommon.Timestamp) (pmetric.Metrics, []bpf.MonitorHistKey) {
	byProcess := map[uint32][]bpf.MonitorHistKey{}
	for i := range hists {
		h := &hists[i]
		if h.Overflow {
			if c.overflow == nil {
				c.overflow = &series{}
			}
			c.overflow.update(&h.Value)
			continue
		}
		if slices.Contains(byProcess[h.Key.Tgid], h.Key) {
			continue // a map iterated while the kernel inserts can return a key twice
		}
		s := c.series[h.Key]
		if s == nil {
			s = &series{}
			c.series[h.Key] = s
		}
		s.update(&h.Value)
		byProcess[h.Key.Tgid] = append(byProcess[h.Key.Tgid], h.Key)
	}

	md := pmetric.NewMetrics()
	var gone []bpf.MonitorHistKey
	for tgid, keys := range byProcess {
		rm := md.ResourceMetrics().AppendEmpty()
		res := rm.Resource().Attributes()
		res.PutInt(attrProcessPID, int64(tgid))
		if comm := c.comm(tgid); comm != "" {
			res.PutStr(attrProcessExecName, comm)
		}
		durations, written := c.appendMetrics(rm)
		for _, key := range keys {
			c.appendPoints(durations, written, key, c.series[key], now)
		}
		if written.DataPoints().Len() == 0 {
			rm.ScopeMetrics().At(0).Metrics().RemoveIf(func(m pmetric.Metric) bool { return m.Name() == metricBytesWritten })
		}
		if c.exited(tgid) {
			gone = append(gone, keys...)
		}
	}
	if c.overflow != nil {
		durations, written := c.appendMetrics(md.ResourceMetrics().AppendEmpty())
		c.appendOverflowPoints(durations, written, now)
	}
	for _, key := range gone {
		delete(c.series, key)
		delete(c.comms, key.Tgid)
	}
	return md, gone
}

func (c *histogramCollector) appendMetrics(rm pmetric.ResourceMetrics) (pmetric.ExponentialHistogram, pmetric.Sum) {
	sm := rm.ScopeMetrics().AppendEmpty()
	c.scope.CopyTo(sm.Scope())
	d := sm.Metrics().AppendEmpty()
	d.SetName(metricDuration)
	d.SetUnit("s")
	d.SetDescription("Duration of the traced write and sync syscalls, every call counted, from the kernel's histograms.")
	durations := d.SetEmptyExponentialHistogram()
	durations.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)

	w := sm.Metrics().AppendEmpty()
	w.SetName(metricBytesWritten)
	w.SetUnit("By")
	w.SetDescription("Bytes the traced write syscalls wrote: the sum of their successful return values.")
	written := w.SetEmptySum()
	written.SetIsMonotonic(true)
	written.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	return durations, written
}

func (c *histogramCollector) appendPoints(durations pmetric.ExponentialHistogram, written pmetric.Sum, key bpf.MonitorHistKey, s *series, now pcommon.Timestamp) {
	dp := durations.DataPoints().AppendEmpty()
	putKeyAttributes(dp.Attributes(), key)
	c.fillHistogram(dp, s, now)
	if key.Type <= uint8(bpf.MonitorSyscallTypeSYSCALL_PWRITEV) {
		wp := written.DataPoints().AppendEmpty()
		putKeyAttributes(wp.Attributes(), key)
		wp.SetStartTimestamp(c.start)
		wp.SetTimestamp(now)
		wp.SetIntValue(int64(s.bytes))
	}
}

// appendOverflowPoints reports the overflow series as the OpenTelemetry SDKs do:
// one point whose only attribute is otel.metric.overflow=true.
func (c *histogramCollector) appendOverflowPoints(durations pmetric.ExponentialHistogram, written pmetric.Sum, now pcommon.Timestamp) {
	dp := durations.DataPoints().AppendEmpty()
	dp.Attributes().PutBool(attrOverflow, true)
	c.fillHistogram(dp, c.overflow, now)
	wp := written.DataPoints().AppendEmpty()
	wp.Attributes().PutBool(attrOverflow, true)
	wp.SetStartTimestamp(c.start)
	wp.SetTimestamp(now)
	wp.SetIntValue(int64(c.overflow.bytes))
}

func putKeyAttributes(attrs pcommon.Map, key bpf.MonitorHistKey) {
	attrs.PutStr(attrName, bpf.MonitorSyscallType(key.Type).String())
	attrs.PutStr(attrFDKind, bpf.MonitorFdKind(key.FdKind).String())
	if class := bpf.MonitorFileClass(key.FileClass).String(); class != "" {
		attrs.PutStr(attrFileClass, class)
	}
}

// fillHistogram copies the series into dp, trimmed to its first and last non-empty buckets.
func (c *histogramCollector) fillHistogram(dp pmetric.ExponentialHistogramDataPoint, s *series, now pcommon.Timestamp) {
	dp.SetStartTimestamp(c.start)
	dp.SetTimestamp(now)
	dp.SetScale(bpf.HistScale)
	first, last, count := -1, -1, uint64(0)
	for i, n := range s.buckets {
		if n == 0 {
			continue
		}
		if first < 0 {
			first = i
		}
		last, count = i, count+n
	}
	dp.SetCount(count)
	dp.SetSum(float64(s.sumNs) / 1e9)
	if first < 0 {
		return
	}
	dp.Positive().SetOffset(bpf.HistFirstIndex + int32(first))
	dp.Positive().BucketCounts().FromRaw(s.buckets[first : last+1])
}

// comm is the process's name, read once from /proc; empty if it is gone.
func (c *histogramCollector) comm(tgid uint32) string {
	if name, ok := c.comms[tgid]; ok {
		return name
	}
	name := processComm(int(tgid))
	if name != "" {
		c.comms[tgid] = name
	}
	return name
}

// collectMetrics sends the histograms to the metrics pipeline every
// CollectionInterval, and once more when stop is closed.
func (r *etcdReceiver) collectMetrics(ctx context.Context, t *tracer.Tracer, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	c := newHistogramCollector(metadata.ScopeName, r.settings.BuildInfo.Version, pcommon.NewTimestampFromTime(time.Now()))
	tick := time.NewTicker(r.cfg.CollectionInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			r.collectOnce(ctx, t, c)
		case <-stop:
			r.collectOnce(ctx, t, c)
			return
		case <-ctx.Done():
			return
		}
	}
}

func (r *etcdReceiver) collectOnce(ctx context.Context, t *tracer.Tracer, c *histogramCollector) {
	hists, err := t.Histograms()
	if err != nil {
		r.settings.Logger.Error("Reading the kernel's histograms failed", zap.Error(err))
		return
	}
	md, gone := c.collect(hists, pcommon.NewTimestampFromTime(time.Now()))
	for _, key := range gone {
		if err := t.DeleteHistogram(key); err != nil {
			r.settings.Logger.Warn("Deleting an exited process's histogram failed", zap.Uint32("pid", key.Tgid), zap.Error(err))
		}
	}
	points := md.DataPointCount()
	if points == 0 {
		return
	}
	ctx = r.obsrecv.StartMetricsOp(ctx)
	err = r.metrics.ConsumeMetrics(ctx, md)
	r.obsrecv.EndMetricsOp(ctx, metadata.Type.String(), points, err)
	if err != nil {
		r.settings.Logger.Debug("The pipeline refused metrics", zap.Int("data_points", points), zap.Error(err))
	}
}
