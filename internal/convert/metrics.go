//go:build linux && (amd64 || arm64)

package convert

import (
	"slices"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/etcdebpf/etcdebpfreceiver/internal/process"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// series is one kernel histogram made cumulative in 64 bits: the kernel's bucket
// counters are 32 bits wide and wrap, so each read adds its difference to the last.
type series struct {
	buckets [tracer.HistBuckets]uint64
	last    [tracer.HistBuckets]uint32
	sumNs   uint64
	bytes   uint64
	minNs   uint64 // the kernel's own: its histogram lives exactly as long as the series
	maxNs   uint64
	waits   tracer.Waits
	// cpuNs is the time on a CPU reported last: the sum less the waits, read a moment
	// apart, can dip; a cumulative sum must not.
	cpuNs uint64
}

func (s *series) update(h *tracer.HistCounts, waits tracer.Waits) {
	for i, n := range h.Buckets {
		s.buckets[i] += uint64(n - s.last[i])
		s.last[i] = n
	}
	s.sumNs, s.bytes, s.minNs, s.maxNs = h.SumNs, h.Bytes, h.MinNs, h.MaxNs
	s.waits = waits
}

// parts is the series' time by part, cumulative.
func (s *series) parts() tracer.Parts {
	p := s.waits.Split(s.sumNs)
	s.cpuNs = max(s.cpuNs, p[tracer.PartCPU])
	p[tracer.PartCPU] = s.cpuNs
	return p
}

// Metrics turns the kernel's histograms into cumulative OTLP metrics: a Resource
// per traced process, a data point per syscall, fd kind and file class.
type Metrics struct {
	scope     pcommon.InstrumentationScope
	start     pcommon.Timestamp // before the programs were attached: no call counted is older
	series    map[tracer.HistKey]*series
	overflow  *series                   // calls that found the kernel's map full
	processes map[uint32]*tracedProcess // by tgid, from the first collection that saw it
	registry  Processes
	timeParts bool // the scheduler part measures where the calls' time went
}

// tracedProcess is a process whose series are being reported.
type tracedProcess struct {
	process.Process
	desc        process.Description // as the first collection read it; its command line read again while it had none
	start       pcommon.Timestamp   // when it started; 0 if it was gone at the first collection
	seriesStart pcommon.Timestamp   // its series' StartTimestamp: its start, or the session's if later
}

// NewMetrics returns the converter of one session's histograms; processes tells
// which process runs as a tgid, so that one that exited, and a newcomer given
// its pid, are told apart, and puts on each process's Resource its name, start,
// command line and container.
func NewMetrics(scopeName, version string, start pcommon.Timestamp, processes Processes) *Metrics {
	c := &Metrics{
		scope:     pcommon.NewInstrumentationScope(),
		start:     start,
		series:    map[tracer.HistKey]*series{},
		processes: map[uint32]*tracedProcess{},
		registry:  processes,
	}
	c.scope.SetName(scopeName)
	c.scope.SetVersion(version)
	return c
}

// WithTimeParts adds MetricTime, the calls' time by part, which the scheduler
// part measures.
func (c *Metrics) WithTimeParts() *Metrics {
	c.timeParts = true
	return c
}

// Ended checks the processes and decides which with series ended: exited, or
// their pid is another process's now. A collection decides it before it reads
// the kernel's histograms: an ended process counts no more calls, so what is
// read of it then is final; decided after the read, the calls between the read
// and the end would be deleted unreported.
func (c *Metrics) Ended() map[uint32]bool {
	c.registry.Check()
	ended := map[uint32]bool{}
	for tgid, p := range c.processes {
		if !c.registry.Running(p.Process) {
			ended[tgid] = true
		}
	}
	return ended
}

// Collect adds hists, the kernel's current histograms read after Ended decided
// ended, to the running series and returns every series as of now. It returns
// the keys read of the ended processes: their series were reported for the last
// time, and are forgotten, and can be deleted from the kernel. A newcomer's
// series start afresh at the next collection, from its own start.
func (c *Metrics) Collect(hists []tracer.Histogram, now pcommon.Timestamp, ended map[uint32]bool) (pmetric.Metrics, []tracer.HistKey) {
	byProcess := map[uint32][]tracer.HistKey{}
	for i := range hists {
		h := &hists[i]
		if h.Overflow {
			if c.overflow == nil {
				c.overflow = &series{}
			}
			c.overflow.update(&h.HistCounts, h.Waits)
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
		s.update(&h.HistCounts, h.Waits)
		byProcess[h.Key.PID] = append(byProcess[h.Key.PID], h.Key)
	}

	md := pmetric.NewMetrics()
	var gone []tracer.HistKey
	for tgid, keys := range byProcess {
		p := c.process(tgid)
		rm := md.ResourceMetrics().AppendEmpty()
		res := rm.Resource().Attributes()
		res.PutInt(AttrProcessPID, int64(tgid))
		if p.desc.Comm != "" {
			res.PutStr(AttrProcessExecName, p.desc.Comm)
		}
		if p.start != 0 {
			res.PutStr(AttrProcessCreationTime, p.start.AsTime().UTC().Format(time.RFC3339Nano))
		}
		putDescription(res, p.desc)
		durations, written, times := c.appendMetrics(rm)
		for _, key := range keys {
			c.appendPoints(durations, written, times, key, c.series[key], p.seriesStart, now)
		}
		if written.DataPoints().Len() == 0 {
			rm.ScopeMetrics().At(0).Metrics().RemoveIf(func(m pmetric.Metric) bool { return m.Name() == MetricBytesWritten })
		}
		if ended[tgid] {
			gone = append(gone, keys...)
			delete(c.processes, tgid)
		}
	}
	if c.overflow != nil {
		durations, written, _ := c.appendMetrics(md.ResourceMetrics().AppendEmpty())
		sm := md.ResourceMetrics().At(md.ResourceMetrics().Len() - 1).ScopeMetrics().At(0)
		sm.Metrics().RemoveIf(func(m pmetric.Metric) bool { return m.Name() == MetricTime }) // the waits are kept per key only
		c.appendOverflowPoints(durations, written, now)
	}
	for _, key := range gone {
		delete(c.series, key)
	}
	return md, gone
}

// process is the process whose series tgid's histograms are, known from the
// first collection that read them. One gone by then is a process of start 0,
// which the next check finds ended.
func (c *Metrics) process(tgid uint32) *tracedProcess {
	p := c.processes[tgid]
	if p == nil {
		p = &tracedProcess{Process: process.Process{PID: int(tgid)}, seriesStart: c.start}
		if now, running := c.registry.Lookup(int(tgid)); running {
			p.Process, p.desc = now, c.registry.Describe(now)
			if !p.desc.Start.IsZero() {
				p.start = pcommon.NewTimestampFromTime(p.desc.Start)
				p.seriesStart = max(p.start, c.start)
			}
		}
		c.processes[tgid] = p
	} else if len(p.desc.Args) == 0 {
		// Gone already, a kernel thread, or caught before its exec: read again.
		if d := c.registry.Describe(p.Process); len(d.Args) > 0 {
			p.desc.Args, p.desc.Container = d.Args, d.Container
		}
	}
	return p
}

func (c *Metrics) appendMetrics(rm pmetric.ResourceMetrics) (pmetric.ExponentialHistogram, pmetric.Sum, pmetric.Sum) {
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

	var times pmetric.Sum
	if c.timeParts {
		m := sm.Metrics().AppendEmpty()
		m.SetName(MetricTime)
		m.SetUnit("s")
		m.SetDescription("Time of the traced syscalls by part (etcd.syscall.time.part): on a CPU, waiting for one, or blocked on what; the parts add up to etcd.syscall.duration's sum.")
		times = m.SetEmptySum()
		times.SetIsMonotonic(true)
		times.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	}
	return durations, written, times
}

func (c *Metrics) appendPoints(durations pmetric.ExponentialHistogram, written, times pmetric.Sum, key tracer.HistKey, s *series, start, now pcommon.Timestamp) {
	dp := durations.DataPoints().AppendEmpty()
	putKeyAttributes(dp.Attributes(), key)
	fillHistogram(dp, s, start, now)
	if c.timeParts {
		// A part appears once it took any time (the time on a CPU always), and stays.
		for part, ns := range s.parts() {
			if ns == 0 && tracer.Part(part) != tracer.PartCPU {
				continue
			}
			tp := times.DataPoints().AppendEmpty()
			putKeyAttributes(tp.Attributes(), key)
			tp.Attributes().PutStr(AttrTimePart, tracer.Part(part).String())
			tp.SetStartTimestamp(start)
			tp.SetTimestamp(now)
			tp.SetDoubleValue(float64(ns) / 1e9)
		}
	}
	if key.Syscall.Writes() {
		wp := written.DataPoints().AppendEmpty()
		putKeyAttributes(wp.Attributes(), key)
		wp.SetStartTimestamp(start)
		wp.SetTimestamp(now)
		wp.SetIntValue(int64(s.bytes))
	}
}

// appendOverflowPoints reports the overflow series as the OpenTelemetry SDKs do:
// one point whose only attribute is otel.metric.overflow=true.
func (c *Metrics) appendOverflowPoints(durations pmetric.ExponentialHistogram, written pmetric.Sum, now pcommon.Timestamp) {
	dp := durations.DataPoints().AppendEmpty()
	dp.Attributes().PutBool(AttrOverflow, true)
	fillHistogram(dp, c.overflow, c.start, now)
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
func fillHistogram(dp pmetric.ExponentialHistogramDataPoint, s *series, start, now pcommon.Timestamp) {
	dp.SetStartTimestamp(start)
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
	// The end buckets also hold the calls beyond the map's range (29.8 ns to
	// 128 s); Min and Max say how far beyond.
	dp.SetMin(float64(s.minNs) / 1e9)
	dp.SetMax(float64(s.maxNs) / 1e9)
	dp.Positive().SetOffset(tracer.HistFirstIndex + int32(first))
	dp.Positive().BucketCounts().FromRaw(s.buckets[first : last+1])
}
