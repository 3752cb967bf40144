//go:build linux

package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	etcdebpf "github.com/etcdebpf/etcdebpfreceiver"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpfobjects"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
)

// The switch phase: what a context switch of a thread outside any traced call
// costs with the scheduler part attached, beside bpftrace's runqueue-latency
// one-liner. Two threads pinned to one CPU hand a token back and forth through a
// futex (no traced syscall), so that every hand-over is a wake-up and a context
// switch; their CPU time per switch is the figure.
const (
	switchUntraced = "untraced"
	switchSchedOff = "receiver, scheduler off"
	switchSchedOn  = "receiver, scheduler on"
	switchRunqlat  = "bpftrace runqlat"
)

var switchVariants = []string{switchUntraced, switchSchedOff, switchSchedOn, switchRunqlat}

// runqlatScript is bpftrace's runqlat.bt in one line: the time from wake-up (or
// preemption) to running, in a histogram, for every task on the host.
const runqlatScript = `tracepoint:sched:sched_wakeup,tracepoint:sched:sched_wakeup_new { @qtime[args->pid] = nsecs; } ` +
	`tracepoint:sched:sched_switch { if (args->prev_state == 0) { @qtime[args->prev_pid] = nsecs; } ` +
	`$ns = @qtime[args->next_pid]; if ($ns) { @usecs = hist((nsecs - $ns) / 1000); } delete(@qtime[args->next_pid]); }`

type switchSample struct {
	Variant     string
	Switches    uint64
	NsPerSwitch float64 // CPU time of both threads per context switch
}

// pingpong runs rounds hand-overs between two threads pinned to one CPU and prints
// their context switches and CPU time, from their schedstat.
func pingpong(rounds int) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		fmt.Println("PINGPONG-ERROR", err)
		os.Exit(1)
	}
	cpu := 0
	for c := range len(set) * 64 {
		if set.IsSet(c) {
			cpu = c
		}
	}
	var turn uint32 // whose turn: 0 or 1
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	// Each thread reads its own schedstat: a locked thread ends with its goroutine.
	var before, after [2][2]uint64
	ready.Add(2)
	done.Add(2)
	for me := range uint32(2) {
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			var one unix.CPUSet
			one.Set(cpu)
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				fmt.Println("PINGPONG-ERROR", err)
				os.Exit(1)
			}
			tid := unix.Gettid()
			ready.Done()
			<-start
			before[me] = threadSchedstat(tid)
			for range rounds {
				for atomic.LoadUint32(&turn) != me {
					futex(&turn, futexWaitPrivate, 1-me)
				}
				atomic.StoreUint32(&turn, 1-me)
				futex(&turn, futexWakePrivate, 1)
			}
			after[me] = threadSchedstat(tid)
		}()
	}
	ready.Wait()
	time.Sleep(10 * time.Millisecond) // both threads wait on start, pinned
	close(start)
	done.Wait()
	var cpuNs, switches uint64
	for i := range 2 {
		cpuNs += after[i][0] - before[i][0]
		switches += after[i][1] - before[i][1]
	}
	fmt.Printf("PINGPONG switches=%d cpu_ns=%d\n", switches, cpuNs)
}

// futex(2) operations (linux/futex.h): FUTEX_WAIT and FUTEX_WAKE | FUTEX_PRIVATE_FLAG.
const (
	futexWaitPrivate = 0 | 128
	futexWakePrivate = 1 | 128
)

func futex(addr *uint32, op int, val uint32) {
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), uintptr(op), uintptr(val), 0, 0, 0)
}

// threadSchedstat is a thread's ns on a CPU and its number of times run (fields 1 and 3).
func threadSchedstat(tid int) [2]uint64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", tid))
	var onCPU, delay, slices uint64
	_, _ = fmt.Sscan(string(data), &onCPU, &delay, &slices)
	return [2]uint64{onCPU, slices}
}

// runSwitches alternates the variants runs times.
func runSwitches(runs, rounds int, work string) ([]switchSample, error) {
	var out []switchSample
	for i := 1; i <= runs; i++ {
		for _, v := range switchVariants {
			s, err := switchOnce(v, rounds, work)
			if err != nil {
				return out, err
			}
			out = append(out, s)
			logf("  switch run %d/%d %-24s %7.1f ns/switch (%d switches)", i, runs, v, s.NsPerSwitch, s.Switches)
		}
	}
	return out, nil
}

func switchOnce(variant string, rounds int, work string) (switchSample, error) {
	s := switchSample{Variant: variant}
	switch variant {
	case switchSchedOff, switchSchedOn:
		r, err := startInprocWith(false, func(cfg *etcdebpf.Config) { cfg.Scheduler = variant == switchSchedOn })
		if err != nil {
			return s, err
		}
		defer r.stop()
	case switchRunqlat:
		bt, err := startRunqlat(work)
		if err != nil {
			return s, err
		}
		defer bt.Stop(10 * time.Second)
	}
	exe, err := os.Executable()
	if err != nil {
		return s, err
	}
	out, err := run(exe, "-pingpong", strconv.Itoa(rounds))
	if err != nil {
		return s, err
	}
	var cpuNs uint64
	if _, err := fmt.Sscanf(strings.TrimSpace(out), "PINGPONG switches=%d cpu_ns=%d", &s.Switches, &cpuNs); err != nil || s.Switches == 0 {
		return s, fmt.Errorf("ping-pong printed %q: %v", out, err)
	}
	s.NsPerSwitch = float64(cpuNs) / float64(s.Switches)
	return s, nil
}

// switchStat is one tracer's BPF run time during a ping-pong run.
type switchStat struct {
	Tracer string
	Progs  []progDelta
}

