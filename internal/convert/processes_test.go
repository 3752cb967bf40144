//go:build linux && (amd64 || arm64)

package convert

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/etcdebpf/etcdebpfreceiver/internal/process"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/proctest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// appendOne builds a batch of one record of pid 100 and returns its Resource.
func appendOne(t *testing.T, b *LogBuilder) map[string]any {
	t.Helper()
	b.Append(tracer.NewRecord(walSync()), 0) // pid 100
	return b.Take(4).ResourceLogs().At(0).Resource().Attributes().AsRaw()
}

// firstResource is the Resource of the first process in md.
func firstResource(md pmetric.Metrics) map[string]any {
	return md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
}

// A process's command line is on its Resource, in records and metrics alike;
// it is read once per process, and again once the process was gone or its pid
// is another process's.
func TestCommandArgsOnTheResource(t *testing.T) {
	fs := proctest.NewProcfs(t)
	fs.Run(100, 10, "etcd", "etcd", "--name", "etcd-1")
	b := NewLogBuilder(true, "scope", "v1", 4).WithProcesses(process.NewRegistry(fs.FS()))
	rec := tracer.NewRecord(walSync()) // pid 100
	for range 3 {
		b.Append(rec, 0)
	}
	res := b.Take(4).ResourceLogs().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, []any{"etcd", "--name", "etcd-1"}, res[AttrProcessCommandArgs])
	fs.Run(100, 10, "etcd", "etcd", "--name", "rewritten") // the same process: its start time
	assert.Equal(t, []any{"etcd", "--name", "etcd-1"}, appendOne(t, b)[AttrProcessCommandArgs], "read once for the process, across batches")

	fs.Exit(100)
	b.Take(4) // a new batch checks the processes
	fs.Run(100, 20, "etcd", "etcd", "--name", "etcd-9")
	assert.Equal(t, []any{"etcd", "--name", "etcd-9"}, appendOne(t, b)[AttrProcessCommandArgs], "the pid's new process")

	// The pid reused between two batches, never seen gone: its start time tells.
	fs.Run(100, 30, "etcd", "etcd", "--name", "etcd-10")
	b.Take(4)
	assert.Equal(t, []any{"etcd", "--name", "etcd-10"}, appendOne(t, b)[AttrProcessCommandArgs], "the process that reused the pid")

	fs.Run(100, 40, "etcd") // no command line
	b = NewLogBuilder(true, "scope", "v1", 4).WithProcesses(process.NewRegistry(fs.FS()))
	assert.NotContains(t, appendOne(t, b), AttrProcessCommandArgs, "no attribute for a process without a command line")
	fs.Exit(100)
	b = NewLogBuilder(true, "scope", "v1", 4).WithProcesses(process.NewRegistry(fs.FS()))
	assert.NotContains(t, appendOne(t, b), AttrProcessCommandArgs, "nor for a process gone before its first record was read")

	fs.Run(7, 10, "etcd", "etcd", "--name", "etcd-2")
	m := NewMetrics("scope", "v1", 100, process.NewRegistry(fs.FS()))
	sync := tracer.Histogram{Key: tracer.HistKey{PID: 7, Syscall: tracer.SyscallFdatasync, FDKind: tracer.FDKindFile, FileClass: tracer.FileClassWAL}}
	sync.Buckets[120] = 1
	md, _ := m.Collect([]tracer.Histogram{sync}, 200, m.Ended())
	assert.Equal(t, []any{"etcd", "--name", "etcd-2"}, firstResource(md)[AttrProcessCommandArgs])
	fs.Run(7, 20, "etcd", "etcd", "--name", "etcd-3")
	md, _ = m.Collect([]tracer.Histogram{sync}, 300, m.Ended()) // reported one last time, then forgotten
	assert.Equal(t, []any{"etcd", "--name", "etcd-2"}, firstResource(md)[AttrProcessCommandArgs], "the last report is the old process's")
	md, _ = m.Collect([]tracer.Histogram{sync}, 400, m.Ended())
	assert.Equal(t, []any{"etcd", "--name", "etcd-3"}, firstResource(md)[AttrProcessCommandArgs], "read again for the newcomer")
}

