//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	etcdebpf "github.com/etcdebpf/etcdebpfreceiver"
	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpfobjects"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
)

// The block phase: what the disks' view costs per disk request, beside bpftrace
// doing the same jobs, in BPF run time (kernel.bpf_stats_enabled). A writer makes
// O_DIRECT writes of 4 KiB to a file on the work directory's disk, one request
// each; the receiver covers that disk (disks: [it]), bpftrace every disk. Both
// tools' programs run for every request of every disk, so the figure is each
// tool's BPF time on its block programs over the requests all disks completed
// meanwhile, as /sys/block/*/stat counts them.
const (
	blockUntraced = "untraced"
	blockReceiver = "receiver, block on"
	blockBpftrace = "bpftrace biolatency + biotop"
)

var blockVariants = []string{blockUntraced, blockReceiver, blockBpftrace}

// blockScript does the disks' view's jobs with classic tracepoints, keyed by
// device and sector as biolatency does: the time from a bio's queueing to its
// request's issue and from issue to completion, in histograms per disk, and the
// bytes and bios each process submits to each disk, as biotop counts them.
const blockScript = `tracepoint:block:block_bio_queue { @queued[args->dev, args->sector] = nsecs; ` +
	`@bytes[args->dev, pid, comm] = sum(args->nr_sector * 512); @bios[args->dev, pid, comm] = count(); } ` +
	`tracepoint:block:block_rq_issue { $q = @queued[args->dev, args->sector]; ` +
	`if ($q) { @queue_us[args->dev] = hist((nsecs - $q) / 1000); delete(@queued[args->dev, args->sector]); } ` +
	`@issued[args->dev, args->sector] = nsecs; } ` +
	`tracepoint:block:block_rq_complete { $i = @issued[args->dev, args->sector]; ` +
	`if ($i) { @service_us[args->dev] = hist((nsecs - $i) / 1000); delete(@issued[args->dev, args->sector]); } }`

type blockSample struct {
	Variant      string
	Writes       int64
	CPUNs        float64 // the writer's CPU time per write
	Requests     uint64  // completed on every disk: reads, writes, discards, flushes
	DiskRequests uint64  // of them, on the written disk
	Programs     []progDelta
	Empty        progDelta // the empty program on block_rq_complete
}

func (s blockSample) bpfNs() (ns uint64) {
	for _, p := range s.Programs {
		ns += p.RunNs
	}
	return ns
}

// nsPerRequest is the tool's BPF time on all its block programs per request completed.
func (s blockSample) nsPerRequest() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.bpfNs()) / float64(s.Requests)
}

// blockEnv is the written disk and the writer.
type blockEnv struct {
	disk, bin, path, work string
	writes                int
	empty                 *emptyProgram
}

// emptyProgram returns at once from block_rq_complete. Its run time is the floor
// every program's figure here has: the dispatch and the two clock reads that
// kernel.bpf_stats_enabled adds around each run.
type emptyProgram struct {
	prog *ebpf.Program
	link link.Link
}

func attachEmpty() (*emptyProgram, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "bench_empty", Type: ebpf.RawTracepoint, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		return nil, fmt.Errorf("loading the empty program: %w", err)
	}
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "block_rq_complete", Program: prog})
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("attaching the empty program to block_rq_complete: %w", err)
	}
	return &emptyProgram{prog: prog, link: l}, nil
}

func (p *emptyProgram) close() {
	_ = p.link.Close()
	_ = p.prog.Close()
}

func (p *emptyProgram) snapshot() (bpfobjects.Program, error) {
	st, err := p.prog.Stats()
	if err != nil {
		return bpfobjects.Program{}, err
	}
	return bpfobjects.Program{Name: "empty", RunCount: st.RunCount, RunTime: st.Runtime}, nil
}

// runBlock alternates the variants runs times, writes writes each, with BPF
// run-time stats on throughout (the untraced runs have no programs to time).
func (h *harness) runBlock(runs, writes int) ([]blockSample, error) {
	e := blockEnv{work: h.work, writes: writes}
	dir := filepath.Join(h.work, "block")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, err
	}
	e.disk = host.DiskName(unix.Major(st.Dev)<<20 | unix.Minor(st.Dev))
	var err error
	if e.bin, err = etcdwriter.Build(dir, "blockwriter"); err != nil {
		return nil, err
	}
	e.path = filepath.Join(dir, "data")
	if err := preallocate(e.path, min(writes, 16384)*4096); err != nil {
		return nil, err
	}
	undo, err := bpfStats()
	if err != nil {
		return nil, err
	}
	defer undo()
	empty, err := attachEmpty()
	if err != nil {
		return nil, err
	}
	defer empty.close()
	e.empty = empty
	logf("  writing to %s on disk %s", e.path, e.disk)
	var out []blockSample
	for i := 1; i <= runs; i++ {
		for _, v := range blockVariants {
			s, err := e.once(v)
			if err != nil {
				return out, err
			}
			out = append(out, s)
			logf("  block run %d/%d %-30s %6.0f BPF ns/request, %d requests (%d on %s), writer %.0f CPU ns/write, empty program %.0f ns/run",
				i, runs, v, s.nsPerRequest(), s.Requests, s.DiskRequests, e.disk, s.CPUNs, s.Empty.nsPerRun())
		}
	}
	return out, nil
}

