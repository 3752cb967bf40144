//go:build linux && (amd64 || arm64)

package tracer

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

// spin is a child of the scheduler test: a busy loop pinned to cpu, until killed.
func spin(cpu string) {
	runtime.LockOSThread()
	n, err := strconv.Atoi(cpu)
	if err != nil {
		os.Exit(2)
	}
	var set unix.CPUSet
	set.Set(n)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		os.Exit(3)
	}
	for {
	}
}

// startSpinners starts n busy loops pinned to cpu, copies of the test binary that
// the test kills when it ends.
func startSpinners(t *testing.T, n, cpu int) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	for range n {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=spin:%d", childEnv, cpu))
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
}

// requireSchedInfo skips a test of the scheduler part on a kernel that keeps no
// run delay per thread, saying so: Start refuses the part there (TestSchedulerNeedsSchedInfo).
func requireSchedInfo(t *testing.T) {
	t.Helper()
	if err := haveSchedInfo(); err != nil {
		t.Skipf("this kernel lacks what the scheduler part reads: %v", err)
	}
}

// lastCPU is the highest CPU this process may run on.
func lastCPU(t *testing.T) int {
	t.Helper()
	var set unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &set))
	for cpu := len(set)*64 - 1; cpu >= 0; cpu-- {
		if set.IsSet(cpu) {
			return cpu
		}
	}
	t.Fatal("no CPU in this process's affinity mask")
	return 0
}

// schedstat is a thread's line of /proc/<pid>/task/<tid>/schedstat: ns on a CPU,
// ns runnable waiting for one (run_delay), and its time slices.
type schedstat struct{ onCPU, runDelay uint64 }

func readSchedstat(pid, tid int) (schedstat, error) {
	var s schedstat
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/schedstat", pid, tid))
	if err != nil {
		return s, fmt.Errorf("the ground truth needs CONFIG_SCHED_INFO: %w", err)
	}
	if _, err := fmt.Sscan(string(data), &s.onCPU, &s.runDelay); err != nil {
		return s, fmt.Errorf("schedstat %q: %w", data, err)
	}
	return s, nil
}

// drainRecords reads the pending records of tid on the given fds until it has
// want of them: the Go runtime writes to its eventfd from any thread.
func drainRecords(t *testing.T, tr *Tracer, tid, want int, fds ...int) []bpf.MonitorEvent {
	t.Helper()
	require.NoError(t, tr.reader.Flush())
	tr.reader.SetDeadline(time.Now().Add(10 * time.Second))
	var out []bpf.MonitorEvent
	for len(out) < want {
		rec, err := tr.reader.Read()
		require.NoError(t, err, "%d of %d records of thread %d", len(out), want, tid)
		ev, _, err := decodeEvent(rec.RawSample)
		require.NoError(t, err)
		if int(ev.Tid) == tid && slices.Contains(fds, int(ev.Fd)) {
			out = append(out, *ev)
		}
	}
	return out
}

// A thread kept from its CPU by busy loops pinned to the same CPU: its long
// writes (a memcpy of 32 MiB each, preempted by the spinners) show runnable-wait
// time, and the sum over its calls is at most the growth of its run_delay in
// /proc/<pid>/task/<tid>/schedstat, the scheduler's own count. Its writes into a
// full pipe, which a reader drains only after a pause, show that pause as blocked
// time. Every record's parts fit in its duration, and the time left for the CPU
// is at most what schedstat says the thread ran. It runs with both pairings, as
// the other kernel tests do, and with the scheduler part off, where records say
// nothing of it.
func TestSchedulerSplitsCallTime(t *testing.T) {
	bpftest.RequireBPF(t)
	requireSchedInfo(t)
	t.Run("pairing this kernel gets", func(t *testing.T) { testSchedulerSplitsCallTime(t) })
	t.Run("inflight hash", func(t *testing.T) {
		replace(t, &haveTaskStorage, func() error { return fmt.Errorf("forced by the test: %w", ebpf.ErrNotSupported) })
		testSchedulerSplitsCallTime(t)
	})
}

