//go:build linux

package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpfobjects"
)

// ownedPrograms lists the receiver's programs held by pid, with their run-time stats.
func ownedPrograms(pid int) ([]bpfobjects.Program, error) {
	held, err := bpfobjects.HeldBy(pid)
	if err != nil {
		return nil, err
	}
	progs, err := bpfobjects.ReceiverPrograms(held.Programs)
	if err != nil {
		return nil, err
	}
	if len(progs) == 0 {
		return nil, fmt.Errorf("no BPF programs of the receiver held by pid %d", pid)
	}
	return progs, nil
}

// ownedMaps describes the maps the receiver's programs of pid use, by name.
func ownedMaps(pid int) (map[string]bpfobjects.Map, error) {
	progs, err := ownedPrograms(pid)
	if err != nil {
		return nil, err
	}
	return bpfobjects.MapsOf(progs)
}

// kernelDrops reads the loss counters of the receiver in process pid.
func kernelDrops(pid int) (ringbufFull, inflightFull uint64, err error) {
	held, err := bpfobjects.HeldBy(pid)
	if err != nil {
		return 0, 0, err
	}
	c, err := held.Counters()
	return c.RingbufFull, c.InflightFull, err
}

// foreignPrograms counts tracepoint programs loaded by others (another
// engineer's receiver or test): they tax every process's syscalls.
func foreignPrograms() int {
	n, err := bpfobjects.ForeignTracepointPrograms()
	if err != nil {
		return -1
	}
	return n
}

// bpfStats turns kernel.bpf_stats_enabled on until undo is called (or the
// harness exits). Stats cost ~20 ns per program run, so they are on only in the
// passes that read them.
func bpfStats() (undo func(), err error) {
	const path = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		return nil, fmt.Errorf("enabling BPF run-time stats: %w", err)
	}
	undo = sync.OnceFunc(func() { _ = os.WriteFile(path, old, 0o644) })
	onCleanup(undo)
	return undo, nil
}

// progDelta is the run time and count of each program between two snapshots.
type progDelta struct {
	Name   string
	RunCnt uint64
	RunNs  uint64
}

func (d progDelta) nsPerRun() float64 {
	if d.RunCnt == 0 {
		return 0
	}
	return float64(d.RunNs) / float64(d.RunCnt)
}

func snapshotDelta(before, after []bpfobjects.Program) []progDelta {
	prev := map[ebpf.ProgramID]bpfobjects.Program{}
	for _, p := range before {
		prev[p.ID] = p
	}
	var out []progDelta
	for _, p := range after {
		b := prev[p.ID]
		out = append(out, progDelta{Name: p.Name, RunCnt: p.RunCount - b.RunCount, RunNs: uint64(p.RunTime - b.RunTime)})
	}
	slices.SortFunc(out, func(a, b progDelta) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// sumPhase adds up the enter_* or exit_* programs.
func sumPhase(ds []progDelta, prefix string) progDelta {
	s := progDelta{Name: prefix + "*"}
	for _, d := range ds {
		if strings.HasPrefix(d.Name, prefix) {
			s.RunCnt += d.RunCnt
			s.RunNs += d.RunNs
		}
	}
	return s
}

// bpfRunTime is the run time of every BPF program pid holds (the receiver's or
// bpftrace's; none for strace), as kernel.bpf_stats_enabled counts it.
func bpfRunTime(pid int) time.Duration {
	held, err := bpfobjects.HeldBy(pid)
	if err != nil {
		return 0
	}
	progs, err := bpfobjects.Programs(held.Programs)
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, p := range progs {
		sum += p.RunTime
	}
	return sum
}