// preallocate writes the file whole and syncs it, so that the O_DIRECT writes
// overwrite written blocks (no extent conversion) and no writeback of it falls
// into a run. The writer rewinds every 16384 writes.
func preallocate(path string, size int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(make([]byte, size)); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (e blockEnv) once(variant string) (blockSample, error) {
	s := blockSample{Variant: variant}
	var programs func() ([]bpfobjects.Program, error)
	switch variant {
	case blockReceiver:
		r, err := startInprocWith(false, func(cfg *etcdebpf.Config) { cfg.Block, cfg.Disks = true, []string{e.disk} })
		if err != nil {
			return s, err
		}
		defer r.stop()
		programs = receiverBlockPrograms
	case blockBpftrace:
		bt, err := startReady(subprocess.Options{LogPath: e.work + "/bpftrace-block.log", StopSignal: unix.SIGINT,
			Path: "bpftrace", Args: []string{"-e", blockScript}, Ready: "Attaching"})
		if err != nil {
			return s, err
		}
		time.Sleep(500 * time.Millisecond) // "Attaching" is printed before the attach completes
		defer bt.Stop(10 * time.Second)
		programs = func() ([]bpfobjects.Program, error) { return heldPrograms(bt.PID()) }
	default:
		programs = func() ([]bpfobjects.Program, error) { return nil, nil }
	}
	progsBefore, err := programs()
	if err != nil {
		return s, err
	}
	emptyBefore, err := e.empty.snapshot()
	if err != nil {
		return s, err
	}
	statBefore, err := diskRequests()
	if err != nil {
		return s, err
	}
	o := etcdwriter.Options{Calls: int64(e.writes), Size: 4096, Path: e.path, Direct: true, Report: true}
	out, err := run(e.bin, o.Args()...)
	if err != nil {
		return s, err
	}
	statAfter, err := diskRequests()
	if err != nil {
		return s, err
	}
	progsAfter, err := programs()
	if err != nil {
		return s, err
	}
	emptyAfter, err := e.empty.snapshot()
	if err != nil {
		return s, err
	}
	s.Empty = snapshotDelta([]bpfobjects.Program{emptyBefore}, []bpfobjects.Program{emptyAfter})[0]
	res, err := etcdwriter.ParseResult(out)
	if err != nil {
		return s, err
	}
	s.Writes, s.CPUNs = res.Calls, res.CPUNs
	for name, n := range statAfter {
		s.Requests += n - statBefore[name]
	}
	s.DiskRequests = statAfter[e.disk] - statBefore[e.disk]
	s.Programs = snapshotDelta(progsBefore, progsAfter)
	return s, nil
}

// receiverBlockPrograms are the receiver's block programs (block.c) in this process.
func receiverBlockPrograms() ([]bpfobjects.Program, error) {
	progs, err := ownedPrograms(os.Getpid())
	if err != nil {
		return nil, err
	}
	progs = slices.DeleteFunc(progs, func(p bpfobjects.Program) bool { return !strings.HasPrefix(p.Name, "block_") })
	if len(progs) == 0 {
		return nil, fmt.Errorf("no block programs of the receiver in this process")
	}
	return progs, nil
}

// heldPrograms are all the programs pid holds.
func heldPrograms(pid int) ([]bpfobjects.Program, error) {
	held, err := bpfobjects.HeldBy(pid)
	if err != nil {
		return nil, err
	}
	return bpfobjects.Programs(held.Programs)
}

// diskRequests is each disk's completed requests (reads, writes, discards and
// flushes) in /sys/block/<disk>/stat, the kernel's own count.
func diskRequests() (map[string]uint64, error) {
	stats, err := filepath.Glob("/sys/block/*/stat")
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		f := strings.Fields(string(data))
		var n uint64
		for _, i := range []int{1, 5, 12, 16} { // 1-based, as Documentation/block/stat.rst numbers them
			if i <= len(f) {
				v, err := strconv.ParseUint(f[i-1], 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%s field %d: %w", path, i, err)
				}
				n += v
			}
		}
		out[filepath.Base(filepath.Dir(path))] = n
	}
	return out, nil
}

