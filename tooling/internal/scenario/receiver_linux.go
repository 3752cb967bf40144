//go:build linux

package scenario

import (
	"cmp"
	"math"
	"slices"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
)

// WALPoint is one collection of the receiver's cumulative histogram of a
// process's WAL fdatasyncs, as etcd's own cumulative buckets: an upper bound
// in seconds to the count at or below it.
type WALPoint struct {
	At      time.Time
	Count   float64
	Buckets etcdtest.Histogram
	Scale   int32 // of the exponential histogram the buckets came from
}

// WALSeries is a process's WAL fdatasync histogram over time, oldest first.
type WALSeries []WALPoint

// The receiver's metric and attributes that select WAL syncs (docs/metrics.md).
const (
	metricDuration = "etcd.syscall.duration"
	attrPID        = "process.pid"
	attrName       = "etcd.syscall.name"
	attrFileClass  = "etcd.syscall.file_class"
)

// WALSeriesByPID reads the receiver's WAL fdatasync histograms out of the
// metrics batches, one series per traced process.
func WALSeriesByPID(batches []pmetric.Metrics) map[int]WALSeries {
	return SyncSeriesByPID(batches, "wal")
}

// SyncSeriesByPID reads the receiver's fdatasync histograms of one file
// class ("wal", "db") out of the metrics batches, one series per traced process.
func SyncSeriesByPID(batches []pmetric.Metrics, fileClass string) map[int]WALSeries {
	out := map[int]WALSeries{}
	eachMetric(batches, func(res pcommon.Map, m pmetric.Metric) {
		pidValue, ok := res.Get(attrPID)
		if !ok || m.Name() != metricDuration || m.Type() != pmetric.MetricTypeExponentialHistogram {
			return
		}
		dps := m.ExponentialHistogram().DataPoints()
		for l := 0; l < dps.Len(); l++ {
			dp := dps.At(l)
			name, _ := dp.Attributes().Get(attrName)
			class, _ := dp.Attributes().Get(attrFileClass)
			if name.Str() == "fdatasync" && class.Str() == fileClass {
				out[int(pidValue.Int())] = append(out[int(pidValue.Int())], walPoint(dp))
			}
		}
	})
	for pid, s := range out {
		slices.SortFunc(s, func(a, b WALPoint) int { return a.At.Compare(b.At) })
		out[pid] = s
	}
	return out
}

// walPoint turns an exponential histogram point into cumulative buckets:
// bucket i of the positive range holds (base^i, base^(i+1)].
func walPoint(dp pmetric.ExponentialHistogramDataPoint) WALPoint {
	// Bounds as 2^(i/2^scale): exact powers of two at whole octaves.
	step := math.Exp2(-float64(dp.Scale()))
	bound := func(i int32) float64 { return math.Exp2(float64(i) * step) }
	h := etcdtest.Histogram{}
	cum := float64(dp.ZeroCount())
	offset := dp.Positive().Offset()
	counts := dp.Positive().BucketCounts()
	if cum > 0 {
		h[bound(offset)] = cum
	}
	for i := 0; i < counts.Len(); i++ {
		cum += float64(counts.At(i))
		h[bound(offset+int32(i)+1)] = cum
	}
	h[math.Inf(1)] = float64(dp.Count())
	return WALPoint{At: dp.Timestamp().AsTime(), Count: float64(dp.Count()), Buckets: h, Scale: dp.Scale()}
}

// At is the last point collected at or before t, and false when none was.
func (s WALSeries) At(t time.Time) (WALPoint, bool) {
	i, _ := slices.BinarySearchFunc(s, t, func(p WALPoint, t time.Time) int {
		if p.At.After(t) {
			return 1
		}
		return -1
	})
	if i == 0 {
		return WALPoint{}, false
	}
	return s[i-1], true
}

