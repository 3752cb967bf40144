//go:build linux

package bpf

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

// HistBucket is the map bucket the kernel counts a call of durationNs in: the
// same integer steps as hist_bucket in etcd_monitor.c.
func HistBucket(durationNs uint64) int {
	durationNs = min(durationNs, maxHistNs)
	q, r := durationNs/fivePow9, durationNs%fivePow9
	v := q<<41 + r<<41/fivePow9 // the duration in 2^-50 s
	e := msb64(v)
	f := v << (63 - e)
	var m uint64
	for _, t := range mantissaThresholds {
		m += above(f, t)
	}
	abovePow2 := nonzero(f-1<<63, 63)
	index := int64(8*e+m+abovePow2) - 1 - 8*50 - int64(HistFirstIndex)
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
