// Package metrictest reads data points out of pmetric.Metrics for the tests: the
// disks' view's sums and histograms by name, their attributes flattened.
package metrictest

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// Point is one data point of a sum or an exponential histogram, its attributes flattened.
type Point struct {
	Attrs map[string]any
	Value int64
	Start pcommon.Timestamp
	Count uint64 // histograms
}

// Points lists the data points of the metric name in md.
func Points(md pmetric.Metrics, name string) []Point {
	var out []Point
	for _, rm := range md.ResourceMetrics().All() {
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				if m.Name() != name {
					continue
				}
				switch m.Type() {
				case pmetric.MetricTypeSum:
					for _, dp := range m.Sum().DataPoints().All() {
						out = append(out, Point{Attrs: dp.Attributes().AsRaw(), Value: dp.IntValue(), Start: dp.StartTimestamp()})
					}
				case pmetric.MetricTypeExponentialHistogram:
					for _, dp := range m.ExponentialHistogram().DataPoints().All() {
						out = append(out, Point{Attrs: dp.Attributes().AsRaw(), Count: dp.Count(), Start: dp.StartTimestamp()})
					}
				}
			}
		}
	}
	return out
}

// SubmittedBytes sums the submitted bytes series of one disk: per pid, and the rest under pid -1.
func SubmittedBytes(md pmetric.Metrics, disk string) map[int64]int64 {
	out := map[int64]int64{}
	for _, p := range Points(md, "etcdebpf.disk.submitted.bytes") {
		if p.Attrs["system.device"] != disk {
			continue
		}
		pid, ok := p.Attrs["process.pid"].(int64)
		if !ok {
			pid = -1
		}
		out[pid] += p.Value
	}
	return out
}
