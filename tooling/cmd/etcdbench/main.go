//go:build linux

// Command etcdbench measures what tracing costs etcd, side by side with bpftrace
// and strace, and how fast the etcdebpf receiver can go. It must run as root from
// the module root. It builds what it needs (the collector with `make collector`,
// etcd with scripts/install-etcd.sh, its write loop with go build), alternates the
// configurations A B C D E F A B C ... (-configs), and writes a Markdown report.
//
//	go run ./cmd/etcdbench -rounds 10 -duration 5s -out bench/results/latest.md
//
// Everything it starts is stopped on exit, on error and on Ctrl-C; the BPF
// run-time stats sysctl is restored.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/checkout"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
)

type options struct {
	rounds      int
	duration    time.Duration
	phases      string
	configs     string
	out         string
	collector   string
	etcdBin     string
	loopRuns    int
	loopCalls   int
	ceilingRate string
	ceilingSecs float64
	total       int
	keep        bool
	cpuProfile  string
	collBase    string
	baseColl    string
	collCalls   int
	collRuns    int
	collExports string
	collProfile string
	switchRuns  int
	switchTurns int
	pingpong    int
	blockRuns   int
	blockWrites int
	syncRuns    int
	syncCalls   int
	gwAgents    int
	gwRate      string
	gwNodes     string
	gwWarmup    time.Duration
	gwWindow    time.Duration
	gwMemory    string
	gwOverlay   string
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 10, "etcd rounds; each runs every configuration of -configs once")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "target length of an untraced benchmark run (sets --total)")
	flag.IntVar(&o.total, "total", 0, "benchmark --total per run (0: calibrate from -duration)")
	flag.StringVar(&o.phases, "phases", "micro,loop,switch,block,sync,ceiling,collcpu,bpfstats,etcd", "comma-separated phases to run; gateway and gateway-metrics (the gateway under load, make bench-gateway) run only when named")
	flag.StringVar(&o.configs, "configs", strings.Join(configs, ""), "configurations of the etcd phase, in the order they alternate (A, the baseline, is always run first)")
	flag.StringVar(&o.out, "out", "bench/results/latest.md", "Markdown report to write")
	flag.StringVar(&o.collector, "collector", "", "otelcol-etcd binary (default: _build/otelcol-etcd/otelcol-etcd, rebuilt with `make collector` if older than the sources)")
	flag.StringVar(&o.etcdBin, "etcd-bin", "", "directory holding etcd and benchmark (default: scripts/install-etcd.sh)")
	flag.IntVar(&o.loopRuns, "loop-runs", 5, "runs per tight-loop variant")
	flag.IntVar(&o.loopCalls, "loop-calls", 1_000_000, "write(2) calls per tight-loop run")
	flag.StringVar(&o.ceilingRate, "ceiling-rates", "100000,200000,300000,400000,500000,600000", "paced rates (writes/s) for the ceiling phase")
	flag.Float64Var(&o.ceilingSecs, "ceiling-secs", 3, "seconds per ceiling step")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.StringVar(&o.baseColl, "base-collector", "", "a second otelcol-etcd binary (say, built from the commit before a change): the etcd phase adds configuration H, F on it")
	flag.StringVar(&o.collBase, "collcpu-base", "", "a second otelcol-etcd binary (say, built from main) that the collcpu phase alternates with -collector")
	flag.IntVar(&o.collCalls, "collcpu-calls", 1_000_000, "write(2) calls (records) per collcpu run")
	flag.IntVar(&o.collRuns, "collcpu-runs", 3, "runs per collcpu variant and binary")
	flag.StringVar(&o.collExports, "collcpu-exporters", "debug,none,snappy,zstd,gzip", "collcpu variants: debug, or otlp_grpc with this compression")
	flag.IntVar(&collcpuBatchSize, "collcpu-batch", 0, "the batch processor's send_batch_size in the collcpu otlp_grpc variants (0: its default, 8192)")
	flag.StringVar(&o.collProfile, "collcpu-profile", "", "directory for a CPU profile of the collector in every collcpu run (contrib's pprof extension: "+
		"give -collector and -collcpu-base binaries built by `make collector-pprof`)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a Go CPU profile of the harness (the in-process receiver of the loop and ceiling phases) to this file")
	flag.StringVar(&comm, "comm", "etcd", "process name to trace: etcd and the matched write loop run under it "+
		"(on a shared machine whose other tracers match \"etcd\", a unique name keeps them off the measurement)")
	flag.IntVar(&o.switchRuns, "switch-runs", 5, "runs per context-switch variant")
	flag.IntVar(&o.switchTurns, "switch-rounds", 200_000, "hand-overs (two context switches each) per context-switch run")
	flag.IntVar(&o.blockRuns, "block-runs", 5, "runs per block-phase variant (untraced, the receiver, bpftrace)")
	flag.IntVar(&o.blockWrites, "block-writes", 20_000, "O_DIRECT writes of 4 KiB per disks'-view run")
	flag.IntVar(&o.syncRuns, "sync-runs", 5, "runs per sync-phase variant (untraced, the receiver twice, bpftrace)")
	flag.IntVar(&o.syncCalls, "sync-calls", 2_000, "writes of 4 KiB, each followed by fdatasync, per sync-phase run")
	flag.IntVar(&o.gwAgents, "gateway-agents", 16, "simulated agents of the gateway phase")
	flag.StringVar(&o.gwRate, "gateway-rate", "2000,4000,6000,8000,22000", "gateway phase: records/s each simulated agent offers, one step (a fresh gateway and backend) per comma-separated rate; 22000 is etcd's every-call rate under benchmark put")
	flag.StringVar(&o.gwNodes, "gateway-nodes", "64,256", "gateway-metrics phase: nodes each simulated agent carries (one collection a node every 10 s), one step per comma-separated count")
	flag.DurationVar(&o.gwWarmup, "gateway-warmup", 10*time.Second, "gateway phase: time before the measured window")
	flag.DurationVar(&o.gwWindow, "gateway-window", 30*time.Second, "gateway phase: the measured window")
	flag.StringVar(&o.gwMemory, "gateway-memory", "", "gateway phase: the gateway's memory limit and GOMEMLIMIT as \"1024Mi,800MiB\" (default: examples/kubernetes/gateway-deployment.yaml's)")
	flag.StringVar(&o.gwOverlay, "gateway-config", "", "gateway phase: a collector config merged over examples/kubernetes/gateway.yaml (a second --config), to try other settings")
	flag.IntVar(&o.pingpong, "pingpong", 0, "internal: be the switch phase's ping-pong child for this many hand-overs")
	flag.Parse()
	if o.pingpong > 0 {
		pingpong(o.pingpong)
		return
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		logf("%v: stopping everything the harness started", s)
		cleanup()
		os.Exit(130)
	}()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			logf("error: %v", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			logf("error: %v", err)
			os.Exit(1)
		}
		onCleanup(func() { pprof.StopCPUProfile(); f.Close() })
	}
	err := runAll(o)
	cleanup()
	if err != nil {
		logf("error: %v", err)
		os.Exit(1)
	}
}