func testSchedulerSplitsCallTime(t *testing.T) {
	const (
		spinners  = 2
		bigWrites = 10
		bigSize   = 32 << 20
		pipeWaits = 3
		pause     = 100 * time.Millisecond
	)
	tr, err := Start(Options{PIDs: []int{os.Getpid()}, RingBufferSize: 1 << 20, Syscalls: []string{"write", "pwrite64"},
		Scheduler: true})
	require.NoError(t, err)
	defer tr.Close()
	cpu := lastCPU(t)
	startSpinners(t, spinners, cpu)

	memfd, err := unix.MemfdCreate("sched-test", 0)
	require.NoError(t, err)
	defer unix.Close(memfd)
	var pipe [2]int
	require.NoError(t, unix.Pipe2(pipe[:], unix.O_CLOEXEC)) // blocking: a write to a full pipe sleeps
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	pipeSize, err := unix.FcntlInt(uintptr(pipe[1]), unix.F_GETPIPE_SZ, 0)
	require.NoError(t, err)

	type result struct {
		tid           int
		before, after schedstat
		err           error
	}
	done := make(chan result)
	go func() {
		// Locked and never unlocked: the thread ends with the goroutine, its affinity with it.
		runtime.LockOSThread()
		r := result{tid: unix.Gettid()}
		var set unix.CPUSet
		set.Set(cpu)
		if r.err = unix.SchedSetaffinity(0, &set); r.err != nil {
			done <- r
			return
		}
		// Allocated before the window: zeroing them would be work outside the calls.
		data, fill := make([]byte, bigSize), make([]byte, pipeSize)
		clear(data)
		runtime.GC()
		time.Sleep(50 * time.Millisecond) // the spinners have their CPU
		if r.before, r.err = readSchedstat(os.Getpid(), r.tid); r.err != nil {
			done <- r
			return
		}
		for range bigWrites {
			// The bare syscall, not unix.Pwrite: under -race that one marks all 32 MiB
			// read in the detector's shadow memory, CPU time outside the call.
			if _, _, errno := unix.Syscall6(unix.SYS_PWRITE64, uintptr(memfd), uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)), 0, 0, 0); errno != 0 {
				r.err = errno
				done <- r
				return
			}
		}
		for range pipeWaits {
			drained := make(chan struct{})
			go func() { // once the pipe is full, pauses, then drains it and the blocked byte, exactly
				defer close(drained)
				for n, _ := unix.IoctlGetInt(pipe[0], unix.TIOCINQ); n < pipeSize; n, _ = unix.IoctlGetInt(pipe[0], unix.TIOCINQ) {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(pause)
				buf := make([]byte, pipeSize+1)
				for n := 0; n < len(buf); {
					m, err := unix.Read(pipe[0], buf[n:])
					if err != nil {
						return
					}
					n += m
				}
			}()
			if _, r.err = unix.Write(pipe[1], fill); r.err == nil {
				_, r.err = unix.Write(pipe[1], []byte{1}) // the pipe is full: blocks until the reader drains it
			}
			<-drained
			if r.err != nil {
				done <- r
				return
			}
		}
		r.after, r.err = readSchedstat(os.Getpid(), r.tid)
		done <- r
	}()
	r := <-done
	require.NoError(t, r.err)

	records := drainRecords(t, tr, r.tid, bigWrites+2*pipeWaits, memfd, pipe[1])
	var runnable, onCPU, pipeBlocked uint64
	pipeWaitFunctions := map[bool]bool{}
	for _, ev := range records {
		require.EqualValues(t, bpf.MonitorRecordMeasuredMEASURED_SCHED, ev.Measured&uint32(bpf.MonitorRecordMeasuredMEASURED_SCHED), "%+v", ev)
		off := offCPU(ev)
		require.LessOrEqual(t, off, ev.DurationNs, "the parts fit in the call: %+v", ev)
		runnable += ev.WaitNs[WaitRunnable]
		onCPU += ev.DurationNs - off
		typ := bpf.MonitorSyscallType(ev.Type)
		if typ == bpf.MonitorSyscallTypeSYSCALL_WRITE {
			blocked := off - ev.WaitNs[WaitRunnable]
			pipeBlocked += blocked
			if blocked > uint64(pause/2) {
				assert.Equal(t, blocked, ev.WaitNs[WaitOther], "a full pipe is no wait the table names: %+v", ev)
				// pipe_write, anon_pipe_write from 6.16
				pipeWaitFunctions[strings.HasSuffix(KernelFunction(ev.OtherWaitIp), "pipe_write")] = true
			}
		}
	}
	if kallsymsReadable() {
		assert.Equal(t, map[bool]bool{true: true}, pipeWaitFunctions, "the writer waited in the pipe's write")
	}
	runDelay := r.after.runDelay - r.before.runDelay
	ran := r.after.onCPU - r.before.onCPU
	t.Logf("thread %d on CPU %d beside %d spinners: runnable %v over its calls, run_delay +%v; on CPU %v over its calls, schedstat +%v",
		r.tid, cpu, spinners, time.Duration(runnable), time.Duration(runDelay), time.Duration(onCPU), time.Duration(ran))
	assert.LessOrEqual(t, runnable, runDelay, "the calls' runnable time is part of the thread's run_delay")
	assert.Greater(t, runnable, runDelay/2, "the thread waited mostly inside its calls, which were most of its time")
	// schedstat's count lags the running thread by up to a tick, and ours includes interrupts it ran.
	assert.LessOrEqual(t, onCPU, ran+ran/10+uint64(10*time.Millisecond), "time on the CPU")
	// The pause starts when the pipe is full; the writer, kept from its CPU, may enter its next write later.
	assert.GreaterOrEqual(t, pipeBlocked, uint64(pipeWaits*pause*6/10), "the writes into the pipe were blocked for the reader's pauses")
	assert.Less(t, pipeBlocked, uint64(pipeWaits*pause*3), "and not much longer")
}

