//go:build linux && (amd64 || arm64)

package etcdebpfreceiver

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/etcdebpf/etcdebpfreceiver/internal/convert"
	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/disktest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/metrictest"
)

// The receiver learns the disk under the file the traced process syncs, and its
// metrics show that disk's requests as /sys/block counts them and the process's
// own bytes, exactly.
func TestDiskMetricsOfTheTracedProcessDisk(t *testing.T) {
	d := disktest.Quiet(t)
	const n, size = 200, 4096
	// Allocated and synced before: the writer's syncs write its data, and no
	// allocation makes it read a bitmap (its reads would count as its bytes too).
	path := filepath.Join(d.Dir, "wal")
	require.NoError(t, os.WriteFile(path, make([]byte, n*size), 0o600))
	disktest.SyncFS(t, d.Dir)
	w := bpftest.StartWriterWith(t, bpftest.BuildWriter(t), etcdwriter.Options{Calls: n, Size: size, Path: path, Fdatasync: true})
	cfg := createDefaultConfig()
	cfg.PIDs = []int{w.PID()}
	cfg.CollectionInterval = time.Hour // the collection at Shutdown
	metrics := new(consumertest.MetricsSink)
	mr, err := NewFactory().CreateMetrics(t.Context(), receivertest.NewNopSettings(metadata.Type), cfg, metrics)
	require.NoError(t, err)
	require.NoError(t, mr.Start(t.Context(), componenttest.NewNopHost()))
	stat0 := disktest.ReadStat(t, d.Name)
	w.Release(t, time.Minute)
	counters, err := mr.(*etcdReceiver).ctrl.Session().BlockCounters()
	require.NoError(t, err)
	require.NoError(t, mr.Shutdown(t.Context()))
	delta := disktest.ReadStat(t, d.Name).Sub(stat0)

	all := metrics.AllMetrics()
	require.NotEmpty(t, all)
	md := all[len(all)-1]
	ops := map[string]int64{}
	for _, p := range metrictest.Points(md, convert.MetricDiskOperations) {
		if p.Attrs[convert.AttrDisk] == d.Name {
			ops[p.Attrs[convert.AttrDiskOperation].(string)] = p.Value
		}
	}
	t.Logf("%s: /sys/block stat delta %+v; metrics %v; bytes %v", d.Name, delta, ops, metrictest.SubmittedBytes(md, d.Name))
	// The disk is learnt at the writer's first call: every request after it is counted.
	assert.InDelta(t, delta.Writes, ops["write"], 2)
	assert.InDelta(t, delta.Flushes, ops["flush"], 2)
	assert.GreaterOrEqual(t, ops["flush"], int64(n-1), "a flush per fdatasync")
	assert.Equal(t, int64(n*size), metrictest.SubmittedBytes(md, d.Name)[int64(w.PID())], "the writer's own bytes")
	var service uint64
	for _, p := range metrictest.Points(md, convert.MetricDiskServiceTime) {
		if p.Attrs[convert.AttrDisk] == d.Name && p.Attrs[convert.AttrDiskOperation] == "write" {
			assert.Equal(t, "write", p.Attrs[convert.AttrDiskDirection])
			service += p.Count
		}
	}
	t.Logf("write service times: %d; the block programs' counters: %+v", service, counters)
	assert.GreaterOrEqual(t, service+counters.NoIssue, uint64(n), "a service time per write request, or a count of its missing issue")
}