func runAll(o options) error {
	if err := checkOptions(&o); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "etcdbench-")
	if err != nil {
		return err
	}
	if !o.keep {
		onCleanup(func() { _ = os.RemoveAll(work) })
	}
	logf("work directory %s", work)

	h := &harness{o: o, work: work, loop: &loopEnv{work: work},
		rep: &report{opts: o, started: time.Now(), command: strings.Join(os.Args, " "), version: codeVersion(cmp.Or(o.collector, collector.BinaryRel))}}
	if h.has("loop") || h.has("ceiling") || h.has("collcpu") {
		if err := h.buildWriters(); err != nil {
			return err
		}
	}
	for _, phase := range []struct {
		run func() error
		on  bool
	}{
		{h.micro, h.has("micro")},
		{h.loops, h.has("loop")},
		{h.switches, h.has("switch")},
		{h.blocks, h.has("block")},
		{h.syncs, h.has("sync")},
		{h.ceiling, h.has("ceiling")},
		{h.collcpu, h.has("collcpu")},
		{h.etcd, h.has("bpfstats") || h.has("etcd")},
		{h.gateway, h.has("gateway")},
		{h.gatewayMetrics, h.has("gateway-metrics")},
	} {
		if phase.on {
			if err := phase.run(); err != nil {
				return err
			}
		}
	}
	h.rep.finished = time.Now()
	if err := h.rep.write(o.out); err != nil {
		return err
	}
	logf("report written to %s", o.out)
	return nil
}

// checkOptions refuses what cannot run, and narrows the etcd phase's
// configurations to -configs (the baseline always runs).
func checkOptions(o *options) error {
	if len(comm) == 0 || len(comm) > tracer.CommLen-1 || strings.ContainsAny(comm, "/\" ") {
		return fmt.Errorf("-comm %q: use 1 to %d characters, no slash, quote or space", comm, tracer.CommLen-1)
	}
	var picked []string
	for _, c := range configs {
		if c == cfgMetricsBase && o.baseColl == "" {
			continue
		}
		if c == cfgBaseline || strings.Contains(o.configs, c) || c == cfgMetricsBase {
			picked = append(picked, c)
		}
	}
	configs = picked
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the receiver loads BPF programs, bpftrace and strace attach to etcd")
	}
	if _, err := os.Stat("go.mod"); err != nil {
		return fmt.Errorf("run from the module root (where go.mod is)")
	}
	return nil
}

