//go:build linux

package scenario

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

// walBatch is one collection as the receiver sends it: pid's WAL fdatasync
// histogram (scale 3, buckets from offset) and a socket write's beside it.
func walBatch(pid int, at time.Time, offset int32, counts ...uint64) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutInt("process.pid", int64(pid))
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("etcd.syscall.duration")
	h := m.SetEmptyExponentialHistogram()
	for _, name := range []string{"fdatasync", "write"} {
		dp := h.DataPoints().AppendEmpty()
		dp.Attributes().PutStr("etcd.syscall.name", name)
		dp.Attributes().PutStr("etcd.syscall.file_class", "wal")
		dp.SetTimestamp(pcommon.NewTimestampFromTime(at))
		dp.SetScale(bpf.HistScale)
		dp.Positive().SetOffset(offset)
		var total uint64
		for _, n := range counts {
			total += n
		}
		dp.Positive().BucketCounts().FromRaw(counts)
		dp.SetCount(total)
	}
	return md
}

func TestWALSeries(t *testing.T) {
	t0 := time.Unix(1000, 0)
	// Bucket -80 at scale 3 is (2^-10, 2^-9.875] s, about 1 ms.
	batches := []pmetric.Metrics{
		walBatch(7, t0.Add(2*time.Second), -80, 3, 1),
		walBatch(7, t0, -80, 1), // out of order: sorted by time
		walBatch(8, t0, -72, 5),
		walBatch(7, t0.Add(4*time.Second), -81, 2, 3, 1, 0, 0, 0, 0, 0, 4),
	}
	series := WALSeriesByPID(batches)
	require.Len(t, series, 2)
	require.Len(t, series[7], 3, "the write points are left out")
	assert.True(t, series[7][0].At.Equal(t0))

	_, ok := series[7].At(t0.Add(-time.Second))
	assert.False(t, ok, "nothing collected before the first point")
	p, ok := series[7].At(t0.Add(3 * time.Second))
	require.True(t, ok)
	assert.EqualValues(t, 4, p.Count)

	// From the first point to the last: 10 - 1 calls, the trimmed bucket
	// ranges differing (offset -80 then -81).
	d := series[7].Between(t0, t0.Add(time.Minute))
	assert.EqualValues(t, 9, d.Count)
	assert.EqualValues(t, 2, d.Buckets[math.Exp2(-80.0/8)], "2 in bucket -81, under the first point's range")
	assert.EqualValues(t, 4, d.Buckets[math.Exp2(-79.0/8)], "2 in -81, 3 in -80 less the 1 before")
	assert.EqualValues(t, 9, d.Buckets[math.Inf(1)])
	p99, ok := d.Buckets.Quantile(0.99)
	require.True(t, ok)
	assert.InDelta(t, math.Exp2(-72.0/8), p99, math.Exp2(-72.0/8)*0.1, "the 4 slow calls in bucket -73, about 2 ms")

	assert.Zero(t, series[9].Between(t0, t0.Add(time.Minute)).Count, "an untraced pid counts nothing")
}

func TestThrottleFloor(t *testing.T) {
	floor := ThrottleFloor(bpf.HistScale)
	// 1/5 s lies in (2^(-19/8), 2^(-18/8)] = (192.8 ms, 210.2 ms].
	require.Equal(t, 5, ThrottleIOPS)
	assert.InDelta(t, 0.1928, floor, 0.0001)
	assert.Less(t, floor, 1/float64(ThrottleIOPS))
	// The kernel's own bucketing of 1/ThrottleIOPS s agrees.
	assert.Equal(t, bpf.HistBucket(uint64(1e9/ThrottleIOPS)), bpf.HistBucket(uint64(floor*1e9)+1))
	assert.Equal(t, bpf.HistBucket(uint64(1e9/ThrottleIOPS))-1, bpf.HistBucket(uint64(floor*1e9)-1))
}
