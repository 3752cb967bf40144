//go:build linux && (amd64 || arm64)

package controller

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
	"github.com/etcdebpf/etcdebpfreceiver/internal/metadatatest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// countingSession counts reads of the kernel's counters; the rest of Session is
// not called by the telemetry.
type countingSession struct {
	Session
	block                 bool
	counters, blockCounts int
}

func (s *countingSession) Block() bool { return s.block }

func (s *countingSession) RingBytes() (pending, size int) { return 0, 4096 }

func (s *countingSession) Counters() (tracer.Counters, error) {
	s.counters++
	return tracer.Counters{Calls: 7, RingbufFull: 1, InflightFull: 2, OverBudget: 3, Unattributed: 4}, nil
}

func (s *countingSession) BlockCounters() (tracer.BlockCounters, error) {
	s.blockCounts++
	return tracer.BlockCounters{Untimed: 5, DisksFull: 6}, nil
}

// One telemetry collection reads the counters map once, whatever the number of
// instruments it feeds.
func TestKernelCountersReadOncePerCollection(t *testing.T) {
	for _, block := range []bool{false, true} {
		tel := componenttest.NewTelemetry()
		t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
		set := tel.NewTelemetrySettings()
		tb, err := metadata.NewTelemetryBuilder(set)
		require.NoError(t, err)
		s := &countingSession{block: block}
		reg, err := registerKernelCounters(metadata.Meter(set), tb, s)
		require.NoError(t, err)

		for collection := 1; collection <= 3; collection++ {
			m, err := tel.GetMetric("otelcol_etcdebpf_calls_traced")
			require.NoError(t, err)
			assert.NotNil(t, m)
			assert.Equal(t, collection, s.counters, "block %v: one read per collection", block)
		}
		lost, err := tel.GetMetric("otelcol_etcdebpf_records_lost_unattributed")
		require.NoError(t, err)
		assert.NotNil(t, lost)
		if block {
			assert.Equal(t, s.counters, s.blockCounts, "the disks' counters likewise")
			_, err := tel.GetMetric("otelcol_etcdebpf_disk_events_lost")
			require.NoError(t, err)
		} else {
			assert.Zero(t, s.blockCounts)
		}
		require.NoError(t, reg.Unregister())
		tb.Shutdown()
	}
}

// The ring's occupancy is read in the one telemetry callback: with the pipeline
// stuck, what the ring holds is what the gauge says, against the ring's size.
func TestRingOccupancyGaugeFillsWhenThePipelineIsStuck(t *testing.T) {
	stuck, release := make(chan struct{}), make(chan struct{})
	h := newHarness(t, func(_ *harness, cfg *Config) {
		cfg.MaxBatchSize = 1
		cfg.Logs, _ = consumer.NewLogs(func(context.Context, plog.Logs) error {
			select {
			case stuck <- struct{}{}:
			default:
			}
			<-release
			return nil
		})
	})
	h.session.records <- record(42)
	<-stuck // the reader holds one record in the pipeline and reads no more
	const queued = 100
	for range queued {
		h.session.records <- record(42)
	}
	metadatatest.AssertEqualEtcdebpfRingbufPendingBytes(t, h.tel, points(queued*ringRecordBytes), metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualEtcdebpfRingbufSizeBytes(t, h.tel, points(int64(cap(h.session.records)*ringRecordBytes)), metricdatatest.IgnoreTimestamp())
	close(release)
	h.stop(t)
}
