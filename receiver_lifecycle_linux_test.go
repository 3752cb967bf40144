//go:build linux && (amd64 || arm64)

package etcdebpfreceiver

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/etcdebpf/etcdebpfreceiver/internal/controller"
	"github.com/etcdebpf/etcdebpfreceiver/internal/convert"
	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpfobjects"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/logtest"
)

// countingConsumer counts records per pid; it can be made slow, failing or blocked.
type countingConsumer struct {
	mu      sync.Mutex
	perPID  map[int64]int
	batches int
	delay   time.Duration
	failNth int           // every failNth batch is refused, when > 0
	gate    chan struct{} // when not nil, ConsumeLogs waits for it to close
}

func newCountingConsumer() *countingConsumer { return &countingConsumer{perPID: map[int64]int{}} }

func (c *countingConsumer) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func (c *countingConsumer) ConsumeLogs(_ context.Context, logs plog.Logs) error {
	c.mu.Lock()
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	time.Sleep(c.delay)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches++
	if c.failNth > 0 && c.batches%c.failNth == 0 {
		return errors.New("refused by the test")
	}
	for _, lr := range logtest.Flatten(logs) {
		pid, _ := lr.Resource.Attributes().Get(convert.AttrProcessPID)
		c.perPID[pid.Int()]++
	}
	return nil
}

func (c *countingConsumer) count(pid int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.perPID[int64(pid)]
}

// telemetryReceiver creates a receiver whose telemetry the test can read.
func telemetryReceiver(t *testing.T, cfg *Config, next consumer.Logs) (receiver.Logs, *componenttest.Telemetry, *observer.ObservedLogs) {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	set := receivertest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	core, logs := observer.New(zap.InfoLevel)
	set.Logger = zap.New(core)
	rcv, err := NewFactory().CreateLogs(context.Background(), set, cfg, next)
	require.NoError(t, err)
	return rcv, tel, logs
}

// sumOf adds up every data point of a counter; 0 if it was never recorded.
func sumOf(t *testing.T, tel *componenttest.Telemetry, name string) int {
	t.Helper()
	m, err := tel.GetMetric(name)
	if err != nil {
		return 0
	}
	total := 0
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		total += int(dp.Value)
	}
	return total
}

func TestFloodAccountsForEverySyscall(t *testing.T) {
	bpftest.RequireBPF(t)
	const writes = 1_000_000
	w := bpftest.StartWriter(t, bpftest.BuildWriter(t), writes, 64)

	cfg := createDefaultConfig()
	cfg.PIDs = []int{w.PID()}
	cfg.RingBufferSize = minRingSize // a few hundred records: the flood must overflow it
	cfg.MaxBatchSize = 256
	sink := newCountingConsumer()
	// Slow (at most 256 records per 10 ms: ~25k/s, a tenth of what the writer
	// makes), and it refuses every third batch.
	sink.delay, sink.failNth = 10*time.Millisecond, 3
	rcv, tel, _ := telemetryReceiver(t, cfg, sink)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(t, rcv.Shutdown(context.Background())) }()

	start := time.Now()
	w.Release(t, time.Minute)
	writeRate := float64(writes) / time.Since(start).Seconds()

	var delivered, refused, ringFull, inflightFull, overBudget, malformed int
	accounted := func() bool {
		delivered = sink.count(w.PID())
		refused = sumOf(t, tel, "otelcol_receiver_refused_log_records")
		ringFull = sumOf(t, tel, "otelcol_etcdebpf_records_lost_ringbuf_full")
		inflightFull = sumOf(t, tel, "otelcol_etcdebpf_records_lost_inflight_full")
		overBudget = sumOf(t, tel, "otelcol_etcdebpf_records_lost_over_budget")
		malformed = sumOf(t, tel, "otelcol_etcdebpf_records_malformed")
		return delivered+refused+ringFull+inflightFull+overBudget+malformed == writes
	}
	ok := assert.Eventually(t, accounted, 20*time.Second, 50*time.Millisecond)
	t.Logf("writer: %.0f writes/s against a pipeline taking at most %.0f records/s", writeRate, float64(cfg.MaxBatchSize)/sink.delay.Seconds())
	t.Logf("%d writes: %d delivered, %d refused by the pipeline, %d lost to a full ring buffer, %d to a full inflight map, %d over budget, %d malformed",
		writes, delivered, refused, ringFull, inflightFull, overBudget, malformed)
	require.True(t, ok, "every syscall is delivered or counted as lost, exactly")
	assert.Positive(t, ringFull, "the flood overflowed the ring buffer")
	assert.Positive(t, refused, "the pipeline refused some batches")
	assert.Positive(t, delivered)
	assert.Zero(t, malformed)
}