// With the scheduler part off, sched_switch has no program and records carry no split.
func TestSchedulerOff(t *testing.T) {
	bpftest.RequireBPF(t)
	tr, err := Start(Options{PIDs: []int{os.Getpid()}, RingBufferSize: 1 << 20, Syscalls: []string{"write"}})
	require.NoError(t, err)
	defer tr.Close()
	assert.Empty(t, tr.sched)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = unix.Write(int(f.Fd()), []byte("x"))
	require.NoError(t, err)
	for _, ev := range drainRecords(t, tr, unix.Gettid(), 1, int(f.Fd())) {
		assert.Zero(t, ev.Measured)
		assert.Zero(t, offCPU(ev))
	}
}

// A kernel without per-thread run delays fails Start with the scheduler part on and names the way out.
func TestSchedulerNeedsSchedInfo(t *testing.T) {
	bpftest.RequireBPF(t)
	requireSchedInfo(t)
	replace(t, &haveSchedInfo, func() error { return fmt.Errorf("scheduler: forced by the test: set scheduler: false") })
	_, err := Start(Options{Comm: "etcd", RingBufferSize: 1 << 20, Scheduler: true})
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "scheduler: false"), err.Error())
}

// offCPU is a record's time off the CPU: its waits of every kind, runnable included.
func offCPU(ev bpf.MonitorEvent) uint64 {
	var off uint64
	for _, ns := range ev.WaitNs {
		off += ns
	}
	return off
}

// kallsymsReadable reports whether this process sees the kernel's addresses, as
// naming waits needs (CAP_SYSLOG).
func kallsymsReadable() bool {
	f, err := os.Open(kallsymsPath)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = readTextSymbols(f, func(string) bool { return false })
	return err == nil
}
