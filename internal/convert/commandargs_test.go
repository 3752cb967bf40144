//go:build linux && (amd64 || arm64)

package convert

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// A process's command line is on its Resource, in records and metrics alike;
// it is read once per process, and again once the process was gone or its pid
// is another process's.
func TestCommandArgsOnTheResource(t *testing.T) {
	reads := map[uint32]int{}
	args := map[uint32][]string{100: {"etcd", "--name", "etcd-1"}}
	read := func(pid uint32) []string { reads[pid]++; return args[pid] }
	running := map[uint32]Process{100: {Comm: "etcd", ID: 1}}
	lookup := func(pid uint32) (Process, bool) { p, ok := running[pid]; return p, ok }

	b := NewLogBuilder(true, "scope", "v1", 4).WithCommandArgs(read, lookup)
	rec := tracer.NewRecord(walSync()) // pid 100
	for range 3 {
		b.Append(rec, 0)
	}
	res := b.Take(4).ResourceLogs().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, []any{"etcd", "--name", "etcd-1"}, res[AttrProcessCommandArgs])
	b.Append(rec, 0)
	b.Take(4)
	assert.Equal(t, 1, reads[100], "read once for the process, across batches")

	delete(running, 100)
	b.Take(4) // a new batch forgets the processes gone
	running[100] = Process{Comm: "etcd", ID: 2}
	args[100] = []string{"etcd", "--name", "etcd-9"}
	b.Append(rec, 0)
	res = b.Take(4).ResourceLogs().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, []any{"etcd", "--name", "etcd-9"}, res[AttrProcessCommandArgs], "the pid's new process")

	// The pid reused between two batches, never seen gone: its start time tells.
	running[100] = Process{Comm: "etcd", ID: 3}
	args[100] = []string{"etcd", "--name", "etcd-10"}
	b.Take(4)
	b.Append(rec, 0)
	res = b.Take(4).ResourceLogs().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, []any{"etcd", "--name", "etcd-10"}, res[AttrProcessCommandArgs], "the process that reused the pid")
	assert.Equal(t, 3, reads[100])

	delete(args, 100)
	b = NewLogBuilder(true, "scope", "v1", 4).WithCommandArgs(read, lookup)
	b.Append(rec, 0)
	_, ok := b.Take(4).ResourceLogs().At(0).Resource().Attributes().Get(AttrProcessCommandArgs)
	assert.False(t, ok, "no attribute for a process without a command line")

	args[7] = []string{"etcd", "--name", "etcd-2"}
	alive := true
	m := NewMetrics("scope", "v1", 100, func(uint32) (Process, bool) { return Process{Comm: "etcd", ID: 1}, alive }).WithCommandArgs(read)
	sync := tracer.Histogram{Key: tracer.HistKey{PID: 7, Syscall: tracer.SyscallFdatasync, FDKind: tracer.FDKindFile, FileClass: tracer.FileClassWAL}}
	sync.Buckets[120] = 1
	md, _ := m.Collect([]tracer.Histogram{sync}, 200, m.Ended())
	assert.Equal(t, []any{"etcd", "--name", "etcd-2"}, md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()[AttrProcessCommandArgs])
	alive = false
	m.Collect([]tracer.Histogram{sync}, 300, m.Ended()) // gone: forgotten
	alive = true
	m.Collect([]tracer.Histogram{sync}, 400, m.Ended())
	assert.Equal(t, 2, reads[7], "read again after the process was reported gone")
}

// With a refresh interval, a new batch sweeps the processes gone only once the
// interval has passed since the last sweep, not at every batch.
func TestCommandArgsSweptEveryInterval(t *testing.T) {
	lookups := 0
	running := true
	lookup := func(uint32) (Process, bool) { lookups++; return Process{Comm: "etcd", ID: 1}, running }
	b := NewLogBuilder(true, "scope", "v1", 4).WithCommandArgs(func(uint32) []string { return []string{"etcd"} }, lookup)
	rec := tracer.NewRecord(walSync()) // pid 100
	b.Append(rec, 0)
	b.Take(4)
	assert.Equal(t, 2, lookups, "looked up at its first record, and swept at every batch by default")

	b.WithRefreshEvery(time.Hour)
	b.refreshed = time.Now()
	running = false
	b.Take(4)
	b.Take(4)
	assert.Equal(t, 2, lookups, "not swept within the interval")
	b.refreshed = time.Now().Add(-time.Hour)
	b.Take(4)
	assert.Equal(t, 3, lookups, "swept once the interval has passed")
	assert.Empty(t, b.args.byPID, "the process gone is forgotten")
}

// A process's container is on its Resource, records and metrics, read once.
func TestContainerOnResource(t *testing.T) {
	reads := 0
	container := func(pid uint32) Container {
		reads++
		if pid == 7 {
			return Container{ID: "fe52c3a5", PodUID: "0d3c1a52-7d4e-4b8f-9a51-3c2f6a1e9b70"}
		}
		return Container{}
	}
	m := NewMetrics("scope", "v1", 100, func(uint32) (Process, bool) { return Process{ID: 1}, true }).WithContainers(container)
	h := tracer.Histogram{Key: tracer.HistKey{PID: 7, Syscall: tracer.SyscallFdatasync, FDKind: tracer.FDKindFile, FileClass: tracer.FileClassWAL}}
	other := h
	other.Key.PID = 8
	md, _ := m.Collect([]tracer.Histogram{h, other}, 200, m.Ended())
	m.Collect([]tracer.Histogram{h, other}, 300, m.Ended())
	require.Equal(t, 2, md.ResourceMetrics().Len())
	for _, rm := range md.ResourceMetrics().All() {
		res := rm.Resource().Attributes().AsRaw()
		if res[AttrProcessPID] == int64(7) {
			assert.Equal(t, "fe52c3a5", res[AttrContainerID])
			assert.Equal(t, "0d3c1a52-7d4e-4b8f-9a51-3c2f6a1e9b70", res[AttrK8sPodUID])
		} else {
			assert.NotContains(t, res, AttrContainerID, "a process outside containers")
			assert.NotContains(t, res, AttrK8sPodUID)
		}
	}
	assert.Equal(t, 2, reads, "read once per process")
}
