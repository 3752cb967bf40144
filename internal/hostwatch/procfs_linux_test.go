//go:build linux && (amd64 || arm64)

package hostwatch

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric/noop"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

// startSleeper runs sleep until the test ends.
func startSleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// A process's start time, as ReadProcess computes it, is when it was started:
// procfs counts in 10 ms ticks.
func TestProcessStartTime(t *testing.T) {
	before := time.Now()
	cmd := startSleeper(t)
	after := time.Now()
	p, ok := ReadProcess(cmd.Process.Pid)
	require.True(t, ok)
	assert.True(t, p.Running())
	assert.WithinRange(t, p.StartTime(), before.Add(-20*time.Millisecond), after.Add(20*time.Millisecond))

	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait() // reaps the zombie; the error is the kill
	assert.False(t, p.Running(), "an exited process does not run")
	_, ok = ReadProcess(cmd.Process.Pid)
	assert.False(t, ok)
}

// reusePID starts a process that the kernel gives pid, which exited: it sets the
// host's kernel.ns_last_pid just below it, and tries again when another
// process's fork takes the number first.
func reusePID(t *testing.T, pid int) *exec.Cmd {
	t.Helper()
	const lastPID = "/proc/sys/kernel/ns_last_pid"
	for range 200 {
		if err := os.WriteFile(lastPID, []byte(strconv.Itoa(pid-1)), 0); err != nil {
			bpftest.SkipOrFail(t, "setting "+lastPID+" needs root (CAP_SYS_ADMIN): "+err.Error())
		}
		cmd := startSleeper(t)
		if cmd.Process.Pid == pid {
			return cmd
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	t.Fatalf("pid %d was not given again in 200 tries", pid)
	return nil
}

type removedPIDs []int

func (r *removedPIDs) RemovePID(pid int) error { *r = append(*r, pid); return nil }

// A pid given to a new process is not the old process: kill(pid, 0) calls the
// newcomer alive, the start time does not, and a pids target is removed from
// the kernel's filter when its process exits even though the number lives on.
func TestReusedPID(t *testing.T) {
	old := startSleeper(t)
	pid := old.Process.Pid
	oldProcess, ok := ReadProcess(pid)
	require.True(t, ok)
	counter, err := noop.NewMeterProvider().Meter("").Int64Counter("exited")
	require.NoError(t, err)
	targets := NewPIDs([]int{pid}, counter, zap.NewNop())
	var filter removedPIDs
	targets.Check(context.Background(), &filter)
	assert.Empty(t, filter, "the target runs")

	require.NoError(t, old.Process.Kill())
	_ = old.Wait()
	time.Sleep(30 * time.Millisecond) // more than a clock tick: the newcomer's start time differs
	newcomer := reusePID(t, pid)
	t.Logf("pid %d given again (ns_last_pid)", newcomer.Process.Pid)

	assert.NoError(t, unix.Kill(pid, 0), "kill(pid, 0) calls the number alive")
	assert.False(t, oldProcess.Running(), "the old process does not run")
	now, ok := ReadProcess(pid)
	require.True(t, ok)
	assert.NotEqual(t, oldProcess.Start, now.Start)
	assert.True(t, now.Running())

	targets.Check(context.Background(), &filter)
	assert.Equal(t, removedPIDs{pid}, filter, "the filter follows the process, not the number")
	targets.Check(context.Background(), &filter)
	assert.Equal(t, removedPIDs{pid}, filter, "once")
}
