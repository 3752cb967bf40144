package etcdtest

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHistogram(t *testing.T) {
	inf := math.Inf(1)
	// 100 observations: 50 in (0, 1ms], 40 in (1ms, 2ms], 10 in (2ms, 4ms].
	h := Histogram{0.001: 50, 0.002: 90, 0.004: 100, 0.008: 100, inf: 100}
	tests := []struct {
		name string
		h    Histogram
		q    float64
		want float64
		ok   bool
	}{
		{"the rank on a bound", h, 0.5, 0.001, true},
		{"halfway through (1ms, 2ms]", h, 0.7, 0.0015, true},
		{"p99 inside (2ms, 4ms]", h, 0.99, 0.0038, true},
		{"no observations", Histogram{0.001: 0, inf: 0}, 0.5, 0, false},
		{"the +Inf bucket answers its lower bound", Histogram{0.001: 0, 8.192: 1, inf: 2}, 0.99, 8.192, true},
		{"an empty histogram", Histogram{}, 0.5, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.h.Quantile(tt.q)
			assert.Equal(t, tt.ok, ok)
			assert.InDelta(t, tt.want, got, 1e-9)
		})
	}

	assert.Equal(t, Histogram{0.001: 1, 0.002: 5}, Histogram{0.001: 2, 0.002: 6}.Since(Histogram{0.001: 1, 0.002: 1}))
	// Trimmed histograms (the receiver's exponential ones) lack empty edge
	// buckets: under its first bound before counted 0, above its last all.
	assert.Equal(t, Histogram{0.001: 2, 0.002: 2, 0.004: 4, inf: 4},
		Histogram{0.001: 2, 0.002: 5, 0.004: 7, inf: 7}.Since(Histogram{0.002: 3, inf: 3}))
	assert.Equal(t, 0, h.Bucket(0.0004), "under the first bound")
	assert.Equal(t, 0, h.Bucket(0.001), "a bound belongs to its own bucket")
	assert.Equal(t, 1, h.Bucket(0.0011))
	assert.Equal(t, 4, h.Bucket(10), "past the last finite bound: +Inf")
}