func TestBlockedPipelineDoesNotBlockWriterAndRecovers(t *testing.T) {
	bpftest.RequireBPF(t)
	bin := bpftest.BuildWriter(t)
	flood := bpftest.StartWriter(t, bin, 200_000, 64)
	after := bpftest.StartWriter(t, bin, 200, 64)

	cfg := createDefaultConfig()
	cfg.PIDs = []int{flood.PID(), after.PID()}
	cfg.RingBufferSize = minRingSize
	sink := newCountingConsumer()
	sink.gate = make(chan struct{})
	rcv, tel, _ := telemetryReceiver(t, cfg, sink)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(t, rcv.Shutdown(context.Background())) }()

	flood.Release(t, time.Minute) // fails if a stuck pipeline blocked the writer
	lost := sumOf(t, tel, "otelcol_etcdebpf_records_lost_ringbuf_full")
	assert.Positive(t, lost, "with the pipeline stuck, the ring buffer overflows into counted drops")

	sink.mu.Lock()
	close(sink.gate) // the pipeline recovers
	sink.gate = nil
	sink.mu.Unlock()
	require.Eventually(t, func() bool { return sink.count(flood.PID()) > 0 }, 10*time.Second, 20*time.Millisecond)
	tr := rcv.(*etcdReceiver).ctrl.Session()
	require.Eventually(t, func() bool { return tr.PendingRecords() == 0 }, 10*time.Second, 20*time.Millisecond,
		"the reader drains the backlog")
	after.Release(t, time.Minute) // 200 records: they fit in the drained ring
	require.Eventually(t, func() bool { return sink.count(after.PID()) == 200 }, 10*time.Second, 20*time.Millisecond,
		"after recovery every record arrives")
	t.Logf("stuck pipeline: %d of 200000 records lost to a full ring; after recovery 200 of 200 delivered", lost)
}

func TestShutdownWithStuckPipelineMeetsDeadline(t *testing.T) {
	bpftest.RequireBPF(t)
	w := bpftest.StartWriter(t, bpftest.BuildWriter(t), 10_000, 64)
	cfg := createDefaultConfig()
	cfg.PIDs = []int{w.PID()}
	sink := newCountingConsumer()
	sink.gate = make(chan struct{})
	t.Cleanup(func() { close(sink.gate) }) // lets the stuck goroutine end before the leak check
	rcv, _, _ := telemetryReceiver(t, cfg, sink)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	w.Release(t, time.Minute)
	time.Sleep(3 * cfg.FlushInterval) // the reader is now inside the stuck pipeline

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := rcv.Shutdown(ctx)
	took := time.Since(start)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "Shutdown says that records were pending")
	assert.ErrorContains(t, err, "records still in the ring buffer", "and how many were dropped")
	assert.Less(t, took, 2*time.Second, "Shutdown returns at its deadline, not when the pipeline does")
}

func TestStartShutdownCyclesLeakNothing(t *testing.T) {
	bpftest.RequireBPF(t)
	cycles := 200
	if testing.Short() {
		cycles = 20
	}
	fdsBefore, goroutinesBefore := bpftest.OpenFDs(t), runtime.NumGoroutine()
	var all bpfobjects.Held
	for i := range cycles {
		rcv, _, _ := telemetryReceiver(t, createDefaultConfig(), newCountingConsumer())
		all = all.Add(bpftest.Started(t, func() {
			require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()), "cycle %d", i)
		}))
		require.NoError(t, rcv.Shutdown(context.Background()), "cycle %d", i)
	}
	bpftest.RequireGone(t, all)
	bpftest.RequireNoNewFDs(t, fdsBefore)
	// Polled here: assert.Eventually runs its condition on goroutines of its own.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > goroutinesBefore && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !assert.LessOrEqual(t, runtime.NumGoroutine(), goroutinesBefore, "goroutines") {
		buf := make([]byte, 1<<20)
		t.Logf("goroutines after %d cycles: %d, before: %d\n%s", cycles, runtime.NumGoroutine(), goroutinesBefore, buf[:runtime.Stack(buf, true)])
	}
	t.Logf("%d cycles: %d programs, %d maps, %d links loaded and released", cycles, len(all.Programs), len(all.Maps), len(all.Links))
}

