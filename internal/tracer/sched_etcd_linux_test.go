//go:build linux && (amd64 || arm64)

package tracer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
)

// threadsOf lists a process's thread ids.
func threadsOf(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	require.NoError(t, err)
	var tids []int
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids
}

// runDelays is each thread's run_delay in schedstat; a thread gone has none.
func runDelays(t *testing.T, pid int) map[int]uint64 {
	t.Helper()
	out := map[int]uint64{}
	for _, tid := range threadsOf(t, pid) {
		if s, err := readSchedstat(pid, tid); err == nil {
			out[tid] = s.runDelay
		}
	}
	return out
}

// drainAll reads every record pending in the ring.
func drainAll(t *testing.T, tr *Tracer) []bpf.MonitorEvent {
	t.Helper()
	require.NoError(t, tr.reader.Flush())
	var out []bpf.MonitorEvent
	for {
		tr.reader.SetDeadline(time.Now().Add(500 * time.Millisecond))
		rec, err := tr.reader.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ringbuf.ErrFlushed) {
			if tr.reader.AvailableBytes() == 0 {
				return out
			}
			continue
		}
		require.NoError(t, err)
		ev, _, err := decodeEvent(rec.RawSample)
		require.NoError(t, err)
		out = append(out, *ev)
	}
}

// A real etcd 3.6 with every thread pinned to one CPU beside two busy loops pinned
// to it: its calls (WAL writes and syncs, bbolt's, its sockets') show runnable time,
// and per thread the sum over its calls is at most the growth of the thread's
// run_delay in schedstat. Its WAL syncs wait for the disk: blocked time.
func TestEtcdUnderCPUContention(t *testing.T) {
	bpftest.RequireBPF(t)
	requireSchedInfo(t)
	dir := t.TempDir()
	srv, err := etcdtest.Start(bpftest.RequireEtcd(t), dir)
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	pid := srv.PID()

	cpu := lastCPU(t)
	var set unix.CPUSet
	set.Set(cpu)
	for _, tid := range threadsOf(t, pid) { // threads etcd starts later inherit the mask
		require.NoError(t, unix.SchedSetaffinity(tid, &set), "pinning etcd's thread %d", tid)
	}
	tr, err := Start(Options{PIDs: []int{pid}, RingBufferSize: 16 << 20, Scheduler: true})
	require.NoError(t, err)
	defer tr.Close()
	startSpinners(t, 2, cpu)
	time.Sleep(50 * time.Millisecond)

	puts := 200
	if testing.Short() {
		puts = 50 // the QEMU guests emulate their CPU
	}
	before := runDelays(t, pid)
	require.NoError(t, srv.PutN("contended", puts, 256))
	records := drainAll(t, tr)
	// Read once the records are: a thread etcd started after the puts may have
	// made calls drained here (a later read only adds run_delay to compare with).
	after := runDelays(t, pid)
	runnable := map[int]uint64{}
	var syncs, syncsBlocked, total uint64
	for _, ev := range records {
		if int(ev.Pid) != pid {
			continue
		}
		require.NotZero(t, ev.Measured&uint32(bpf.MonitorRecordMeasuredMEASURED_SCHED), "%+v", ev)
		require.LessOrEqual(t, offCPU(ev), ev.DurationNs, "%+v", ev)
		runnable[int(ev.Tid)] += ev.WaitNs[WaitRunnable]
		total += ev.WaitNs[WaitRunnable]
		if ev.Type == uint16(bpf.MonitorSyscallTypeSYSCALL_FDATASYNC) && filepath.Ext(string(cString(ev.FileName[:]))) == ".wal" {
			syncs++
			if offCPU(ev) > ev.WaitNs[WaitRunnable] {
				syncsBlocked++
			}
		}
	}
	var delays uint64
	for tid, sum := range runnable {
		delay, ok := after[tid]
		require.True(t, ok, "thread %d made calls but has no schedstat", tid)
		grown := delay - before[tid] // a thread started in the window has no before: 0
		delays += grown
		assert.LessOrEqual(t, sum, grown, "thread %d: its calls' runnable time is part of its run_delay", tid)
	}
	t.Logf("etcd %d on CPU %d beside 2 spinners, %d puts: %d records from %d threads, runnable %v over the calls, those threads' run_delay +%v; %d WAL fdatasyncs, %d blocked",
		pid, cpu, puts, len(records), len(runnable), time.Duration(total), time.Duration(delays), syncs, syncsBlocked)
	assert.NotZero(t, total, "etcd's calls waited for the CPU the spinners held")
	assert.GreaterOrEqual(t, syncs, uint64(puts), "a WAL sync a put at least")
	if bpftest.InMemory(t, dir) {
		t.Logf("etcd's data directory %s is in memory: its syncs wait for no disk, so blocked time is not checked", dir)
		return
	}
	assert.Greater(t, syncsBlocked, syncs/2, "the WAL syncs waited for the disk")
}
