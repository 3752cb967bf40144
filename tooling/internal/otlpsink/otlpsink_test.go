package otlpsink

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
)

func TestSinkStoresWhatIsExported(t *testing.T) {
	var calls atomic.Int32
	s, err := Start("127.0.0.1:0", WithCallback(func(plog.Logs) { calls.Add(1) }))
	require.NoError(t, err)
	defer s.Stop()

	conn, err := grpc.NewClient(s.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := plogotlp.NewGRPCClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, n := range []int{2, 3} {
		logs := plog.NewLogs()
		rl := logs.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutInt("batch", int64(i))
		lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
		for j := range n {
			lrs.AppendEmpty().Attributes().PutInt("i", int64(10*i+j))
		}
		var opts []grpc.CallOption
		if i == 1 {
			opts = append(opts, grpc.UseCompressor(gzip.Name)) // as the OTLP exporter does by default
		}
		_, err := client.Export(ctx, plogotlp.NewExportRequestFromLogs(logs), opts...)
		require.NoError(t, err)
	}
	require.True(t, s.WaitFor(ctx, 5))
	assert.Equal(t, 5, s.RecordCount())
	assert.Len(t, s.Logs(), 2)
	assert.EqualValues(t, 2, calls.Load())
	assert.Positive(t, s.WireBytes(), "the sink counts the bytes it received")
	var got, batches []int64
	for _, r := range s.Records() {
		v, _ := r.Attr("i")
		got = append(got, v.Int())
		b, ok := r.Attr("batch")
		require.True(t, ok, "Attr falls back to the Resource")
		batches = append(batches, b.Int())
	}
	assert.Equal(t, []int64{0, 1, 10, 11, 12}, got)
	assert.Equal(t, []int64{0, 0, 1, 1, 1}, batches, "each record keeps its own Resource")

	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	assert.False(t, s.WaitFor(short, 6), "WaitFor gives up when its context ends")
}

func TestCountOnlyKeepsNothing(t *testing.T) {
	s, err := Start("127.0.0.1:0", CountOnly())
	require.NoError(t, err)
	defer s.Stop()
	conn, err := grpc.NewClient(s.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	logs := plog.NewLogs()
	lrs := logs.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	for range 3 {
		lrs.AppendEmpty().Body().SetStr("write")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = plogotlp.NewGRPCClient(conn).Export(ctx, plogotlp.NewExportRequestFromLogs(logs))
	require.NoError(t, err)
	require.True(t, s.WaitFor(ctx, 3))
	assert.Empty(t, s.Logs(), "nothing is stored")
	assert.Empty(t, s.Records())
}

func TestSinkStoresMetrics(t *testing.T) {
	s, err := Start("127.0.0.1:0")
	require.NoError(t, err)
	defer s.Stop()
	conn, err := grpc.NewClient(s.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()

	metrics := pmetric.NewMetrics()
	m := metrics.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("etcd.syscall.duration")
	m.SetEmptyExponentialHistogram().DataPoints().AppendEmpty().SetCount(7)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pmetricotlp.NewGRPCClient(conn).Export(ctx, pmetricotlp.NewExportRequestFromMetrics(metrics), grpc.UseCompressor(gzip.Name))
	require.NoError(t, err)

	got := s.Metrics()
	require.Len(t, got, 1)
	gm := got[0].ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0)
	assert.Equal(t, "etcd.syscall.duration", gm.Name())
	assert.EqualValues(t, 7, gm.ExponentialHistogram().DataPoints().At(0).Count())
	assert.Zero(t, s.RecordCount(), "metrics are no log records")
}
