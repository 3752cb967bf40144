//go:build linux && (amd64 || arm64)

package hostwatch

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric/noop"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
	"github.com/etcdebpf/etcdebpfreceiver/internal/process"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/proctest"
)

type removedPIDs []int

func (r *removedPIDs) RemovePID(pid int) error { *r = append(*r, pid); return nil }

func newPIDs(t *testing.T, pids []int, registry *process.Registry) *PIDs {
	counter, err := noop.NewMeterProvider().Meter("").Int64Counter("exited")
	require.NoError(t, err)
	return NewPIDs(pids, registry, counter, zap.NewNop())
}

// A selected pid leaves the kernel's filter once, at the first check after its
// process ended, however it ended.
func TestPIDsFollowTheProcesses(t *testing.T) {
	for _, tt := range []struct {
		name    string
		then    func(fs *proctest.Procfs)
		removed removedPIDs
	}{
		{"runs", func(*proctest.Procfs) {}, nil},
		{"exits", func(fs *proctest.Procfs) { fs.Exit(7) }, removedPIDs{7}},
		{"a zombie", func(fs *proctest.Procfs) { fs.Zombie(7) }, removedPIDs{7}},
		{"its pid given to another", func(fs *proctest.Procfs) { fs.Run(7, 90, "etcd", "etcd") }, removedPIDs{7}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := proctest.NewProcfs(t)
			fs.Run(7, 50, "etcd", "etcd")
			fs.Run(8, 60, "etcd", "etcd")
			registry := process.NewRegistry(fs.FS())
			targets := newPIDs(t, []int{7, 8, 9}, registry) // 9 runs nothing
			var filter removedPIDs
			registry.Check()
			targets.Check(context.Background(), &filter)
			require.Equal(t, removedPIDs{9}, filter, "a pid nothing runs as, at the first check")

			filter = nil
			tt.then(fs)
			targets.Check(context.Background(), &filter)
			assert.Empty(t, filter, "as of the registry's last check")
			registry.Check()
			targets.Check(context.Background(), &filter)
			assert.Equal(t, tt.removed, filter)
			registry.Check()
			targets.Check(context.Background(), &filter)
			assert.Equal(t, tt.removed, filter, "once")
		})
	}
}

// A pid given to a new process is not the old process: kill(pid, 0) calls the
// newcomer alive, the start time does not, and a pids target is removed from
// the kernel's filter when its process exits even though the number lives on.
func TestReusedPID(t *testing.T) {
	registry := process.NewRegistry(host.Proc)
	old := proctest.Sleeper(t)
	pid := old.Process.Pid
	targets := newPIDs(t, []int{pid}, registry)
	var filter removedPIDs
	registry.Check()
	targets.Check(context.Background(), &filter)
	assert.Empty(t, filter, "the target runs")

	proctest.End(t, old)
	time.Sleep(30 * time.Millisecond) // more than a clock tick: the newcomer's start time differs
	newcomer := proctest.ReusePID(t, pid)
	t.Logf("pid %d given again (ns_last_pid)", newcomer.Process.Pid)
	assert.NoError(t, unix.Kill(pid, 0), "kill(pid, 0) calls the number alive")

	registry.Check()
	targets.Check(context.Background(), &filter)
	assert.Equal(t, removedPIDs{pid}, filter, "the filter follows the process, not the number")
	registry.Check()
	targets.Check(context.Background(), &filter)
	assert.Equal(t, removedPIDs{pid}, filter, "once")
}
