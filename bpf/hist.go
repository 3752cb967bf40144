//go:build linux && (amd64 || arm64)

package bpf

// The latency histograms' layout, as etcd_monitor.c defines it: OpenTelemetry
// exponential buckets at HistScale, the map's bucket 0 being index HistFirstIndex.
const (
	HistScale      = 3
	HistBuckets    = int(MonitorHistLayoutHIST_BUCKETS)
	HistFirstIndex = -int32(MonitorHistLayoutHIST_INDEX_OFFSET)
	HistMaxEntries = int(MonitorHistLayoutHIST_MAX_ENTRIES)
)

// boundThresholds[j] is floor(2^(63 + p)) for the 8 fractions p of an octave
// where bucket bounds 1e9 * 2^(k/8) ns fall (log2(1e9) + k/8, mod 1), ascending;
// the last is 1e9 * 2^34 exactly.
var boundThresholds = [8]uint64{
	0x81ffa7a9549ca6e3, 0x8dc3b8960164a7d9, 0x9a9867054d512391, 0xa8965f74bf065071,
	0xb7d88a12d0dd9ea0, 0xc87c3e7d03cdbec3, 0xdaa17c2cd19555db, 0xee6b280000000000,
}

// HistBucket is the map bucket the kernel counts a call of durationNs in: the
// same integer steps as hist_bucket in etcd_monitor.c.
func HistBucket(durationNs uint64) int {
	e := msb64(durationNs)
	f := durationNs << (63 - e)
	var m uint64
	for _, t := range boundThresholds {
		m += above(f, t)
	}
	index := int64(8*e+m) - 240 - int64(HistFirstIndex)
	return int(max(0, min(index, int64(HistBuckets-1))))
}

// nonzero is 1 when 0 < t < 2^n, 0 when t = 0.
func nonzero(t uint64, n uint) uint64 { return (t + (1<<n - 1)) >> n }

// above is 1 when f > c, for f and c in [2^63, 2^64).
func above(f, c uint64) uint64 { return (c - f) >> 63 }

func msb64(v uint64) uint64 {
	var r uint64
	for _, n := range []uint{32, 16, 8, 4, 2} {
		s := nonzero(v>>n, n) * uint64(n)
		v >>= s
		r += s
	}
	return r + v>>1
}