// harness is one run of the bench: its options, work directory and report.
type harness struct {
	o    options
	work string
	rep  *report
	loop *loopEnv
}

func (h *harness) has(phase string) bool { return strings.Contains(","+h.o.phases+",", ","+phase+",") }

// buildWriters builds the write loop twice: as comm (matched) and as "writeloop" (not).
func (h *harness) buildWriters() error {
	logf("building the write loop")
	var err error
	if h.loop.matchedBin, err = etcdwriter.Build(h.work, comm); err != nil {
		return err
	}
	h.loop.unmatchedBin, err = etcdwriter.Build(h.work, "writeloop")
	return err
}

// microPackage holds the record path's Go benchmarks, relative to the repository
// root: they test the receiver's module, not this one.
const microPackage = "./internal/convert"

func (h *harness) micro() error {
	logf("phase micro: Go benchmarks of the decode-and-build path")
	root, err := checkout.Root()
	if err != nil {
		return err
	}
	out, err := run("go", "test", "-C", root, "-run", "^$", "-bench", "BenchmarkLogBuilderAppend|BenchmarkPdataOnly", "-benchmem", "-count", "5", microPackage)
	h.rep.micro = out
	return err
}

func (h *harness) loops() error {
	o := h.o
	logf("phase loop: %d runs x %d variants x 2 targets of %d writes", o.loopRuns, len(loopVariants), o.loopCalls)
	var err error
	if h.rep.loops, err = h.loop.runLoops(o.loopRuns, o.loopCalls); err != nil {
		return err
	}
	logf("phase loop: BPF run-time stats")
	h.rep.loopStats, err = h.loop.loopBPFStats(o.loopCalls / 2)
	return err
}

func (h *harness) switches() error {
	o := h.o
	logf("phase switch: %d runs x %d variants of %d hand-overs", o.switchRuns, len(switchVariants), o.switchTurns)
	var err error
	if h.rep.switches, err = runSwitches(o.switchRuns, o.switchTurns, h.work); err != nil {
		return err
	}
	logf("phase switch: BPF run-time stats")
	h.rep.switchStats, err = switchBPFStats(o.switchTurns, h.work)
	return err
}

func (h *harness) blocks() error {
	o := h.o
	logf("phase block: %d runs x %d variants of %d O_DIRECT writes", o.blockRuns, len(blockVariants), o.blockWrites)
	var err error
	h.rep.blocks, err = h.runBlock(o.blockRuns, o.blockWrites)
	return err
}

func (h *harness) syncs() error {
	o := h.o
	logf("phase sync: %d runs x %d variants of %d writes and fdatasyncs", o.syncRuns, len(syncVariants), o.syncCalls)
	var err error
	h.rep.syncs, err = h.runSyncs(o.syncRuns, o.syncCalls)
	return err
}

func (h *harness) ceiling() error {
	rates, err := parseRates(h.o.ceilingRate)
	if err != nil {
		return fmt.Errorf("-ceiling-rates: %w", err)
	}
	logf("phase ceiling: rates %v, %.0f s each", rates, h.o.ceilingSecs)
	h.rep.ceiling, err = h.loop.runCeiling(rates, h.o.ceilingSecs)
	return err
}

func (h *harness) collcpu() error {
	o := h.o
	variants, err := collVariants(o.collExports)
	if err != nil {
		return err
	}
	bin, err := collector.Binary(context.Background(), o.collector, os.Stderr)
	if err != nil {
		return err
	}
	binaries := []string{bin}
	if o.collBase != "" {
		if _, err := os.Stat(o.collBase); err != nil {
			return fmt.Errorf("-collcpu-base: %w", err)
		}
		binaries = []string{o.collBase, bin}
	}
	if o.collProfile != "" {
		if err := os.MkdirAll(o.collProfile, 0o755); err != nil {
			return fmt.Errorf("-collcpu-profile: %w", err)
		}
	}
	logf("phase collcpu: %d runs x %d variants x %d binaries of %d records", o.collRuns, len(variants), len(binaries), o.collCalls)
	if h.rep.collcpu, err = runCollectorCPU(h.work, h.loop.matchedBin, binaries, variants, o.collRuns, o.collCalls, o.collProfile); err != nil {
		_ = h.rep.write(o.out) // the runs that finished
	}
	return err
}

func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		var r float64
		if _, err := fmt.Sscan(strings.TrimSpace(f), &r); err != nil {
			return nil, fmt.Errorf("rate %q: %w", f, err)
		}
		out = append(out, r)
	}
	return out, nil
}
