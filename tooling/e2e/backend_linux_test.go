//go:build linux

package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/checkout"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/victoria"
)

// startGateway runs bin with examples/kubernetes/gateway.yaml as shipped: OTLP/gRPC
// in on a free port, logs out to vlURL, metrics out to vmURL.
func startGateway(t *testing.T, bin, vlURL, vmURL string) (*collector.Collector, string) {
	t.Helper()
	ports, err := subprocess.FreePorts(1)
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	return startGatewayAt(t, bin, addr, vlURL, vmURL), addr
}

// startGatewayAt is startGateway on a given address: a gateway started again
// where its agents send.
func startGatewayAt(t *testing.T, bin, addr, vlURL, vmURL string) *collector.Collector {
	t.Helper()
	root, err := checkout.Root()
	require.NoError(t, err)
	dir := t.TempDir()
	// Several collectors side by side: none serves its own metrics on :8888. A
	// second --config is merged over the first.
	quiet := filepath.Join(dir, "no-internal-metrics.yaml")
	require.NoError(t, os.WriteFile(quiet, []byte("service:\n  telemetry:\n    metrics:\n      level: none\n"), 0o600))
	col, err := collector.Start(collector.Options{
		Binary:     bin,
		ConfigPath: filepath.Join(root, "examples", "kubernetes", "gateway.yaml"),
		LogPath:    filepath.Join(dir, "gateway.log"),
		Env:        []string{"GATEWAY_GRPC_ENDPOINT=" + addr, "VICTORIALOGS_URL=" + vlURL, "VICTORIAMETRICS_URL=" + vmURL},
		Args:       []string{"--config", quiet},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = col.Stop(10 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, col.WaitReady(ctx), "gateway log:\n%s", col.Tail())
	return col
}

// The path users take past one node: the agent (this receiver, logs and metrics)
// exports over OTLP to a gateway collector, which writes logs to VictoriaLogs and
// metrics to VictoriaMetrics. What LogsQL counts there is what etcd counted, every
// attribute reads back as what the kernel wrote, and PromQL's WAL sync p99 from
// the receiver's histogram lands where etcd's own histogram puts it.
func TestAgentGatewayVictoria(t *testing.T) {
	bpftest.RequireBPF(t)
	etcdBin := bpftest.RequireEtcd(t)
	bin := collectorBinary(t)
	vl := victoria.StartForTest(t, victoria.Logs)
	vm := victoria.StartForTest(t, victoria.Metrics)
	ctx := context.Background()

	srv, err := etcdtest.Start(etcdBin, t.TempDir())
	require.NoError(t, err)
	t.Cleanup(srv.Stop)

	gateway, gatewayAddr := startGateway(t, bin, vl.URL, vm.URL)
	agent := startCollector(t, bin, collector.Pipeline{
		PIDs:               []int{srv.PID()},
		OTLPEndpoint:       gatewayAddr,
		FlushInterval:      20 * time.Millisecond,
		CollectionInterval: time.Second,
		MetricsOverGRPC:    true,
		DetectHost:         true,
	})
	// The histograms count from the receiver's start: etcd's too, from here.
	etcdBefore, err := srv.Histogram(walFsyncMetric)
	require.NoError(t, err)

	time.Sleep(200 * time.Millisecond) // let the writes in progress settle
	const puts = 200
	window, err := srv.MeasureWALSyncs(func() error { return srv.PutN("e2e", puts, 256) })
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	etcdAfter, err := srv.Histogram(walFsyncMetric)
	require.NoError(t, err)
	etcdCount := etcdAfter[math.Inf(1)] - etcdBefore[math.Inf(1)]

	// Metrics: the receiver's histogram of WAL fdatasync, as a user queries it.
	// The agent sends the histograms every second; wait for the count to catch up
	// with etcd's while both collectors run, as a dashboard would see it.
	// increase_pure counts a series' first sample from zero: the collector sends a
	// bucket only once it holds something, and this run is shorter than a scrape
	// history.
	pid := srv.PID()
	selector := fmt.Sprintf(`{process_pid="%d", etcd_syscall_name="fdatasync", etcd_syscall_file_class="wal"}`, pid)
	countQuery := fmt.Sprintf(`sum(increase_pure(etcd_syscall_duration_seconds_count%s[10m]))`, selector)
	p99Query := fmt.Sprintf(`histogram_quantile(0.99, sum by (vmrange) (increase_pure(etcd_syscall_duration_seconds_bucket%s[10m])))`, selector)
	var histCount []victoria.Sample
	deadline := time.Now().Add(20 * time.Second)
	for {
		require.NoError(t, vm.Flush(ctx))
		histCount, err = vm.PromQL(ctx, countQuery, time.Now())
		require.NoError(t, err)
		if len(histCount) == 1 && histCount[0].Value >= etcdCount-max(2, 0.03*etcdCount) || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	require.Len(t, histCount, 1, "%s", countQuery)
	p99, err := vm.PromQL(ctx, p99Query, time.Now())
	require.NoError(t, err)
	require.Len(t, p99, 1, "%s", p99Query)
	// The disks' view: etcd's own bytes on the disk it syncs its WAL to, and that disk's flushes.
	ownBytes := fmt.Sprintf(`sum(etcdebpf_disk_submitted_bytes_total{process_pid="%d"})`, pid)
	flushes := `sum(etcdebpf_disk_operations_total{etcdebpf_disk_operation="flush"})`
	for _, q := range []string{ownBytes, flushes} {
		samples, err := vm.PromQL(ctx, q, time.Now())
		require.NoError(t, err)
		require.Len(t, samples, 1, "%s", q)
		t.Logf("PromQL %s -> %.0f", q, samples[0].Value)
		assert.Positive(t, samples[0].Value, "%s", q)
	}

	// Downstream last: the agent flushes into the gateway, the gateway drains into VictoriaLogs.
	require.NoError(t, agent.Stop(15*time.Second), "agent log:\n%s", agent.Tail())
	require.NoError(t, gateway.Stop(15*time.Second), "gateway log:\n%s", gateway.Tail())
	for _, c := range []*collector.Collector{agent, gateway} {
		assert.NotContains(t, readFile(c.LogPath), "Exporting failed", "%s delivered everything", c.LogPath)
	}
	require.NoError(t, vl.Flush(ctx))
	require.NoError(t, vm.Flush(ctx))

	// The question a user asks: how many WAL syncs in this window? (type 6 is fdatasync)
	walSyncs := fmt.Sprintf(`process.pid:=%d etcd.syscall.type:=6 file.name:~"\\.wal$"`, pid)
	count := fmt.Sprintf(`%s _time:(%s, %s) | stats count() syncs`, walSyncs,
		window.Start.UTC().Format(time.RFC3339Nano), window.End.UTC().Format(time.RFC3339Nano))
	rows, err := vl.LogsQL(ctx, count)
	require.NoError(t, err)
	require.Len(t, rows, 1, "%s", count)
	got, err := strconv.Atoi(rows[0]["syncs"])
	require.NoError(t, err)
	t.Logf("LogsQL %s -> %d; etcd_disk_wal_fsync_duration_seconds_count grew by %d", count, got, window.Syncs)
	require.GreaterOrEqual(t, window.Syncs, puts/2, "each put is a raft entry that etcd syncs")
	assert.InDelta(t, window.Syncs, got, max(2, 0.03*float64(window.Syncs)), "WAL fdatasync records in VictoriaLogs vs etcd's own counter")

	// Types survive the trip: VictoriaLogs keeps strings, so integers must read
	// back in decimal and the raw record in base64, and agree with each other.
	rows, err = vl.LogsQL(ctx, walSyncs)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(rows), got)
	for _, row := range rows {
		raw, err := base64.StdEncoding.DecodeString(row["etcd.syscall.raw"])
		require.NoError(t, err, "etcd.syscall.raw is base64: %v", row)
		rec, err := tracer.ParseRecord(raw)
		require.NoError(t, err, "etcd.syscall.raw decodes")
		for field, want := range map[string]int64{
			"process.pid":              int64(rec.PID),
			"thread.id":                int64(rec.TID),
			"etcd.syscall.type":        int64(rec.Syscall),
			"etcd.syscall.fd":          int64(rec.FD),
			"etcd.syscall.ret":         rec.Ret,
			"etcd.syscall.duration_ns": int64(rec.DurationNs),
			"file.inode":               int64(rec.Inode),
		} {
			assert.Equal(t, strconv.FormatInt(want, 10), row[field], "%s of %v", field, row)
		}
		assert.Equal(t, "file", row["etcd.syscall.fd_kind"])
		assert.Equal(t, "fdatasync", row["_msg"], "the body is the syscall's name: VictoriaLogs has a message to list")
		assert.True(t, strings.HasSuffix(row["file.name"], ".wal"))
		ts, err := time.Parse(time.RFC3339Nano, row["_time"])
		require.NoError(t, err, "_time")
		assert.WithinDuration(t, window.Start, ts, time.Minute, "_time is the syscall's entry")
	}

	// And the ranking a user looks at first: writes outnumber everything else.
	rank := fmt.Sprintf(`process.pid:=%d | stats by (etcd.syscall.type) count() n | sort by (n desc)`, pid)
	rows, err = vl.LogsQL(ctx, rank)
	require.NoError(t, err)
	t.Logf("LogsQL %s -> %v", rank, rows)
	require.NotEmpty(t, rows)
	assert.Equal(t, "1", rows[0]["etcd.syscall.type"], "write(2) is etcd's most frequent traced syscall")

	// Metrics, as queried while the collectors ran.
	etcdP99, _ := etcdAfter.Since(etcdBefore).Quantile(0.99)
	t.Logf("PromQL %s -> %.0f; etcd_disk_wal_fsync_duration_seconds_count grew by %.0f", countQuery, histCount[0].Value, etcdCount)
	t.Logf("PromQL %s -> %.3gs; etcd's histogram over the same time: %.3gs", p99Query, p99[0].Value, etcdP99)
	assert.InDelta(t, etcdCount, histCount[0].Value, max(2, 0.03*etcdCount), "WAL fdatasyncs in the receiver's histogram vs etcd's")
	// etcd's buckets double (1 ms, 2 ms, 4 ms, ...) and it interpolates inside them,
	// so below 1 ms its p99 says only "under 1 ms": the two p99s fall in the same
	// bucket of etcd's or in neighbouring ones.
	assert.InDelta(t, etcdAfter.Bucket(etcdP99), etcdAfter.Bucket(p99[0].Value), 1,
		"WAL fdatasync p99: receiver %gs, etcd %gs, in etcd's buckets", p99[0].Value, etcdP99)

	// The queries the demo and docs/backends.md offer a user answer on this data.
	checkUserQueries(t, vl, vm)
}

// checkUserQueries runs the queries the demo and the docs offer a user: each
// answers, and names the node of every row (the queries group by it).
func checkUserQueries(t *testing.T, vl, vm *victoria.Server) {
	t.Helper()
	ctx := context.Background()
	for _, q := range victoria.LogsQueries {
		rows, err := vl.LogsQL(ctx, q.Query)
		require.NoError(t, err)
		require.NotEmpty(t, rows, "no answer to %q: %s", q.Question, q.Query)
		for _, c := range q.Columns {
			assert.NotEmpty(t, rows[0][c], "column %s of %q: %v", c, q.Question, rows[0])
		}
		for _, row := range rows {
			assert.NotEmpty(t, row["host.name"], "%q names the node of each row: %v", q.Question, row)
		}
	}
	for _, q := range victoria.MetricsQueries {
		samples, err := vm.PromQL(ctx, q.Query, time.Now())
		require.NoError(t, err)
		require.NotEmpty(t, samples, "no answer to %q: %s", q.Question, q.Query)
		for _, s := range samples {
			assert.NotEmpty(t, s.Labels["host_name"], "%q names the node of each series: %v", q.Question, s.Labels)
		}
	}
}

const walFsyncMetric = "etcd_disk_wal_fsync_duration_seconds"
