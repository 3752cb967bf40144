//go:build linux && (amd64 || arm64)

package etcdebpfreceiver

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.uber.org/zap"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter"
)

// A process over its budget loses its own records, counted as over budget and
// attributed to it; what it queued is bounded by the budget, not by its rate.
func TestBudgetBoundsAFloodingProcess(t *testing.T) {
	bpftest.RequireBPF(t)
	const (
		// Paced so that the writer outlives the first check (1 s) on any machine: that
		// check names it while it runs. Five times the budget: most writes are over it.
		writes    = 250_000
		writeRate = 100_000
		rate      = 20_000
		burst     = 2_000
	)
	w := bpftest.StartWriterWith(t, bpftest.BuildWriter(t), etcdwriter.Options{Calls: writes, Size: 64, Rate: writeRate})
	cfg := createDefaultConfig()
	cfg.PIDs = []int{w.PID()}
	cfg.Budget = BudgetConfig{RecordsPerSecond: rate, Burst: burst}
	cfg.RingBufferSize = 64 << 20 // room for everything the budget lets through: no loss to a full ring
	sink := newCountingConsumer()
	rcv, tel, logs := telemetryReceiver(t, cfg, sink)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(t, rcv.Shutdown(context.Background())) }()

	start := time.Now()
	w.Release(t, time.Minute)
	elapsed := time.Since(start)

	var delivered, overBudget, ringFull int
	accounted := func() bool {
		delivered = sink.count(w.PID())
		overBudget = sumOf(t, tel, "otelcol_etcdebpf_records_lost_over_budget")
		ringFull = sumOf(t, tel, "otelcol_etcdebpf_records_lost_ringbuf_full")
		return delivered+overBudget+ringFull == writes
	}
	require.Eventually(t, accounted, 20*time.Second, 50*time.Millisecond,
		"every write is delivered or counted as lost: %d delivered, %d over budget, %d ring full", delivered, overBudget, ringFull)
	allowed := burst + int(elapsed.Seconds()*rate)
	t.Logf("%d writes in %v: %d delivered (budget allows %d), %d over budget", writes, elapsed.Round(time.Millisecond), delivered, allowed, overBudget)
	assert.LessOrEqual(t, delivered, allowed+rate/100, "the budget bounds what a process queues")
	assert.GreaterOrEqual(t, delivered, burst, "the burst gets through")
	assert.Zero(t, ringFull)

	// The writer exited: the next check logs the rest of its losses and frees its entry.
	lines := func() []map[string]any {
		var out []map[string]any
		for _, e := range logs.FilterMessage("A traced process lost records").FilterField(zap.Int("pid", w.PID())).All() {
			out = append(out, e.ContextMap())
		}
		return out
	}
	require.Eventually(t, func() bool {
		l := lines()
		return len(l) > 0 && l[len(l)-1]["exited"] == true
	}, 5*time.Second, 50*time.Millisecond, "a last line when the process has exited")
	logged := uint64(0)
	for _, l := range lines() {
		logged += l["over_budget"].(uint64)
		assert.Contains(t, l["process"], "etcd (/", "the line names the process and its executable")
	}
	assert.Len(t, lines(), 2, "a line at the first check, the last at exit: at most one a minute while it runs")
	assert.EqualValues(t, overBudget, logged, "the lines add up to the process's losses: all of them are counted against it")
	require.Eventually(t, func() bool {
		losses, err := rcv.(*etcdReceiver).ctrl.Session().Losses()
		return err == nil && len(losses) == 0
	}, 5*time.Second, 50*time.Millisecond, "an exited process's entry is freed")
}