func TestTwoReceiversSeeOnlyTheirEtcd(t *testing.T) {
	bpftest.RequireBPF(t)
	etcds := []*testEtcd{{srv: startEtcd(t)}, {srv: startEtcd(t)}}
	for _, e := range etcds {
		cfg := createDefaultConfig()
		cfg.PIDs = []int{e.srv.PID()}
		e.sink = newCountingConsumer()
		rcv, _, _ := telemetryReceiver(t, cfg, e.sink)
		require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
		defer func() { require.NoError(t, rcv.Shutdown(context.Background())) }()
	}
	for i := range 20 {
		for _, e := range etcds {
			_, err := e.srv.Put(fmt.Sprintf("k%d", i), "v")
			require.NoError(t, err)
		}
	}
	for i, e := range etcds {
		other := etcds[1-i]
		require.Eventually(t, func() bool { return e.sink.count(e.srv.PID()) > 0 }, 5*time.Second, 20*time.Millisecond)
		time.Sleep(2 * createDefaultConfig().FlushInterval)
		e.sink.mu.Lock()
		assert.Len(t, e.sink.perPID, 1, "receiver %d saw only its own etcd", i)
		assert.Zero(t, e.sink.perPID[int64(other.srv.PID())])
		e.sink.mu.Unlock()
	}
}

type testEtcd struct {
	srv  *etcdtest.Server
	sink *countingConsumer
}

func TestKilledEtcdIsCollectedAgainAfterRestart(t *testing.T) {
	bpftest.RequireBPF(t)
	srv := startEtcd(t)
	sink := newCountingConsumer()
	rcv, _, _ := telemetryReceiver(t, createDefaultConfig(), sink) // by comm: the default
	objs := bpftest.Started(t, func() { require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost())) })
	defer func() { require.NoError(t, rcv.Shutdown(context.Background())) }()

	_, err := srv.Put("before", "v")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sink.count(srv.PID()) > 0 }, 5*time.Second, 20*time.Millisecond)
	oldPID := srv.PID()

	srv.Kill()
	require.Eventually(t, func() bool {
		n, err := objs.Entries("inflight")
		return err == nil && n == 0
	}, 5*time.Second, 20*time.Millisecond, "no pairing entry of the killed threads remains")

	require.NoError(t, srv.Restart())
	require.NotEqual(t, oldPID, srv.PID())
	_, err = srv.Put("after", "v")
	require.NoError(t, err)
	putDone := time.Now()
	require.Eventually(t, func() bool { return sink.count(srv.PID()) > 0 }, time.Second, 10*time.Millisecond,
		"the restarted etcd is collected within a second, with no restart of the receiver")
	t.Logf("restarted etcd (pid %d, was %d): records arrived %v after its first put", srv.PID(), oldPID, time.Since(putDone).Round(time.Millisecond))
}

func TestExitedTargetIsReported(t *testing.T) {
	bpftest.RequireBPF(t)
	w := bpftest.StartWriter(t, bpftest.BuildWriter(t), 100, 8)
	cfg := createDefaultConfig()
	cfg.PIDs = []int{w.PID()}
	sink := newCountingConsumer()
	rcv, tel, logs := telemetryReceiver(t, cfg, sink)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(t, rcv.Shutdown(context.Background())) }()

	w.Release(t, time.Minute)
	require.Eventually(t, func() bool { return sumOf(t, tel, "otelcol_etcdebpf_targets_exited") == 1 }, 5*controller.TargetCheckInterval, 50*time.Millisecond,
		"the exit is counted in telemetry")
	exits := logs.FilterMessageSnippet("A traced process exited").FilterField(zap.Int("pid", w.PID()))
	assert.Equal(t, 1, exits.Len(), "and logged once, with the pid")
	assert.Eventually(t, func() bool { return sink.count(w.PID()) == 100 }, 5*time.Second, 20*time.Millisecond, "its records were delivered")
	time.Sleep(2 * controller.TargetCheckInterval)
	assert.Equal(t, 1, sumOf(t, tel, "otelcol_etcdebpf_targets_exited"), "reported once")
}

