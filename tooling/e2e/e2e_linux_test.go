//go:build linux

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/checkout"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/otlpsink"
)

// collectorBinary is the collector built from this checkout: the existing
// _build binary when it is newer than its sources, else a fresh ocb build
// (or the one collector.PrebuiltEnv names).
func collectorBinary(t *testing.T) string {
	t.Helper()
	// A cold ocb build takes minutes: stop it in time to report, before go test's own timeout.
	deadline := time.Now().Add(8 * time.Minute)
	if d, ok := t.Deadline(); ok && d.Add(-30*time.Second).Before(deadline) {
		deadline = d.Add(-30 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	bin, err := collector.Binary(ctx, "", bpftest.Log(t))
	require.NoError(t, err)
	t.Logf("collector %s ready in %s", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// startCollector runs bin with the pipeline p until the test ends.
func startCollector(t *testing.T, bin string, p collector.Pipeline) *collector.Collector {
	t.Helper()
	col, err := collector.Run(context.Background(), bin, p, t.TempDir(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = col.Stop(10 * time.Second) })
	return col
}

// attr returns the attribute key of attrs, failing unless it has type typ.
func attr(t *testing.T, attrs pcommon.Map, key string, typ pcommon.ValueType) pcommon.Value {
	t.Helper()
	v, ok := attrs.Get(key)
	require.True(t, ok, "attribute %s missing from %v", key, attrs.AsRaw())
	require.Equal(t, typ, v.Type(), "attribute %s", key)
	return v
}

func TestCollectorExportsEtcdSyscallsOverOTLP(t *testing.T) {
	bpftest.RequireBPF(t)
	etcdBin := bpftest.RequireEtcd(t)
	bin := collectorBinary(t)

	srv, err := etcdtest.Start(etcdBin, t.TempDir())
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	sink, err := otlpsink.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(sink.Stop)

	runStart := time.Now()
	col := startCollector(t, bin, collector.Pipeline{
		PIDs:          []int{srv.PID()},
		OTLPEndpoint:  sink.Endpoint(),
		FlushInterval: 20 * time.Millisecond,
	})
	t.Logf("collector pid %d ready after %s", col.PID(), time.Since(runStart).Round(time.Millisecond))

	time.Sleep(200 * time.Millisecond) // let the writes in progress settle
	decoys := map[int]string{}
	const puts = 200
	window, err := srv.MeasureWALSyncs(func() error {
		for _, name := range []string{"etcdctl", "etcd"} { // another name; the same name with another PID
			decoys[bpftest.RunDecoy(t, name)] = name
		}
		return srv.PutN("e2e", puts, 256)
	})
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)

	// SIGTERM: the receiver detaches and flushes, the OTLP exporter drains its queue.
	require.NoError(t, col.Stop(15*time.Second), "collector log:\n%s", col.Tail())
	runEnd := time.Now()

	assert.NotContains(t, readFile(col.LogPath), "Exporting failed", "the OTLP exporter delivered everything")
	records := sink.Records()
	require.NotEmpty(t, records, "nothing arrived at the OTLP backend; collector log:\n%s", readFile(col.LogPath))
	for _, logs := range sink.Logs() {
		for i := 0; i < logs.ResourceLogs().Len(); i++ {
			sls := logs.ResourceLogs().At(i).ScopeLogs()
			for j := 0; j < sls.Len(); j++ {
				assert.Equal(t, "github.com/etcdebpf/etcdebpfreceiver", sls.At(j).Scope().Name())
			}
		}
	}

	var walSyncs, walWrites, dbWrites, socketWrites int
	kinds := map[string]int{}
	for _, lr := range records {
		attrs, res := lr.Attributes(), lr.Resource.Attributes()
		typ := attr(t, attrs, "etcd.syscall.type", pcommon.ValueTypeInt).Int()
		raw := attr(t, attrs, "etcd.syscall.raw", pcommon.ValueTypeBytes).Bytes().AsRaw()
		pid := attr(t, res, "process.pid", pcommon.ValueTypeInt).Int()
		execName := attr(t, res, "process.executable.name", pcommon.ValueTypeStr).Str()
		tid := attr(t, attrs, "thread.id", pcommon.ValueTypeInt).Int()
		name := attr(t, attrs, "etcd.syscall.name", pcommon.ValueTypeStr).Str()
		require.Equal(t, pcommon.ValueTypeStr, lr.Body().Type(), "a string body, for log views")
		assert.Equal(t, name, lr.Body().Str(), "the body is the syscall's name")
		fd := attr(t, attrs, "etcd.syscall.fd", pcommon.ValueTypeInt).Int()
		fdKind := attr(t, attrs, "etcd.syscall.fd_kind", pcommon.ValueTypeStr).Str()
		ret := attr(t, attrs, "etcd.syscall.ret", pcommon.ValueTypeInt).Int()
		dur := attr(t, attrs, "etcd.syscall.duration_ns", pcommon.ValueTypeInt).Int()
		for _, moved := range []string{"process.pid", "process.executable.name", "thread.name"} {
			_, ok := attrs.Get(moved)
			assert.False(t, ok, "%s is not a record attribute", moved)
		}

		require.Equal(t, int64(srv.PID()), pid, "a record from pid %d (decoys: %v)", pid, decoys)
		assert.Equal(t, "etcd", execName[:min(len(execName), 4)], "etcd names its threads after the process")

		rec, err := tracer.ParseRecord(raw)
		require.NoError(t, err, "etcd.syscall.raw decodes")
		assert.EqualValues(t, rec.Syscall, typ)
		assert.EqualValues(t, rec.PID, pid)
		assert.EqualValues(t, rec.TID, tid)
		assert.Equal(t, rec.Comm, execName, "the task's comm")
		assert.Equal(t, rec.Syscall.String(), name)
		assert.EqualValues(t, rec.FD, fd)
		assert.Equal(t, rec.FDKind.String(), fdKind)
		count, hasCount := attrs.Get("etcd.syscall.count")
		if name == "fsync" || name == "fdatasync" {
			assert.False(t, hasCount, "%s takes no count", name)
		} else if assert.True(t, hasCount, "%s takes a count", name) {
			assert.Equal(t, pcommon.ValueTypeInt, count.Type())
			assert.EqualValues(t, rec.Count, count.Int())
		}
		assert.EqualValues(t, rec.Ret, ret)
		assert.EqualValues(t, rec.DurationNs, dur)
		if v, ok := lr.Attributes().Get("etcd.syscall.offset"); ok {
			assert.Equal(t, pcommon.ValueTypeInt, v.Type())
			assert.EqualValues(t, rec.Offset, v.Int())
		}
		fileName := ""
		if v, ok := lr.Attributes().Get("file.name"); ok {
			assert.Equal(t, pcommon.ValueTypeStr, v.Type())
			fileName = v.Str()
		}
		assert.Equal(t, rec.FileName, fileName)
		if v, ok := lr.Attributes().Get("file.inode"); ok {
			assert.Equal(t, pcommon.ValueTypeStr, v.Type(), "file.inode is a string in the semantic conventions")
			assert.Equal(t, strconv.FormatUint(rec.Inode, 10), v.Str())
		} else {
			assert.Zero(t, rec.Inode)
		}

		ts := lr.Timestamp().AsTime()
		require.WithinRange(t, ts, runStart.Add(-time.Second), runEnd, "the syscall's entry lies within the run")
		assert.False(t, lr.ObservedTimestamp().AsTime().Before(ts), "observed after the syscall began")
		assert.Positive(t, dur)

		kinds[name+"/"+fdKind]++
		switch {
		case name == "fdatasync" && strings.HasSuffix(fileName, ".wal"):
			assert.Zero(t, ret)
			if window.Contains(ts) {
				walSyncs++
			}
		case name == "write" && strings.HasSuffix(fileName, ".wal"):
			walWrites++
			assert.Equal(t, count.Int(), ret, "WAL writes are whole")
		case name == "pwrite64" && fileName == "db":
			dbWrites++
		case (name == "write" || name == "writev") && fdKind == "socket":
			socketWrites++
		}
	}
	etcdSyncs := window.Syncs
	t.Logf("%d records over OTLP in %s; by syscall/fd kind: %v", len(records), runEnd.Sub(runStart).Round(time.Millisecond), kinds)
	t.Logf("WAL fdatasync in the window: %d from the collector, %d by etcd_disk_wal_fsync_duration_seconds_count; "+
		"%d WAL writes, %d bbolt pwrite64, %d socket writes", walSyncs, etcdSyncs, walWrites, dbWrites, socketWrites)
	require.GreaterOrEqual(t, etcdSyncs, puts/2, "each put is a raft entry that etcd syncs")
	assert.InDelta(t, etcdSyncs, walSyncs, max(2, 0.03*float64(etcdSyncs)), "WAL fdatasync records vs etcd's own counter")
	assert.Positive(t, walWrites)
	assert.Positive(t, dbWrites)
	assert.Positive(t, socketWrites)
}

func readFile(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// TestExamplesValidateWithTheBuiltCollector runs `otelcol-etcd validate` on every
// example config: the distribution's own factories and config providers.
func TestExamplesValidateWithTheBuiltCollector(t *testing.T) {
	bpftest.RequireBPF(t) // not for BPF: the e2e tests, and their collector build, run where BPF does
	bin := collectorBinary(t)
	root, err := checkout.Root()
	require.NoError(t, err)
	for _, example := range []string{"debug.yaml", "otlp.yaml", "kubernetes/collector.yaml", "kubernetes/gateway.yaml"} {
		cmd := exec.Command(bin, "validate", "--config", filepath.Join(root, "examples", example))
		cmd.Env = append(os.Environ(), "OTLP_ENDPOINT=otel-gateway.example:4317")
		out, err := cmd.CombinedOutput()
		assert.NoError(t, err, "%s: %s", example, out)
	}
}
