//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/checkout"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/victoria"
)

// startNodeAgent runs bin with the DaemonSet's config (examples/kubernetes/collector.yaml)
// as the agent of node, tracing only pid and sending to the gateway at
// gatewayAddr a record of every call (startDaemonSetAgent).
func startNodeAgent(t *testing.T, bin, node string, pid int, gatewayAddr string) *collector.Collector {
	t.Helper()
	return startDaemonSetAgent(t, bin, daemonSetAgent{
		node: node, gatewayAddr: gatewayAddr, queueDir: t.TempDir(),
		receiver: fmt.Sprintf("    pids: [%d]\n    flush_interval: 20ms\n    collection_interval: 1s\n", pid),
	})
}

// daemonSetAgent is one run of the DaemonSet's agent on this machine.
type daemonSetAgent struct {
	node        string // its node's name, as the downward API gives it
	gatewayAddr string // OTLP_ENDPOINT
	// receiver is the etcdebpf receiver's settings (lines indented 4 spaces)
	// merged over the DaemonSet's: which processes, and sooner flushes and
	// collections than a DaemonSet needs.
	receiver string
	// queueDir stands in for the DaemonSet's hostPath: the exporters' queue
	// (file_storage). Agents of one node in turn share it; two at once cannot.
	queueDir string
	// telemetryPort, when positive, serves the agent's own metrics on loopback
	// (collector.Telemetry reads them); 0 turns them off.
	telemetryPort int
	extra         string   // more YAML merged over the DaemonSet's config: sections other than receivers, extensions and service
	env           []string // more environment (GOMEMLIMIT)
	// pinPath stands in for the DaemonSet's pin_path, a directory of the test's
	// under /sys/fs/bpf; empty, nothing is pinned: agents of one machine's tests
	// would otherwise share, and contend for, the shipped one.
	pinPath string
}