// Between is the growth of the histogram from the last collection at or
// before from to the last at or before to: what the receiver counted between,
// to a collection interval. Before the first collection, it counts from zero.
func (s WALSeries) Between(from, to time.Time) WALPoint {
	end, ok := s.At(to)
	if !ok {
		return WALPoint{At: to, Buckets: etcdtest.Histogram{}}
	}
	start, _ := s.At(from)
	return WALPoint{At: end.At, Count: end.Count - start.Count, Buckets: end.Buckets.Since(start.Buckets), Scale: end.Scale}
}

// lastCollection is the time of the latest histogram point in the batches, of
// any series; zero when there is none.
func lastCollection(batches []pmetric.Metrics) time.Time {
	var last time.Time
	eachMetric(batches, func(_ pcommon.Map, m pmetric.Metric) {
		if m.Type() != pmetric.MetricTypeExponentialHistogram {
			return
		}
		dps := m.ExponentialHistogram().DataPoints()
		for l := 0; l < dps.Len(); l++ {
			if at := dps.At(l).Timestamp().AsTime(); at.After(last) {
				last = at
			}
		}
	})
	return last
}

// eachMetric calls fn with every metric of the batches and its Resource's attributes.
func eachMetric(batches []pmetric.Metrics, fn func(res pcommon.Map, m pmetric.Metric)) {
	for _, md := range batches {
		for i := 0; i < md.ResourceMetrics().Len(); i++ {
			rm := md.ResourceMetrics().At(i)
			for j := 0; j < rm.ScopeMetrics().Len(); j++ {
				ms := rm.ScopeMetrics().At(j).Metrics()
				for k := 0; k < ms.Len(); k++ {
					fn(rm.Resource().Attributes(), ms.At(k))
				}
			}
		}
	}
}

// Submitter is a process that submitted bytes to a disk, from the receiver's
// disks' view (etcdebpf.disk.submitted.bytes, docs/metrics.md).
type Submitter struct {
	PID    int
	Comm   string
	Device string // system.device: the whole disk's name
	Bytes  float64
}

const (
	metricSubmittedBytes = "etcdebpf.disk.submitted.bytes"
	attrExecName         = "process.executable.name"
	attrDevice           = "system.device"
)

// SubmittersBetween is what each process submitted to each disk from the last
// collection at or before from to the last at or before to, most first: the
// growth of its cumulative series (a series that began inside counts from 0).
func SubmittersBetween(batches []pmetric.Metrics, from, to time.Time) []Submitter {
	type key struct {
		pid    int
		device string
	}
	type edge struct {
		at    time.Time
		bytes float64
	}
	first, last := map[key]edge{}, map[key]edge{}
	comms := map[key]string{}
	eachMetric(batches, func(_ pcommon.Map, m pmetric.Metric) {
		if m.Name() != metricSubmittedBytes || m.Type() != pmetric.MetricTypeSum {
			return
		}
		dps := m.Sum().DataPoints()
		for l := 0; l < dps.Len(); l++ {
			dp := dps.At(l)
			pid, ok := dp.Attributes().Get(attrPID)
			if !ok {
				continue // the overflow series
			}
			device, _ := dp.Attributes().Get(attrDevice)
			comm, _ := dp.Attributes().Get(attrExecName)
			kk := key{int(pid.Int()), device.Str()}
			at, v := dp.Timestamp().AsTime(), float64(dp.IntValue())
			if at.After(to) {
				continue
			}
			comms[kk] = comm.Str()
			if at.After(from) {
				if e, ok := last[kk]; !ok || at.After(e.at) {
					last[kk] = edge{at, v}
				}
			} else if e, ok := first[kk]; !ok || at.After(e.at) {
				first[kk] = edge{at, v}
			}
		}
	})
	var out []Submitter
	for kk, e := range last {
		if n := e.bytes - first[kk].bytes; n > 0 {
			out = append(out, Submitter{PID: kk.pid, Comm: comms[kk], Device: kk.device, Bytes: n})
		}
	}
	slices.SortFunc(out, func(a, b Submitter) int { return cmp.Compare(b.Bytes, a.Bytes) })
	return out
}
