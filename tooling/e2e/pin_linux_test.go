//go:build linux

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/otlpsink"
)

// The DaemonSet's agent with its kernel side pinned (pin_path), tracing a real
// etcd under load: SIGKILLed, and the next agent started a few seconds later,
// its cumulative histogram of WAL fdatasyncs equals etcd's own counter over the
// whole run, the gap included, under one StartTimestamp. Stopped (SIGTERM),
// the agent leaves its programs pinned; an agent shut down with
// unpin_on_shutdown leaves nothing.
func TestPinnedAgentKilledAndReplacedCountsEveryWALSync(t *testing.T) {
	bpftest.RequireBPF(t)
	etcdBin := bpftest.RequireEtcd(t)
	bin := collectorBinary(t)
	sink, err := otlpsink.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(sink.Stop)
	srv, err := etcdtest.Start(etcdBin, t.TempDir())
	require.NoError(t, err)
	t.Cleanup(srv.Stop)

	pinPath := filepath.Join("/sys/fs/bpf", fmt.Sprintf("etcdebpf-e2e-%d", os.Getpid()))
	t.Cleanup(func() { _ = os.RemoveAll(pinPath) })
	queue := t.TempDir()
	agent := func(receiver string) *collector.Collector {
		return startDaemonSetAgent(t, bin, daemonSetAgent{
			node: "node-1", gatewayAddr: sink.Endpoint(), queueDir: queue, pinPath: pinPath,
			receiver: fmt.Sprintf("    pids: [%d]\n    flush_interval: 20ms\n    collection_interval: 1s\n", srv.PID()) + receiver,
		})
	}
	etcdSyncs := func() int {
		n, err := srv.Metric(walFsyncMetric + "_count")
		require.NoError(t, err)
		return int(n)
	}
	// exported waits until the histogram sent for etcd counts want WAL fdatasyncs.
	exported := func(want int) (uint64, []pcommon.Timestamp) {
		t.Helper()
		var got uint64
		var starts []pcommon.Timestamp
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			if got, starts = walSyncSeries(sink.Metrics(), srv.PID()); got >= uint64(want) {
				break
			}
		}
		return got, starts
	}

	// An idle etcd syncs no WAL: the count read now is where the histogram starts.
	time.Sleep(300 * time.Millisecond)
	before := etcdSyncs()
	first := agent("")
	require.NoError(t, srv.PutN("before", 200, 256))
	got, _ := exported(etcdSyncs() - before)
	t.Logf("first agent exported %d WAL fdatasyncs", got)
	require.Positive(t, got, "the first agent sent its histogram before it was killed")

	// An OOM kill: no shutdown, the agent's fds closed by the kernel.
	require.NoError(t, syscall.Kill(first.PID(), syscall.SIGKILL))
	<-first.Exited()
	gap := time.Now()
	require.NoError(t, srv.PutN("gap", 200, 256))
	inGap := etcdSyncs() - before - int(got)
	time.Sleep(2 * time.Second)
	second := agent("")
	t.Logf("no agent ran for %s, while etcd made ~%d WAL fdatasyncs", time.Since(gap).Round(100*time.Millisecond), inGap)
	assert.Contains(t, readFile(second.LogPath), "Took over the programs pinned by the agent before")
	require.NoError(t, srv.PutN("after", 200, 256))

	want := etcdSyncs() - before
	got, starts := exported(want)
	t.Logf("WAL fdatasyncs over the run: %d by etcd_disk_wal_fsync_duration_seconds_count, %d in the receiver's cumulative histogram; StartTimestamps %v",
		want, got, starts)
	assert.EqualValues(t, want, got, "every WAL fdatasync etcd counted, the gap's included")
	assert.Len(t, starts, 1, "one StartTimestamp across both agents: no reset")

	// A rolling update's SIGTERM leaves the programs pinned for the next agent.
	require.NoError(t, second.Stop(15*time.Second), "second agent log:\n%s", second.Tail())
	_, err = os.Stat(filepath.Join(pinPath, "state"))
	require.NoError(t, err, "stopped, the agent leaves its state pinned")

	// Stopping for good: an agent shut down with unpin_on_shutdown leaves nothing.
	third := agent("    unpin_on_shutdown: true\n")
	// The collector handles SIGTERM only once it runs, a moment after it is ready.
	time.Sleep(time.Second)
	assert.Contains(t, readFile(third.LogPath), "Took over the programs pinned by the agent before")
	require.NoError(t, third.Stop(15*time.Second), "third agent log:\n%s", third.Tail())
	_, err = os.Stat(pinPath)
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing pinned after unpin_on_shutdown")
}

// walSyncSeries is the latest cumulative count of etcd.syscall.duration for
// fdatasync on WAL files of process pid, and the distinct StartTimestamps of
// its points.
func walSyncSeries(batches []pmetric.Metrics, pid int) (uint64, []pcommon.Timestamp) {
	var latest uint64
	var starts []pcommon.Timestamp
	for _, dp := range walSyncPoints(batches, pid) {
		latest = max(latest, dp.Count())
		if !slices.Contains(starts, dp.StartTimestamp()) {
			starts = append(starts, dp.StartTimestamp())
		}
	}
	return latest, starts
}