// startDaemonSetAgent runs bin with the DaemonSet's config as a's agent: the
// identity the DaemonSet gives it from the downward API (OTEL_RESOURCE_ATTRIBUTES,
// read by the env detector), a record of every call (the DaemonSet's opt-in),
// and a second --config, merged over the first, with a's settings; it keeps
// :8888 free for the other collectors. It waits until the agent is ready.
func startDaemonSetAgent(t *testing.T, bin string, a daemonSetAgent) *collector.Collector {
	t.Helper()
	root, err := checkout.Root()
	require.NoError(t, err)
	dir := t.TempDir()
	overlay := "receivers:\n  etcdebpf:\n" + fmt.Sprintf("    pin_path: %q\n", a.pinPath) + a.receiver +
		fmt.Sprintf("extensions:\n  file_storage:\n    directory: %s\n    compaction:\n      directory: %s\n", a.queueDir, a.queueDir) +
		a.extra
	if a.telemetryPort > 0 {
		overlay += fmt.Sprintf("service:\n  telemetry:\n    metrics:\n      level: normal\n      readers:\n        - pull:\n            exporter:\n              prometheus:\n                host: 127.0.0.1\n                port: %d\n", a.telemetryPort)
	} else {
		overlay += "service:\n  telemetry:\n    metrics:\n      level: none\n"
	}
	overlayPath := filepath.Join(dir, a.node+".yaml")
	require.NoError(t, os.WriteFile(overlayPath, []byte(overlay), 0o600))
	col, err := collector.Start(collector.Options{
		Binary:     bin,
		ConfigPath: filepath.Join(root, "examples", "kubernetes", "collector.yaml"),
		LogPath:    filepath.Join(dir, a.node+".log"),
		Env: append([]string{
			"OTLP_ENDPOINT=" + a.gatewayAddr,
			"ETCD_CGROUP_PATH=",
			"ETCDEBPF_MIN_DURATION=0s", // the DaemonSet's opt-in: a record of every call
			"OTEL_RESOURCE_ATTRIBUTES=host.name=" + a.node + ",k8s.node.name=" + a.node,
		}, a.env...),
		Args: []string{"--config", overlayPath},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = col.Stop(10 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, col.WaitReady(ctx), "agent %s log:\n%s\nconfig merged over the DaemonSet's:\n%s", a.node, col.Tail(), overlay)
	return col
}

// A fleet on one machine: three nodes, each an agent (the built collector with
// the DaemonSet's config) tracing its own member of a three-member etcd cluster,
// all sending to one gateway (gateway.yaml as shipped) that stores into
// VictoriaLogs and VictoriaMetrics. Asked by node, each backend returns that
// member's WAL fdatasyncs, exactly as many as the member's own counter grew by.
func TestFleetOfThreeNodes(t *testing.T) {
	bpftest.RequireBPF(t)
	etcdBin := bpftest.RequireEtcd(t)
	bin := collectorBinary(t)
	vl := victoria.StartForTest(t, victoria.Logs)
	vm := victoria.StartForTest(t, victoria.Metrics)
	ctx := context.Background()

	cluster, err := etcdtest.StartCluster(etcdBin, t.TempDir(), 3)
	require.NoError(t, err)
	t.Cleanup(cluster.Stop)

	gateway, gatewayAddr := startGateway(t, bin, vl.URL, vm.URL)
	nodes := make([]string, len(cluster.Members))
	agents := make([]*collector.Collector, len(cluster.Members))
	for i, m := range cluster.Members {
		nodes[i] = "node-" + strconv.Itoa(i+1)
		agents[i] = startNodeAgent(t, bin, nodes[i], m.PID(), gatewayAddr)
	}

	// An idle cluster syncs no WAL (raft heartbeats are not persisted): the
	// counters read now are where the agents' records start.
	syncs := func() []float64 {
		counts := make([]float64, len(cluster.Members))
		for i, m := range cluster.Members {
			counts[i], err = m.Metric(walFsyncMetric + "_count")
			require.NoError(t, err)
		}
		return counts
	}
	time.Sleep(300 * time.Millisecond)
	before := syncs()
	const puts = 150
	for i, m := range cluster.Members { // through every member: followers forward to the leader
		require.NoError(t, m.PutN("fleet-"+nodes[i], puts, 256))
	}
	time.Sleep(300 * time.Millisecond)
	after := syncs()
	want := map[string]int{}
	for i, node := range nodes {
		want[node] = int(after[i] - before[i])
		require.GreaterOrEqual(t, want[node], puts, "%s: every member syncs each entry of the 3x%d puts", node, puts)
	}
	require.Equal(t, after, syncs(), "the cluster is idle again")

	// Metrics first, while the agents run: the receiver's histogram of WAL
	// fdatasyncs per node, as a dashboard queries it.
	countByNode := `sum by (host_name) (increase_pure(etcd_syscall_duration_seconds_count{etcd_syscall_name="fdatasync", etcd_syscall_file_class="wal"}[10m]))`
	var histograms map[string]int
	deadline := time.Now().Add(20 * time.Second)
	for {
		require.NoError(t, vm.Flush(ctx))
		samples, err := vm.PromQL(ctx, countByNode, time.Now())
		require.NoError(t, err)
		histograms = map[string]int{}
		for _, s := range samples {
			histograms[s.Labels["host_name"]] = int(s.Value)
		}
		if assert.ObjectsAreEqual(want, histograms) || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("PromQL %s -> %v; etcd's own counters grew by %v", countByNode, histograms, want)
	assert.Equal(t, want, histograms, "WAL fdatasyncs per node: the receiver's histograms in VictoriaMetrics vs each member's etcd_disk_wal_fsync_duration_seconds_count")

	// Downstream last: the agents flush into the gateway, the gateway into the backends.
	for i, a := range agents {
		require.NoError(t, a.Stop(15*time.Second), "agent %s log:\n%s", nodes[i], a.Tail())
	}
	require.NoError(t, gateway.Stop(15*time.Second), "gateway log:\n%s", gateway.Tail())
	for _, c := range append(agents, gateway) {
		assert.NotContains(t, readFile(c.LogPath), "Exporting failed", "%s delivered everything", c.LogPath)
	}
	require.NoError(t, vl.Flush(ctx))

	// The records: the same count per node, and each node's records are its own member's.
	walSyncs := `etcd.syscall.name:=fdatasync file.name:~"\\.wal$" | stats by (host.name) count() syncs`
	rows, err := vl.LogsQL(ctx, walSyncs)
	require.NoError(t, err)
	records := map[string]int{}
	for _, row := range rows {
		records[row["host.name"]], err = strconv.Atoi(row["syncs"])
		require.NoError(t, err)
	}
	t.Logf("LogsQL %s -> %v; etcd's own counters grew by %v", walSyncs, records, want)
	assert.Equal(t, want, records, "WAL fdatasync records per node in VictoriaLogs vs each member's etcd_disk_wal_fsync_duration_seconds_count")

	whose := `* | stats by (host.name, k8s.node.name, process.pid, os.type) count() records`
	rows, err = vl.LogsQL(ctx, whose)
	require.NoError(t, err)
	t.Logf("LogsQL %s -> %v", whose, rows)
	require.Len(t, rows, len(nodes), "one identity per node, and no record without one")
	for _, row := range rows {
		i := slices.Index(nodes, row["host.name"])
		require.GreaterOrEqual(t, i, 0, "host.name of %v is one of %v", row, nodes)
		assert.Equal(t, row["host.name"], row["k8s.node.name"], "k8s.node.name from the same downward-API value")
		assert.Equal(t, strconv.Itoa(cluster.Members[i].PID()), row["process.pid"], "%s traces only its own member", row["host.name"])
		assert.Equal(t, "linux", row["os.type"], "the system detector's os.type")
	}

	// The demo's and the docs' queries group by node and answer on a fleet's data.
	checkUserQueries(t, vl, vm)
}
