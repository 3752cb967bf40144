//go:build linux

package bpf

import "math/bits"

// The latency histograms' layout, as etcd_monitor.c defines it: OpenTelemetry
// exponential buckets at HistScale, the map's bucket 0 being index HistFirstIndex.
const (
	HistScale      = 3
	HistBuckets    = int(MonitorHistLayoutHIST_BUCKETS)
	HistFirstIndex = -int32(MonitorHistLayoutHIST_INDEX_OFFSET)
	HistMaxEntries = int(MonitorHistLayoutHIST_MAX_ENTRIES)
)

// The mirror of hist_bucket in etcd_monitor.c: the same integer steps.
const (
	fivePow9  = 1953125 // ns * 2^50 / 1e9 = ns * 2^41 / 5^9
	maxHistNs = 1<<43 - 1
)

// mantissaThresholds[m-1] is floor(2^(m/8) * 2^63).
var mantissaThresholds = [7]uint64{
	0x8b95c1e3ea8bd6e6, 0x9837f0518db8a96f, 0xa5fed6a9b15138ea, 0xb504f333f9de6484,
	0xc5672a115506dadd, 0xd744fccad69d6af4, 0xeac0c6e7dd24392e,
}

// HistBucket is the map bucket the kernel counts a call of durationNs in.
func HistBucket(durationNs uint64) int {
	durationNs = min(durationNs, maxHistNs)
	q, r := durationNs/fivePow9, durationNs%fivePow9
	v := q<<41 + r<<41/fivePow9 // the duration in 2^-50 s
	if v == 0 {
		return 0
	}
	e := 63 - bits.LeadingZeros64(v)
	f := v << (63 - e)
	var index int
	if f == 1<<63 {
		index = 8*e - 1
	} else {
		index = 8 * e
		for _, t := range mantissaThresholds {
			if f > t {
				index++
			}
		}
	}
	index -= 8*50 + int(HistFirstIndex)
	return max(0, min(index, HistBuckets-1))
}