// The producer wakes the reader once per 256 records of new data; without that,
// records would wait for the reader's timer (flush_interval, here 10 s).
func TestProducerWakesReaderEvery256Records(t *testing.T) {
	bpftest.RequireBPF(t)
	w := bpftest.StartWriter(t, bpftest.BuildWriter(t), 1000, 8)
	cfg := createDefaultConfig()
	cfg.PIDs = []int{w.PID()}
	cfg.FlushInterval = 10 * time.Second
	cfg.MaxBatchSize = 256
	sink := newCountingConsumer()
	rcv, _, _ := telemetryReceiver(t, cfg, sink)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(t, rcv.Shutdown(context.Background())) }()

	w.Release(t, time.Minute)
	// The producer wakes the reader when the pending records cross a multiple of 256,
	// so at most 255 records stay unread after the last wake-up: at least 745 are
	// read, two full batches of 256 delivered. (Three when the reader lags; a reader
	// that keeps pace with the writer drains the ring as it fills and is woken later.)
	require.Eventually(t, func() bool { return sink.count(w.PID()) >= 512 }, 3*time.Second, 10*time.Millisecond,
		"wake-ups for 1000 records: full batches long before the 10 s timer")
	assert.Less(t, sink.count(w.PID()), 1000, "the last records wait for the timer: no wake-up per record")
}

func TestLifecycleWithoutStart(t *testing.T) {
	cfg := createDefaultConfig()
	rcv, err := NewFactory().CreateLogs(context.Background(), receivertest.NewNopSettings(metadata.Type), cfg, consumertest.NewNop())
	require.NoError(t, err)
	require.NoError(t, rcv.Shutdown(context.Background()), "Shutdown without Start")
	require.NoError(t, rcv.Shutdown(context.Background()), "Shutdown twice")
	shared.mu.Lock()
	defer shared.mu.Unlock()
	assert.NotContains(t, shared.byConfig, cfg, "the factory forgets a receiver shut down without a Start")
}

func TestShutdownLeavesNothingInKernel(t *testing.T) {
	bpftest.RequireBPF(t)
	rcv, err := NewFactory().CreateLogs(context.Background(), receivertest.NewNopSettings(metadata.Type), createDefaultConfig(), consumertest.NewNop())
	require.NoError(t, err)
	objs := bpftest.Started(t, func() { require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost())) })
	require.Len(t, objs.Programs, 19, "an enter and an exit program for each of the 7 syscalls, sched_switch's and the disks' view's 4")
	bpftest.RequireLinks(t, objs, 14, 5)
	bpftest.RequireAlive(t, objs)

	require.NoError(t, rcv.Shutdown(context.Background()))
	bpftest.RequireGone(t, objs)
}

func TestLifecycleRestartAndDoubleStart(t *testing.T) {
	bpftest.RequireBPF(t)
	rcv, err := NewFactory().CreateLogs(context.Background(), receivertest.NewNopSettings(metadata.Type), createDefaultConfig(), consumertest.NewNop())
	require.NoError(t, err)
	host := componenttest.NewNopHost()
	require.NoError(t, rcv.Start(context.Background(), host))
	require.ErrorContains(t, rcv.Start(context.Background(), host), "already started")
	require.NoError(t, rcv.Shutdown(context.Background()))
	require.NoError(t, rcv.Shutdown(context.Background()), "Shutdown twice")
	require.NoError(t, rcv.Start(context.Background(), host), "Start after Shutdown")
	require.NoError(t, rcv.Shutdown(context.Background()))
}
