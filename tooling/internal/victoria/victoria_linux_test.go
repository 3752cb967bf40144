//go:build linux

package victoria

import (
	"bytes"
	"context"
	"encoding/base64"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// What goes in over OTLP/HTTP comes back from LogsQL, with every type of
// attribute value as VictoriaLogs spells it.
func TestLogsRoundTrip(t *testing.T) {
	srv := StartForTest(t, Logs)
	ctx := context.Background()

	logs := plog.NewLogs()
	rl := logs.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutInt("process.pid", 4242)
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	now := time.Now()
	lr.SetTimestamp(pcommon.NewTimestampFromTime(now))
	lr.Body().SetStr("fdatasync")
	lr.Attributes().PutStr("file.name", "0000000000000000-0000000000000000.wal")
	lr.Attributes().PutInt("etcd.syscall.duration_ns", -12345678901)
	lr.Attributes().PutEmptyBytes("etcd.syscall.raw").FromRaw([]byte{0, 1, 2, 0xff})
	body, err := plogotlp.NewExportRequestFromLogs(logs).MarshalProto()
	require.NoError(t, err)
	resp, err := http.Post(srv.OTLPLogsEndpoint(), "application/x-protobuf", bytes.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, srv.Flush(ctx))

	rows, err := srv.LogsQL(ctx, `process.pid:=4242 | fields _time, _msg, file.name, etcd.syscall.duration_ns, etcd.syscall.raw`)
	require.NoError(t, err)
	require.Len(t, rows, 1)
	row := rows[0]
	assert.Equal(t, "fdatasync", row["_msg"])
	assert.Equal(t, "0000000000000000-0000000000000000.wal", row["file.name"])
	assert.Equal(t, "-12345678901", row["etcd.syscall.duration_ns"])
	assert.Equal(t, base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 0xff}), row["etcd.syscall.raw"])
	ts, err := time.Parse(time.RFC3339Nano, row["_time"])
	require.NoError(t, err)
	assert.True(t, ts.Equal(now), "nanosecond timestamps: %s vs %s", ts, now)

	rows, err = srv.LogsQL(ctx, `* | stats count() n`)
	require.NoError(t, err)
	assert.Equal(t, []map[string]string{{"n": "1"}}, rows)
}

// An OTLP exponential histogram (scale 3, as the receiver's kernel histograms)
// goes in over OTLP/HTTP and its p99 comes back from PromQL within a bucket.
func TestMetricsRoundTrip(t *testing.T) {
	srv := StartForTest(t, Metrics)
	ctx := context.Background()

	// 1000 observations: 990 in the bucket holding 1 ms, 10 in the one holding 16 ms.
	const scale = 3
	index := func(v float64) int32 { return int32(math.Ceil(math.Log2(v)*(1<<scale))) - 1 }
	start := time.Now().Add(-time.Minute)
	push := func(at time.Time, fast, slow uint64) {
		metrics := pmetric.NewMetrics()
		m := metrics.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("etcd.syscall.duration")
		m.SetUnit("s")
		h := m.SetEmptyExponentialHistogram()
		h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		dp := h.DataPoints().AppendEmpty()
		dp.Attributes().PutStr("etcd.syscall.name", "fdatasync")
		dp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		dp.SetTimestamp(pcommon.NewTimestampFromTime(at))
		dp.SetScale(scale)
		lo, hi := index(0.001), index(0.016)
		dp.Positive().SetOffset(lo)
		counts := make([]uint64, hi-lo+1)
		counts[0], counts[hi-lo] = fast, slow
		dp.Positive().BucketCounts().FromRaw(counts)
		dp.SetCount(fast + slow)
		dp.SetSum(float64(fast)*0.001 + float64(slow)*0.016)
		body, err := pmetricotlp.NewExportRequestFromMetrics(metrics).MarshalProto()
		require.NoError(t, err)
		resp, err := http.Post(srv.OTLPMetricsEndpoint(), "application/x-protobuf", bytes.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	now := time.Now()
	push(now.Add(-20*time.Second), 0, 0)
	push(now, 990, 10)
	require.NoError(t, srv.Flush(ctx))

	count, err := srv.PromQL(ctx, `sum(increase(etcd_syscall_duration_seconds_count[1m]))`, now)
	require.NoError(t, err)
	require.Len(t, count, 1)
	assert.InDelta(t, 1000, count[0].Value, 1)

	// increase_pure: a bucket's first sample counts from zero (VictoriaMetrics
	// receives a bucket only once it holds something).
	q := `histogram_quantile(0.99, sum by (vmrange) (increase_pure(etcd_syscall_duration_seconds_bucket{etcd_syscall_name="fdatasync"}[1m])))`
	p99, err := srv.PromQL(ctx, q, now)
	require.NoError(t, err)
	require.Len(t, p99, 1, "%s", q)
	t.Logf("%s = %g", q, p99[0].Value)
	// The 990th of 1000 observations is the last of the bucket holding 1 ms.
	lower, upper := math.Exp2(float64(index(0.001))/(1<<scale)), math.Exp2(float64(index(0.001)+1)/(1<<scale))
	assert.GreaterOrEqual(t, p99[0].Value, lower*0.999)
	assert.LessOrEqual(t, p99[0].Value, upper*1.001)
}
