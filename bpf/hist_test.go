//go:build linux && (amd64 || arm64)

package bpf

import (
	"math"
	"math/big"
	"math/bits"
	"testing"
)

// boundaryNs is the upper bound of OpenTelemetry scale-3 bucket index in
// nanoseconds, 1e9 * 2^((index+1)/8), to 30 significant digits.
func boundaryNs(index int) *big.Float {
	// 2^(k/8) = 2^floor(k/8) * 2^((k mod 8)/8): math.Pow is within 1 ulp (2^-52), far
	// closer than any integer duration of these sizes comes to a boundary.
	k := index + 1
	whole, frac := math.Floor(float64(k)/8), float64(k)-8*math.Floor(float64(k)/8)
	b := new(big.Float).SetPrec(200).SetFloat64(math.Pow(2, frac/8))
	b.SetMantExp(b, int(whole))
	return b.Mul(b, big.NewFloat(1e9))
}

// The kernel's buckets, through their Go mirror, are OpenTelemetry's: a duration
// just above a bucket's upper bound goes in the next bucket, one just at or below
// it in that bucket.
func TestHistBucketBoundaries(t *testing.T) {
	for slot := 0; slot < HistBuckets-1; slot++ {
		index := int(HistFirstIndex) + slot
		b, _ := boundaryNs(index).Float64()
		below, above := uint64(math.Floor(b)), uint64(math.Ceil(b))
		if below == above {
			continue // no integer duration on either side; 1e9 * 2^(k/8) is an integer only for whole seconds
		}
		if got := HistBucket(below); got != slot {
			t.Errorf("HistBucket(%d) = %d, want %d (upper bound %.3f ns)", below, got, slot, b)
		}
		if got := HistBucket(above); got != slot+1 {
			t.Errorf("HistBucket(%d) = %d, want %d (upper bound %.3f ns)", above, got, slot+1, b)
		}
	}
}

// msb64 is the position of the highest set bit, as math/bits says.
func TestMsb64(t *testing.T) {
	for e := range 64 {
		for _, v := range []uint64{1 << e, 1<<e | 1, 1<<e | (1<<e - 1)} {
			if got := msb64(v); got != uint64(63-bits.LeadingZeros64(v)) {
				t.Errorf("msb64(%#x) = %d, want %d", v, got, 63-bits.LeadingZeros64(v))
			}
		}
	}
}

func TestHistBucket(t *testing.T) {
	tests := []struct {
		name string
		ns   uint64
		want int
	}{
		{"zero goes to the first bucket", 0, 0},
		{"1 ns, below the first bucket", 1, 0},
		{"29 ns, below the first bucket's lower bound 2^-25 s", 29, 0},
		{"30 ns, just above 2^-25 s = 29.80 ns", 30, 0},
		{"1 us: 2^-20 s = 953.7 ns, so index -160 + 8*log2(1000/953.7)=0.55", 1000, -160 - int(HistFirstIndex)},
		{"1 ms: log2(1e-3)*8 = -79.7, index -80", 1_000_000, -80 - int(HistFirstIndex)},
		{"1 s: a power of two is the top of the bucket below", 1_000_000_000, -1 - int(HistFirstIndex)},
		{"just over 1 s", 1_000_000_001, 0 - int(HistFirstIndex)},
		{"128 s is the top of the last bucket", 128_000_000_000, HistBuckets - 1},
		{"an hour clamps to the last bucket", 3600_000_000_000, HistBuckets - 1},
		{"max uint64 clamps to the last bucket", math.MaxUint64, HistBuckets - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HistBucket(tt.ns); got != tt.want {
				t.Errorf("HistBucket(%d) = %d, want %d", tt.ns, got, tt.want)
			}
		})
	}
}

// A bucket's midpoint is within (2^(1/8) - 1) / 2 = 4.53% of every duration the
// bucket holds: the relative error of a value read from the histogram.
func TestHistBucketRelativeError(t *testing.T) {
	for ns := uint64(30); ns < 128e9; ns = ns*1009/1000 + 1 {
		slot := HistBucket(ns)
		lower := 1e9 * math.Pow(2, float64(int(HistFirstIndex)+slot)/8)
		upper := lower * math.Pow(2, 1.0/8)
		mid := (lower + upper) / 2
		if rel := math.Abs(float64(ns)-mid) / float64(ns); rel > (math.Pow(2, 1.0/8)-1)/2+1e-12 {
			t.Fatalf("%d ns in bucket (%.1f, %.1f]: %.2f%% from its midpoint", ns, lower, upper, 100*rel)
		}
	}
}
