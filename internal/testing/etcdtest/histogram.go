package etcdtest

import (
	"maps"
	"math"
	"slices"
)

// Histogram is a Prometheus histogram's cumulative buckets: upper bound in
// seconds (+Inf included) to the count of observations at or below it.
type Histogram map[float64]float64

// Since is the growth of h since before, bucket by bucket. A bound before
// lacks (a trimmed exponential histogram's) counts what its next lower bound
// does there.
func (h Histogram) Since(before Histogram) Histogram {
	d := make(Histogram, len(h))
	for le, n := range h {
		d[le] = n - before.atOrBelow(le)
	}
	return d
}

// atOrBelow is the count of observations at or below v that h can tell: the
// count of its largest bound at or below v.
func (h Histogram) atOrBelow(v float64) float64 {
	bound, n := math.Inf(-1), 0.0
	for le, c := range h {
		if le <= v && le > bound {
			bound, n = le, c
		}
	}
	return n
}

// Quantile estimates the q-quantile (0..1), in seconds, as PromQL's
// histogram_quantile does: linear interpolation inside the bucket that holds the
// rank; the +Inf bucket answers its lower bound. False when h counts nothing.
func (h Histogram) Quantile(q float64) (float64, bool) {
	bounds := slices.Sorted(maps.Keys(h))
	if len(bounds) == 0 || h[bounds[len(bounds)-1]] <= 0 {
		return 0, false
	}
	rank := q * h[bounds[len(bounds)-1]]
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		n := h[le]
		if n >= rank {
			switch {
			case math.IsInf(le, 1):
				return lower, true
			case n == below:
				return le, true
			}
			return lower + (le-lower)*(rank-below)/(n-below), true
		}
		lower, below = le, n
	}
	return lower, true
}

// Bucket is the index of the bucket that holds v seconds: how many upper bounds
// lie below it. Two values in one bucket cannot be told apart by the histogram.
func (h Histogram) Bucket(v float64) int {
	n := 0
	for le := range h {
		if le < v {
			n++
		}
	}
	return n
}
