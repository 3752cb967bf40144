//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	etcdebpf "github.com/etcdebpf/etcdebpfreceiver"
	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpfobjects"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter"
)

// The sync phase: what tracing costs a writer that looks like etcd's WAL, a write of
// 4 KiB and an fdatasync, over and over, to a file on a real disk. Every sync leaves
// the CPU blocked at least once, so that this is where the scheduler part reads what a
// call waits for and the disks' view sees the call's own requests: the per-call path
// of the recommended configuration in full, beside bpftrace's latency histogram.
const (
	syncUntraced    = "untraced"
	syncRecommended = "receiver, recommended"
	syncBare        = "receiver, scheduler and block off"
	syncBpftrace    = "bpftrace latency histogram"
)

var syncVariants = []string{syncUntraced, syncRecommended, syncBare, syncBpftrace}

type syncSample struct {
	Variant  string
	Syncs    int64
	CPUNs    float64 // the writer's CPU time per write and sync
	Programs []progDelta
}

func (s syncSample) bpfNsPerSync() float64 {
	var ns uint64
	for _, p := range s.Programs {
		ns += p.RunNs
	}
	if s.Syncs == 0 {
		return 0
	}
	return float64(ns) / float64(s.Syncs)
}

// program is one of the sample's programs, zero when it did not run.
func (s syncSample) program(name string) progDelta {
	for _, p := range s.Programs {
		if p.Name == name {
			return p
		}
	}
	return progDelta{Name: name}
}

// runSyncs alternates the variants runs times, syncs syncs each, with BPF run-time
// stats on throughout.
func (h *harness) runSyncs(runs, syncs int) ([]syncSample, error) {
	dir := filepath.Join(h.work, "sync")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	bin, err := etcdwriter.Build(dir, comm)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "wal")
	if err := preallocate(path, min(syncs, 16384)*4096); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, err
	}
	disk := host.DiskName(unix.Major(st.Dev)<<20 | unix.Minor(st.Dev))
	undo, err := bpfStats()
	if err != nil {
		return nil, err
	}
	defer undo()
	logf("  writing and syncing %s on disk %s", path, disk)
	var out []syncSample
	for i := 1; i <= runs; i++ {
		for _, v := range syncVariants {
			s, err := syncOnce(v, bin, path, syncs, h.work)
			if err != nil {
				return out, err
			}
			out = append(out, s)
			sw := s.program("on_switch")
			logf("  sync run %d/%d %-34s %6.0f BPF ns/sync, writer %6.0f CPU ns/sync, on_switch %4.0f ns × %.1f a sync",
				i, runs, v, s.bpfNsPerSync(), s.CPUNs, sw.nsPerRun(), float64(sw.RunCnt)/float64(max(s.Syncs, 1)))
		}
	}
	return out, nil
}

func syncOnce(variant, bin, path string, syncs int, work string) (syncSample, error) {
	s := syncSample{Variant: variant}
	programs := func() ([]bpfobjects.Program, error) { return nil, nil }
	switch variant {
	case syncRecommended, syncBare:
		r, err := startInprocWith(true, func(cfg *etcdebpf.Config) {
			cfg.MinDuration = 10 * time.Millisecond
			if variant == syncBare {
				cfg.Scheduler, cfg.Block = false, false
			}
		})
		if err != nil {
			return s, err
		}
		defer r.stop()
		programs = func() ([]bpfobjects.Program, error) { return ownedPrograms(os.Getpid()) }
	case syncBpftrace:
		bt, err := startBpftrace(filepath.Join(work, "bpftrace-sync.log"))
		if err != nil {
			return s, err
		}
		defer bt.Stop(10 * time.Second)
		programs = func() ([]bpfobjects.Program, error) { return heldPrograms(bt.PID()) }
	}
	before, err := programs()
	if err != nil {
		return s, err
	}
	o := etcdwriter.Options{Calls: int64(syncs), Size: 4096, Path: path, Fdatasync: true}
	res, err := writeLoop(bin, o)
	if err != nil {
		return s, err
	}
	after, err := programs()
	if err != nil {
		return s, err
	}
	s.Syncs, s.CPUNs, s.Programs = res.Calls, res.CPUNs, snapshotDelta(before, after)
	return s, nil
}

func (r *report) writeSyncs(w func(string, ...any), targets *[]string) {
	if len(r.syncs) == 0 {
		return
	}
	w("## Syncs like etcd's WAL: BPF time per write and fdatasync\n\n")
	w("A writer named `%s` makes %d pairs of a 4 KiB `write(2)` and an `fdatasync(2)` a run, to a preallocated file on "+
		"the work directory's disk (overwrites: the sync waits for its data's writeback and the device's cache flush, "+
		"as etcd's WAL syncs do). `%s`: the receiver with its defaults (histograms, the scheduler part with the causes "+
		"of the waits, the disks' view) and records at `min_duration: 10ms`, in process. `%s`: the same with "+
		"`scheduler: false, block: false`. `%s`: configuration D's one-liner, histograms of the same seven calls. BPF "+
		"ns/sync: every program of the tool, over the syncs (`kernel.bpf_stats_enabled=1` in every run, ~20 ns a "+
		"program run); the receiver's programs run for every process's calls, context switches and disk requests on the "+
		"host, so this charges it for all of them. Variants alternate; %d runs each; median (min–max).\n\n",
		comm, r.opts.syncCalls, syncRecommended, syncBare, syncBpftrace, r.opts.syncRuns)
	w("| variant | BPF ns/sync | writer CPU ns/sync | per program, median run (ns/run × runs a sync) |\n|---|---|---|---|\n")
	med := map[string]float64{}
	for _, v := range syncVariants {
		var runs []syncSample
		for _, s := range r.syncs {
			if s.Variant == v {
				runs = append(runs, s)
			}
		}
		if len(runs) == 0 {
			continue
		}
		var ns, cpu []float64
		for _, s := range runs {
			ns = append(ns, s.bpfNsPerSync())
			cpu = append(cpu, s.CPUNs)
		}
		med[v] = median(ns)
		lo, hi := minMax(ns)
		slices.SortFunc(runs, func(a, b syncSample) int { return int(a.bpfNsPerSync()) - int(b.bpfNsPerSync()) })
		mid := runs[len(runs)/2]
		var progs []string
		for _, p := range mid.Programs {
			if p.RunCnt > 0 {
				progs = append(progs, fmt.Sprintf("%s %.0f × %.1f", p.Name, p.nsPerRun(), float64(p.RunCnt)/float64(max(mid.Syncs, 1))))
			}
		}
		bpfNs, perProgram := "–", "–"
		if v != syncUntraced {
			bpfNs = fmt.Sprintf("%.0f (%.0f–%.0f)", med[v], lo, hi)
			perProgram = strings.Join(progs, "; ")
		}
		w("| %s | %s | %.0f | %s |\n", v, bpfNs, median(cpu), perProgram)
	}
	w("\n")
	if mine, bt := med[syncRecommended], med[syncBpftrace]; mine > 0 && bt > 0 {
		*targets = append(*targets, fmt.Sprintf("| an etcd-like write and sync, the recommended configuration: BPF ≤ bpftrace's histogram | %.0f ns (bpftrace %.0f ns, ratio %.2f) | %s |",
			mine, bt, mine/bt, metMissed(mine <= bt)))
	}
}
