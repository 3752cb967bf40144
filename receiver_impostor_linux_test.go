//go:build linux && (amd64 || arm64)

package etcdebpfreceiver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap"

	"github.com/etcdebpf/etcdebpfreceiver/internal/convert"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/logtest"
)

// walSyncConsumer counts records per pid and keeps the entry times of one
// process's WAL fdatasyncs, without keeping the records: a flood is millions.
type walSyncConsumer struct {
	etcdPID int64
	mu      sync.Mutex
	perPID  map[int64]int
	syncs   []time.Time
}

func (c *walSyncConsumer) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func (c *walSyncConsumer) ConsumeLogs(_ context.Context, logs plog.Logs) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, lr := range logtest.Flatten(logs) {
		pid := lr.Int(convert.AttrProcessPID)
		c.perPID[pid]++
		if pid == c.etcdPID && lr.Str(convert.AttrName) == "fdatasync" && strings.HasSuffix(lr.Str(convert.AttrFileName), ".wal") {
			c.syncs = append(c.syncs, lr.Timestamp().AsTime())
		}
	}
	return nil
}

func (c *walSyncConsumer) count(pid int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.perPID[int64(pid)]
}

func (c *walSyncConsumer) syncsIn(w etcdtest.WALSyncWindow) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ts := range c.syncs {
		if w.Contains(ts) {
			n++
		}
	}
	return n
}

// An unprivileged process named etcd floods write(2) while a real etcd serves
// puts. With a budget, the impostor loses its own records and etcd
// loses none; with executable set, the impostor is not traced at all.
func TestImpostorCannotTakeEtcdsRecords(t *testing.T) {
	bpftest.RequireBPF(t)
	etcdBin := bpftest.RequireEtcd(t)
	tests := []struct {
		name       string
		executable string
	}{
		{name: "budget"},
		{name: "executable", executable: etcdBin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startEtcd(t)
			impostor := bpftest.StartImpostor(t)
			cfg := createDefaultConfig()
			cfg.Executable = tt.executable
			// A tenth of the default: still far above what etcd makes here (400 puts,
			// a few records each), and below what the impostor's write(2) loop makes
			// even on a busy or emulated CPU, so the test does not depend on the
			// machine's speed. The default's headroom is measured in the bench.
			cfg.Budget.RecordsPerSecond, cfg.Budget.Burst = 20_000, 2_000
			sink := &walSyncConsumer{etcdPID: int64(srv.PID()), perPID: map[int64]int{}}
			rcv, tel, logs := telemetryReceiver(t, cfg, sink)
			traced := time.Now()
			require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
			defer func() { require.NoError(t, rcv.Shutdown(context.Background())) }()
			tr := rcv.(*etcdReceiver).ctrl.Session()

			time.Sleep(500 * time.Millisecond) // the flood is on before etcd's first put
			start := time.Now()
			window, err := srv.MeasureWALSyncs(func() error {
				errs := make([]error, 4)
				var wg sync.WaitGroup
				for c := range errs {
					wg.Go(func() { errs[c] = srv.PutN(fmt.Sprintf("client%d", c), 100, 256) })
				}
				wg.Wait()
				return errors.Join(errs...)
			})
			require.NoError(t, err)
			flood := time.Since(start)
			require.Eventually(t, func() bool { return tr.PendingRecords() == 0 }, 10*time.Second, 20*time.Millisecond)
			time.Sleep(2 * cfg.FlushInterval)
			losses, err := tr.Losses()
			queued := sink.count(impostor) + int(losses[impostor].RingbufFull) // read after the losses: never more than budgeted by now
			allowed := cfg.Budget.Burst + int(time.Since(traced).Seconds()*float64(cfg.Budget.RecordsPerSecond))
			require.NoError(t, err)

			walSyncs := sink.syncsIn(window)
			t.Logf("%v of puts under the flood: etcd %d records, %d WAL fdatasync (etcd counted %d), losses %+v; impostor %d records, losses %+v; over budget in total %d",
				flood.Round(time.Millisecond), sink.count(srv.PID()), walSyncs, window.Syncs, losses[srv.PID()],
				sink.count(impostor), losses[impostor], sumOf(t, tel, "otelcol_etcdebpf_records_lost_over_budget"))
			require.GreaterOrEqual(t, window.Syncs, 100, "etcd synced its WAL under the flood")
			assert.Zero(t, losses[srv.PID()], "etcd lost no record")
			assert.InDelta(t, window.Syncs, walSyncs, max(2, 0.03*float64(window.Syncs)),
				"WAL fdatasync records vs etcd_disk_wal_fsync_duration_seconds_count")

			if tt.executable != "" {
				assert.Zero(t, sink.count(impostor), "a process running another file is not traced, whatever its name")
				assert.Zero(t, losses[impostor], "nor counted")
				return
			}
			assert.Positive(t, losses[impostor].OverBudget, "the impostor's losses are counted against it")
			assert.LessOrEqual(t, queued, allowed, "the budget bounds what the impostor queues")
			require.Eventually(t, func() bool {
				return logs.FilterMessage("A traced process lost records").FilterField(zap.Int("pid", impostor)).Len() > 0
			}, 3*time.Second, 50*time.Millisecond, "a log line names the impostor")
		})
	}
}
