//go:build linux

package convert

import (
	"slices"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// series is one kernel histogram made cumulative in 64 bits: the kernel's bucket
// counters are 32 bits wide and wrap, so each read adds its difference to the last.
type series struct {
	buckets [tracer.HistBuckets]uint64
	last    [tracer.HistBuckets]uint32
	sumNs   uint64
	bytes   uint64
}

func (s *series) update(h *tracer.HistCounts) {
	for i, n := range h.Buckets {
		s.buckets[i] += uint64(n - s.last[i])
		s.last[i] = n
	}
	s.sumNs, s.bytes = h.SumNs, h.Bytes
}

// Metrics turns the kernel's histograms into cumulative OTLP metrics: a Resource
// per traced process, a data point per syscall, fd kind and file class.
type Metrics struct {
	scope    pcommon.InstrumentationScope
	start    pcommon.Timestamp // before the programs were attached: no call counted is older
	series   map[tracer.HistKey]*series
	overflow *series           // calls that found the kernel's map full
	comms    map[uint32]string // process names by tgid, read once
	comm     func(tgid uint32) string
	args     commandArgs
}

// NewMetrics returns the converter of one session's histograms; comm names a
// running process (empty when it is gone).
func NewMetrics(scopeName, version string, start pcommon.Timestamp, comm func(tgid uint32) string) *Metrics {
	c := &Metrics{
		scope:  pcommon.NewInstrumentationScope(),
		start:  start,
		series: map[tracer.HistKey]*series{},
		comms:  map[uint32]string{},
		comm:   comm,
	}
	c.scope.SetName(scopeName)
	c.scope.SetVersion(version)
	return c
}

// WithCommandArgs puts process.command_args on each process's Resource, read
// by read once per process and forgotten when its series are.
func (c *Metrics) WithCommandArgs(read func(pid uint32) []string) *Metrics {
	c.args = commandArgs{read: read, byPID: map[uint32][]string{}}
	return c
}

// Collect adds hists, the kernel's current histograms, to the running series and
// returns every series as of now. It returns the keys read of the processes that
// exited says are gone: their series were reported for the last time, and are
// forgotten, and can be deleted from the kernel.
func (c *Metrics) Collect(hists []tracer.Histogram, now pcommon.Timestamp, exited func(tgid uint32) bool) (pmetric.Metrics, []tracer.HistKey) {
	byProcess := map[uint32][]tracer.HistKey{}
	for i := range hists {
		h := &hists[i]
		if h.Overflow {
			if c.overflow == nil {
				c.overflow = &series{}
			}
			c.overflow.update(&h.HistCounts)
			continue
		}
		if slices.Contains(byProcess[h.Key.PID], h.Key) {
			continue // a map iterated while the kernel inserts can return a key twice
		}
		s := c.series[h.Key]
		if s == nil {
			s = &series{}
			c.series[h.Key] = s
		}
		s.update(&h.HistCounts)
		byProcess[h.Key.PID] = append(byProcess[h.Key.PID], h.Key)
	}

	md := pmetric.NewMetrics()
	var gone []tracer.HistKey
	for tgid, keys := range byProcess {
		rm := md.ResourceMetrics().AppendEmpty()
		res := rm.Resource().Attributes()
		res.PutInt(AttrProcessPID, int64(tgid))
		if comm := c.commOf(tgid); comm != "" {
			res.PutStr(AttrProcessExecName, comm)
		}
		c.args.put(res, tgid)
		durations, written := c.appendMetrics(rm)
		for _, key := range keys {
			c.appendPoints(durations, written, key, c.series[key], now)
		}
		if written.DataPoints().Len() == 0 {
			rm.ScopeMetrics().At(0).Metrics().RemoveIf(func(m pmetric.Metric) bool { return m.Name() == MetricBytesWritten })
		}
		if exited(tgid) {
			gone = append(gone, keys...)
		}
	}
	if c.overflow != nil {
		durations, written := c.appendMetrics(md.ResourceMetrics().AppendEmpty())
		c.appendOverflowPoints(durations, written, now)
	}
	for _, key := range gone {
		delete(c.series, key)
		delete(c.comms, key.PID)
		c.args.forget(key.PID)
	}
	return md, gone
}

func (c *Metrics) appendMetrics(rm pmetric.ResourceMetrics) (pmetric.ExponentialHistogram, pmetric.Sum) {
	sm := rm.ScopeMetrics().AppendEmpty()
	c.scope.CopyTo(sm.Scope())
	d := sm.Metrics().AppendEmpty()
	d.SetName(MetricDuration)
	d.SetUnit("s")
	d.SetDescription("Duration of the traced write and sync syscalls, every call counted, from the kernel's histograms.")
	durations := d.SetEmptyExponentialHistogram()
	durations.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)

	w := sm.Metrics().AppendEmpty()
	w.SetName(MetricBytesWritten)
	w.SetUnit("By")
	w.SetDescription("Bytes the traced write syscalls wrote: the sum of their successful return values.")
	written := w.SetEmptySum()
	written.SetIsMonotonic(true)
	written.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	return durations, written
}

func (c *Metrics) appendPoints(durations pmetric.ExponentialHistogram, written pmetric.Sum, key tracer.HistKey, s *series, now pcommon.Timestamp) {
	dp := durations.DataPoints().AppendEmpty()
	putKeyAttributes(dp.Attributes(), key)
	c.fillHistogram(dp, s, now)
	if key.Syscall.Writes() {
		wp := written.DataPoints().AppendEmpty()
		putKeyAttributes(wp.Attributes(), key)
		wp.SetStartTimestamp(c.start)
		wp.SetTimestamp(now)
		wp.SetIntValue(int64(s.bytes))
	}
}

// appendOverflowPoints reports the overflow series as the OpenTelemetry SDKs do:
// one point whose only attribute is otel.metric.overflow=true.
func (c *Metrics) appendOverflowPoints(durations pmetric.ExponentialHistogram, written pmetric.Sum, now pcommon.Timestamp) {
	dp := durations.DataPoints().AppendEmpty()
	dp.Attributes().PutBool(AttrOverflow, true)
	c.fillHistogram(dp, c.overflow, now)
	wp := written.DataPoints().AppendEmpty()
	wp.Attributes().PutBool(AttrOverflow, true)
	wp.SetStartTimestamp(c.start)
	wp.SetTimestamp(now)
	wp.SetIntValue(int64(c.overflow.bytes))
}

func putKeyAttributes(attrs pcommon.Map, key tracer.HistKey) {
	attrs.PutStr(AttrName, key.Syscall.String())
	attrs.PutStr(AttrFDKind, key.FDKind.String())
	if class := key.FileClass.String(); class != "" {
		attrs.PutStr(AttrFileClass, class)
	}
}

// fillHistogram copies the series into dp, trimmed to its first and last non-empty buckets.
func (c *Metrics) fillHistogram(dp pmetric.ExponentialHistogramDataPoint, s *series, now pcommon.Timestamp) {
	dp.SetStartTimestamp(c.start)
	dp.SetTimestamp(now)
	dp.SetScale(tracer.HistScale)
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
	dp.Positive().SetOffset(tracer.HistFirstIndex + int32(first))
	dp.Positive().BucketCounts().FromRaw(s.buckets[first : last+1])
}

// commOf is the process's name, read once; empty if it is gone.
func (c *Metrics) commOf(tgid uint32) string {
	if name, ok := c.comms[tgid]; ok {
		return name
	}
	name := c.comm(tgid)
	if name != "" {
		c.comms[tgid] = name
	}
	return name
}