// perSwitch is the tracer's BPF time per context switch: all its programs' run
// time over the runs of its most-run program, the one on sched_switch (the
// wake-ups are as many or fewer).
func (s switchStat) perSwitch() float64 {
	var ns, runs uint64
	for _, p := range s.Progs {
		ns += p.RunNs
		runs = max(runs, p.RunCnt)
	}
	if runs == 0 {
		return 0
	}
	return float64(ns) / float64(runs)
}

// switchBPFStats runs the ping-pong once beside the receiver with the scheduler
// part and once beside bpftrace's runqlat, BPF run-time stats on, and returns
// each one's program deltas.
func switchBPFStats(rounds int, work string) ([]switchStat, error) {
	undo, err := bpfStats()
	if err != nil {
		return nil, err
	}
	defer undo()
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// measure snapshots the programs held by pid around one ping-pong run.
	measure := func(tracer string, pid int, all bool) (switchStat, error) {
		snap := func() ([]bpfobjects.Program, error) {
			if !all {
				return ownedPrograms(pid)
			}
			held, err := bpfobjects.HeldBy(pid)
			if err != nil {
				return nil, err
			}
			return bpfobjects.Programs(held.Programs)
		}
		before, err := snap()
		if err != nil {
			return switchStat{}, err
		}
		if _, err := run(exe, "-pingpong", strconv.Itoa(rounds)); err != nil {
			return switchStat{}, err
		}
		after, err := snap()
		if err != nil {
			return switchStat{}, err
		}
		return switchStat{Tracer: tracer, Progs: snapshotDelta(before, after)}, nil
	}
	r, err := startInprocWith(false, func(cfg *etcdebpf.Config) { cfg.Scheduler = true })
	if err != nil {
		return nil, err
	}
	recv, err := measure(switchSchedOn, os.Getpid(), false)
	_ = r.stop()
	if err != nil {
		return nil, err
	}
	bt, err := startRunqlat(work)
	if err != nil {
		return nil, err
	}
	defer bt.Stop(10 * time.Second)
	runqlat, err := measure(switchRunqlat, bt.PID(), true)
	if err != nil {
		return nil, err
	}
	return []switchStat{recv, runqlat}, nil
}

func startRunqlat(work string) (*subprocess.Process, error) {
	bt, err := startReady(subprocess.Options{LogPath: work + "/bpftrace-runqlat.log", StopSignal: unix.SIGINT,
		Path: "bpftrace", Args: []string{"-e", runqlatScript}, Ready: "Attaching"})
	if err == nil {
		time.Sleep(500 * time.Millisecond) // "Attaching" is printed before the attach completes
	}
	return bt, err
}

func (r *report) writeSwitches(w func(string, ...any), targets *[]string) {
	if len(r.switches) == 0 {
		return
	}
	w("## Context switch of a thread outside any traced call\n\n")
	w("Two threads pinned to one CPU hand a token back and forth through a futex, %d hand-overs a run: every hand-over "+
		"is a wake-up and a context switch, and no traced syscall is made. The figure is the two threads' CPU time "+
		"(schedstat) per context switch, futex calls included. `receiver, scheduler on`: the receiver (tracing `comm: %s`, "+
		"not these threads) with its program on `sched_switch`; `scheduler off`: the same without it; `bpftrace runqlat`: "+
		"the runqueue-latency one-liner (`sched_wakeup`, `sched_wakeup_new`, `sched_switch`, a hash of wake-up times and a "+
		"histogram). Variants alternate; %d runs each; median (min–max).\n\n", r.opts.switchTurns, comm, r.opts.switchRuns)
	w("| variant | CPU ns/switch | added |\n|---|---|---|\n")
	med := map[string]float64{}
	for _, v := range switchVariants {
		var ns []float64
		for _, s := range r.switches {
			if s.Variant == v {
				ns = append(ns, s.NsPerSwitch)
			}
		}
		if len(ns) == 0 {
			continue
		}
		med[v] = median(ns)
		lo, hi := minMax(ns)
		added := "–"
		if v != switchUntraced {
			added = fmt.Sprintf("%+.0f ns", med[v]-med[switchUntraced])
		}
		w("| %s | %.0f (%.0f–%.0f) | %s |\n", v, med[v], lo, hi, added)
	}
	w("\n")
	if len(r.switchStats) > 0 {
		w("BPF run time during one more ping-pong run beside each tracer (`kernel.bpf_stats_enabled=1`, which adds ~20 ns a run; " +
			"the programs also ran for every other task's switches and wake-ups on the host meanwhile). Per switch: all the " +
			"tracer's programs' run time over the runs of its most-run one, the `sched_switch` program:\n\n")
		w("| tracer | program | runs | ns/run |\n|---|---|---|---|\n")
		for _, st := range r.switchStats {
			for _, p := range st.Progs {
				if p.RunCnt > 0 {
					w("| %s | %s | %d | %.0f |\n", st.Tracer, p.Name, p.RunCnt, p.nsPerRun())
				}
			}
			w("| %s | **per context switch** | | **%.0f** |\n", st.Tracer, st.perSwitch())
		}
		w("\n")
	}
	on, off, bt := med[switchSchedOn], med[switchSchedOff], med[switchRunqlat]
	if on > 0 && off > 0 {
		*targets = append(*targets, fmt.Sprintf("| context switch of an untraced thread: the scheduler part adds ≤ 100 ns | %+.0f ns CPU over scheduler off (bpftrace runqlat %+.0f ns over untraced) | %s |",
			on-off, bt-med[switchUntraced], metMissed(on-off <= 100)))
	}
}