func (r *report) writeBlock(w func(string, ...any), targets *[]string) {
	if len(r.blocks) == 0 {
		return
	}
	w("## The disks' view: BPF time per disk request\n\n")
	w("A writer makes %d O_DIRECT writes of 4 KiB a run to a preallocated file on the work directory's disk (one request "+
		"each, beside whatever else the host does on its disks). `%s`: the receiver with `block: true` and `disks:` that disk "+
		"(`block_bio_queue`, `block_rq_issue`, `block_rq_requeue`, `block_rq_complete` on BTF tracepoints: per disk and "+
		"operation service and queue histograms, completions, bytes and bios per submitting process). `%s`: bpftrace doing "+
		"the same jobs on classic tracepoints, over every disk: the bio's queueing and the request's issue time keyed by device "+
		"and sector, queue (bio queued → issued) and service (issued → completed) histograms per disk, bytes and bios per "+
		"(disk, pid, comm) at `block_bio_queue`. BPF ns/request: the tool's BPF run time over all its block programs "+
		"(`kernel.bpf_stats_enabled=1`, on in every run, which adds ~20 ns a program run) over the requests every disk "+
		"completed in the run, from `/sys/block/*/stat` (reads, writes, discards, flushes). The writer's CPU is its process "+
		"CPU time per write; the device's completion runs elsewhere (its interrupt). Variants alternate; %d runs each; "+
		"median (min–max).\n\n", r.opts.blockWrites, blockReceiver, blockBpftrace, r.opts.blockRuns)
	w("| variant | BPF ns/request | requests, all disks (written disk) | writer CPU ns/write | per program, median run (ns/run × runs) |\n|---|---|---|---|---|\n")
	med := map[string]float64{}
	for _, v := range blockVariants {
		var runs []blockSample
		for _, s := range r.blocks {
			if s.Variant == v {
				runs = append(runs, s)
			}
		}
		if len(runs) == 0 {
			continue
		}
		var ns, cpu, reqs, disk []float64
		for _, s := range runs {
			ns = append(ns, s.nsPerRequest())
			cpu = append(cpu, s.CPUNs)
			reqs = append(reqs, float64(s.Requests))
			disk = append(disk, float64(s.DiskRequests))
		}
		med[v] = median(ns)
		lo, hi := minMax(ns)
		slices.SortFunc(runs, func(a, b blockSample) int {
			return int(a.nsPerRequest()*1000) - int(b.nsPerRequest()*1000)
		})
		var progs []string
		for _, p := range runs[len(runs)/2].Programs {
			if p.RunCnt > 0 {
				progs = append(progs, fmt.Sprintf("%s %.0f × %d", p.Name, p.nsPerRun(), p.RunCnt))
			}
		}
		bpfNs, perProgram := "–", "–"
		if v != blockUntraced {
			bpfNs = fmt.Sprintf("%.0f (%.0f–%.0f)", med[v], lo, hi)
			perProgram = strings.Join(progs, "; ")
		}
		w("| %s | %s | %.0f (%.0f) | %.0f | %s |\n", v, bpfNs, median(reqs), median(disk), median(cpu), perProgram)
	}
	w("\n")
	var empty []float64
	for _, s := range r.blocks {
		if s.Empty.RunCnt > 0 {
			empty = append(empty, s.Empty.nsPerRun())
		}
	}
	if len(empty) > 0 {
		lo, hi := minMax(empty)
		w("A program that returns at once, attached to `block_rq_complete` throughout, ran at %.0f ns a run (%.0f–%.0f): the floor "+
			"of every program's figure here (the dispatch and the clock reads the stats add around each run). Each tool runs "+
			"three programs a request, so %.0f ns of its figure is that floor.\n\n", median(empty), lo, hi, 3*median(empty))
	}
	if mine, bt := med[blockReceiver], med[blockBpftrace]; mine > 0 && bt > 0 {
		w("The receiver's block programs cost %.2f of bpftrace's per request.\n\n", mine/bt)
		*targets = append(*targets, fmt.Sprintf("| the disks' view per request: ≤ bpftrace's equivalents in the same run and ≤ 500 ns | %.0f ns (bpftrace %.0f ns, ratio %.2f) | %s |",
			mine, bt, mine/bt, metMissed(mine <= bt && mine <= 500)))
	}
}