// With a refresh interval, a new batch checks the processes only once the
// interval has passed since the last check, not at every batch; a check made
// for the metrics serves the records too.
func TestProcessesCheckedEveryInterval(t *testing.T) {
	fs := proctest.NewProcfs(t)
	fs.Run(100, 10, "etcd", "etcd", "--name", "old")
	registry := process.NewRegistry(fs.FS())
	b := NewLogBuilder(true, "scope", "v1", 4).WithProcesses(registry)
	assert.Equal(t, []any{"etcd", "--name", "old"}, appendOne(t, b)[AttrProcessCommandArgs])

	b.WithRefreshEvery(time.Hour)
	b.refreshed = time.Now()
	fs.Run(100, 20, "etcd", "etcd", "--name", "new")
	b.Take(4)
	assert.Equal(t, []any{"etcd", "--name", "old"}, appendOne(t, b)[AttrProcessCommandArgs], "not checked within the interval")
	b.refreshed = time.Now().Add(-time.Hour)
	b.Take(4)
	assert.Equal(t, []any{"etcd", "--name", "new"}, appendOne(t, b)[AttrProcessCommandArgs], "checked once the interval has passed")

	b.refreshed = time.Now()
	fs.Run(100, 30, "etcd", "etcd", "--name", "newer")
	NewMetrics("scope", "v1", 100, registry).Ended() // the metrics' collection checks
	assert.Equal(t, []any{"etcd", "--name", "newer"}, appendOne(t, b)[AttrProcessCommandArgs], "the metrics' check serves the records")
}

// A process's container is on its Resource, records and metrics, read once.
func TestContainerOnResource(t *testing.T) {
	const id = "fe52c3a559cc88ebbda0324f7272028e40c3121dbfd39b41d4fb658043105597"
	const uid = "0d3c1a52-7d4e-4b8f-9a51-3c2f6a1e9b70"
	fs := proctest.NewProcfs(t)
	fs.Run(7, 10, "etcd", "etcd")
	fs.Cgroup(7, "/kubepods/pod"+uid+"/"+id)
	fs.Run(8, 10, "etcd", "etcd")
	m := NewMetrics("scope", "v1", 100, process.NewRegistry(fs.FS()))
	h := tracer.Histogram{Key: tracer.HistKey{PID: 7, Syscall: tracer.SyscallFdatasync, FDKind: tracer.FDKindFile, FileClass: tracer.FileClassWAL}}
	other := h
	other.Key.PID = 8
	m.Collect([]tracer.Histogram{h, other}, 200, m.Ended())
	fs.Cgroup(7, "/system.slice/moved") // read once per process: not read again
	md, _ := m.Collect([]tracer.Histogram{h, other}, 300, m.Ended())
	require.Equal(t, 2, md.ResourceMetrics().Len())
	for _, rm := range md.ResourceMetrics().All() {
		res := rm.Resource().Attributes().AsRaw()
		if res[AttrProcessPID] == int64(7) {
			assert.Equal(t, id, res[AttrContainerID])
			assert.Equal(t, uid, res[AttrK8sPodUID])
		} else {
			assert.NotContains(t, res, AttrContainerID, "a process outside containers")
			assert.NotContains(t, res, AttrK8sPodUID)
		}
	}

	b := NewLogBuilder(true, "scope", "v1", 4).WithProcesses(process.NewRegistry(fs.FS()))
	fs.Run(100, 10, "etcd", "etcd")
	fs.Cgroup(100, "/system.slice/docker-"+id+".scope")
	res := appendOne(t, b)
	assert.Equal(t, id, res[AttrContainerID], "on the records' Resource too")
	assert.NotContains(t, res, AttrK8sPodUID, "outside a pod")
}
