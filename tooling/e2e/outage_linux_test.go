//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/victoria"
)

// The DaemonSet's agent as shipped for a node (kernel side pinned, file_storage
// queue, a record of every call) tracing a real etcd under a steady stream of
// puts, sending to the gateway and VictoriaMetrics/VictoriaLogs. The gateway is
// stopped for about a minute; in the middle of it the agent is SIGKILLed and the
// next one started on the same queue directory and pins. Once the gateway is
// back: the histogram stored in VictoriaMetrics counts every WAL fdatasync etcd
// made over the whole run (its own counter), and every record either agent
// accepted is stored in VictoriaLogs; duplicates are counted.
func TestDaemonSetAgentRidesOutGatewayOutageAndKillTracingEtcd(t *testing.T) {
	const putsPerSecond = 300
	bpftest.RequireBPF(t)
	etcdBin := bpftest.RequireEtcd(t)
	bin := collectorBinary(t)
	vl := victoria.StartForTest(t, victoria.Logs)
	vm := victoria.StartForTest(t, victoria.Metrics)
	ctx := context.Background()
	srv, err := etcdtest.Start(etcdBin, t.TempDir())
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	ports, err := subprocess.FreePorts(2)
	require.NoError(t, err)

	gateway, gatewayAddr := startGateway(t, bin, vl.URL, vm.URL)
	pinPath := filepath.Join("/sys/fs/bpf", fmt.Sprintf("etcdebpf-e2e-outage-%d", os.Getpid()))
	t.Cleanup(func() { _ = os.RemoveAll(pinPath) })
	queue := t.TempDir()
	// Each agent names a node of its own, so that what VictoriaLogs stores can be
	// set beside the telemetry of the agent that accepted it (a record keeps the
	// resource it was queued with, whichever agent sends it).
	agent := func(i int) (*collector.Collector, string) {
		col := startDaemonSetAgent(t, bin, daemonSetAgent{
			node: "node-" + strconv.Itoa(i), gatewayAddr: gatewayAddr, queueDir: queue, pinPath: pinPath, telemetryPort: ports[i],
			receiver: fmt.Sprintf("    pids: [%d]\n    flush_interval: 50ms\n    collection_interval: 1s\n", srv.PID()),
		})
		return col, fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[i])
	}
	etcdSyncs := func() int {
		n, err := srv.Metric(walFsyncMetric + "_count")
		require.NoError(t, err)
		return int(n)
	}

	// An idle etcd syncs no WAL: the count read now is where the histogram starts.
	time.Sleep(300 * time.Millisecond)
	before := etcdSyncs()
	first, firstTelemetry := agent(0)

	// The load: puts, each a WAL write and fdatasync, until told to stop. Paced,
	// so that a minute of every call fits the queue on any machine: unpaced, a
	// fast one made ~7,000 calls a second, more than the 256 MiB queue holds for
	// a minute (~417,000 records).
	var puts atomic.Int64
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan error, 1)
	go func() {
		value := string(make([]byte, 256))
		pace := time.NewTicker(time.Second / putsPerSecond)
		defer pace.Stop()
		for i := 0; loadCtx.Err() == nil; i++ {
			<-pace.C
			if _, err := srv.Put("outage-"+strconv.Itoa(i), value); err != nil {
				loadDone <- err
				return
			}
			puts.Add(1)
		}
		loadDone <- nil
	}()
	t.Cleanup(stopLoad)

	time.Sleep(5 * time.Second)
	start := time.Now()
	require.NoError(t, gateway.Stop(15*time.Second), "gateway log:\n%s", gateway.Tail())
	releaseGatewayPort := reservePort(t, gatewayAddr)
	time.Sleep(20 * time.Second)

	// An OOM kill in the middle of the outage, under load. What the first agent
	// accepted is read just before: records it accepts in the moment between are
	// stored too, and show as stored beyond its last count.
	c0, err := collector.Telemetry(firstTelemetry)
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(first.PID(), syscall.SIGKILL))
	<-first.Exited()
	killed := time.Now()
	time.Sleep(3 * time.Second)
	second, secondTelemetry := agent(1)
	t.Logf("no agent ran for %s", time.Since(killed).Round(100*time.Millisecond))
	assert.Contains(t, readFile(second.LogPath), "Took over the programs pinned by the agent before")
	if away := 60*time.Second - time.Since(start); away > 0 {
		time.Sleep(away)
	}
	queued := diskUsage(t, queue)
	cq, err := collector.Telemetry(secondTelemetry)
	require.NoError(t, err)
	inQueue := c0["otelcol_receiver_accepted_log_records"] - c0["otelcol_exporter_sent_log_records"] + cq["otelcol_receiver_accepted_log_records"]
	lq, err := collector.Telemetry(secondTelemetry, `data_type="logs"`)
	require.NoError(t, err)

	// The gateway back where the agents send; the load stops a little later.
	releaseGatewayPort()
	gateway = startGatewayAt(t, bin, gatewayAddr, vl.URL, vm.URL)
	back := time.Now()
	t.Logf("gateway away for %s under load; queue directory %d bytes on disk for ~%.0f records and their points, %.0f bytes a record; "+
		"logs queue %.0f bytes of OTLP, %.0f a record", back.Sub(start).Round(time.Second), queued, inQueue, float64(queued)/inQueue,
		lq["otelcol_exporter_queue_size"], lq["otelcol_exporter_queue_size"]/inQueue)
	time.Sleep(2 * time.Second)
	stopLoad()
	require.NoError(t, <-loadDone)
	time.Sleep(300 * time.Millisecond)
	want := etcdSyncs() - before
	t.Logf("%d puts; etcd made %d WAL fdatasyncs over the run", puts.Load(), want)
	require.Positive(t, want)

	// The histogram: cumulative in the pinned kernel side, so the latest point
	// of the second agent's series counts the whole run, the first agent's and the
	// gap's syncs included. Each agent's node is its own series: the largest
	// latest value is the run's count.
	selector := fmt.Sprintf(`{process_pid="%d", etcd_syscall_name="fdatasync", etcd_syscall_file_class="wal"}`, srv.PID())
	countQuery := fmt.Sprintf(`max(last_over_time(etcd_syscall_duration_seconds_count%s[10m]))`, selector)
	got := 0.0
	// gRPC reconnects on its own back-off, which a minute of refused connections
	// has grown to up to two minutes.
	deadline := time.Now().Add(150 * time.Second)
	for {
		require.NoError(t, vm.Flush(ctx))
		samples, err := vm.PromQL(ctx, countQuery, time.Now())
		require.NoError(t, err)
		if len(samples) == 1 {
			got = samples[0].Value
		}
		if int(got) >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("histogram in VictoriaMetrics %s after the gateway came back: %s -> %.0f; etcd_disk_wal_fsync_duration_seconds_count grew by %d",
		time.Since(back).Round(time.Second), countQuery, got, want)
	assert.EqualValues(t, want, got, "every WAL fdatasync etcd made over the run, in the histogram stored in VictoriaMetrics")

	// The records. etcd, even idle, makes a call now and then (every call is a
	// record here): it is stopped, so that the second agent's counts, read once
	// its queue has drained, are final.
	srv.Stop()
	var c1 map[string]float64
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		c1, err = collector.Telemetry(secondTelemetry)
		require.NoError(t, err)
		lq, err := collector.Telemetry(secondTelemetry, `data_type="logs"`)
		require.NoError(t, err)
		if lq["otelcol_exporter_queue_size"] == 0 && c1["otelcol_etcdebpf_records_read"] == c1["otelcol_receiver_accepted_log_records"]+c1["otelcol_receiver_refused_log_records"] ||
			time.Now().After(deadline) {
			break
		}
	}
	require.NoError(t, second.Stop(15*time.Second), "second agent log:\n%s", second.Tail())
	require.NoError(t, gateway.Stop(15*time.Second), "gateway log:\n%s", gateway.Tail())
	require.NoError(t, vl.Flush(ctx))
	rows, err := vl.LogsQL(ctx, `* | stats by (host.name) count() records, count_uniq(etcd.syscall.raw) calls`)
	require.NoError(t, err)
	stored := map[string][2]int{}
	for _, row := range rows {
		records, _ := strconv.Atoi(row["records"])
		distinct, _ := strconv.Atoi(row["calls"])
		stored[row["host.name"]] = [2]int{records, distinct}
	}
	lost := func(c map[string]float64) float64 {
		return c["otelcol_etcdebpf_records_lost_ringbuf_full"] + c["otelcol_etcdebpf_records_lost_over_budget"] + c["otelcol_etcdebpf_records_lost_inflight_full"]
	}
	for i, c := range []map[string]float64{c0, c1} {
		node := "node-" + strconv.Itoa(i)
		t.Logf("%s: %.0f calls traced, %.0f read, %.0f lost in the kernel, %.0f accepted, %.0f refused (%.0f by the queue), %.0f sent; "+
			"VictoriaLogs stores %d records, %d distinct calls", node, c["otelcol_etcdebpf_calls_traced"], c["otelcol_etcdebpf_records_read"], lost(c),
			c["otelcol_receiver_accepted_log_records"], c["otelcol_receiver_refused_log_records"], c["otelcol_exporter_enqueue_failed_log_records"],
			c["otelcol_exporter_sent_log_records"], stored[node][0], stored[node][1])
		assert.Zero(t, c["otelcol_receiver_refused_log_records"], "%s: the queue had room for a minute of every call", node)
	}
	// The kernel side counted on across the kill: the second agent's count of
	// calls traced is the run's. Said, not asserted: records the first agent had
	// read but not yet handed to its queue die with it, uncounted.
	t.Logf("calls traced over the run %.0f; read by the agents %.0f (the first's as last asked), lost in the kernel %.0f",
		c1["otelcol_etcdebpf_calls_traced"], c0["otelcol_etcdebpf_records_read"]+c1["otelcol_etcdebpf_records_read"], lost(c0)+lost(c1))
	// The first agent: every record it had accepted when last asked is stored;
	// a flush accepted in the instant between that and the kill is stored too.
	accepted0 := int(c0["otelcol_receiver_accepted_log_records"])
	assert.GreaterOrEqual(t, stored["node-0"][1], accepted0, "every record the first agent accepted before it was killed, stored")
	t.Logf("node-0: %d records accepted between the last read of its telemetry and the SIGKILL", stored["node-0"][1]-accepted0)
	assert.EqualValues(t, c1["otelcol_receiver_accepted_log_records"], stored["node-1"][1], "every record the second agent accepted, stored")
	assert.Len(t, stored, 2, "records of the two agents only: %v", stored)
	// A batch sent again is stored again: an agent killed after the gateway took
	// a batch but before its queue heard so. The gateway is away at the kill, so
	// none is expected; any is counted and fails the test.
	duplicates := stored["node-0"][0] - stored["node-0"][1] + stored["node-1"][0] - stored["node-1"][1]
	t.Logf("duplicates: %d records stored twice", duplicates)
	assert.Zero(t, duplicates)
}
