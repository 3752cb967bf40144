//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpfobjects"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
)

// The configurations of an etcd round, in the order they alternate.
const (
	cfgBaseline  = "A"
	cfgRecv      = "B"
	cfgRecvPay64 = "C"
	cfgBpftrace  = "D"
	cfgStrace    = "E"
	cfgMetrics   = "F"
	// F without the disk and scheduler views: the yardstick of what they cost.
	cfgMetricsBare = "G"
	// F on another build of the collector (-base-collector): a change's cost beside
	// the commit before it, in the same rounds.
	cfgMetricsBase = "H"
)

// configs are the configurations the etcd phase alternates (-configs picks some;
// H runs only with -base-collector).
var configs = []string{cfgBaseline, cfgRecv, cfgRecvPay64, cfgBpftrace, cfgStrace, cfgMetrics, cfgMetricsBare, cfgMetricsBase}

var configNames = map[string]string{
	cfgBaseline:    "no tracing (baseline)",
	cfgRecv:        "otelcol-etcd, etcdebpf payload off",
	cfgRecvPay64:   "otelcol-etcd, etcdebpf payload_bytes: 64",
	cfgBpftrace:    "bpftrace, 7 syscalls, latency hist per syscall",
	cfgStrace:      "strace -f, 7 syscalls, -o /dev/null",
	cfgMetrics:     "otelcol-etcd, histograms + logs at min_duration: 10ms",
	cfgMetricsBare: "F with scheduler: false, block: false",
	cfgMetricsBase: "F on -base-collector",
}

// isCollector reports whether cfg runs otelcol-etcd.
func isCollector(cfg string) bool {
	return cfg == cfgRecv || cfg == cfgRecvPay64 || cfg == cfgMetrics || cfg == cfgMetricsBare || cfg == cfgMetricsBase
}

// tracedSyscalls are the receiver's seven syscalls.
var tracedSyscalls = []string{"write", "pwrite64", "writev", "pwritev", "fsync", "fdatasync", "sync_file_range"}

// comm is the traced process name: etcd's and the matched write loop's file
// name, the receiver's comm and bpftrace's filter (-comm; default "etcd").
var comm = "etcd"

func bpftraceScript() string {
	var enter, exit []string
	for _, s := range tracedSyscalls {
		enter = append(enter, "tracepoint:syscalls:sys_enter_"+s)
		exit = append(exit, "tracepoint:syscalls:sys_exit_"+s)
	}
	return strings.Join(enter, ",") + ` /comm == "` + comm + `"/ { @start[tid] = nsecs; } ` +
		strings.Join(exit, ",") + ` /@start[tid]/ { @ns[probe] = hist(nsecs - @start[tid]); delete(@start[tid]); }`
}

func straceArgs(pid int) []string {
	return []string{"-f", "-e", "trace=" + strings.Join(tracedSyscalls, ","), "-p", strconv.Itoa(pid), "-o", "/dev/null"}
}

// collectorPipeline is the otelcol-etcd configuration of B, C and F: the
// receiver into the debug exporter at verbosity basic (one log line per batch,
// counted as "records exported"). F, histograms, adds a metrics pipeline from
// the same receiver and keeps log records for calls of 10 ms or more only.
func collectorPipeline(pid int, cfg string) collector.Pipeline {
	p := collector.Pipeline{Comm: comm, PIDs: []int{pid}, Debug: "basic"}
	switch cfg {
	case cfgRecvPay64:
		p.PayloadBytes = 64
	case cfgMetrics, cfgMetricsBare, cfgMetricsBase:
		p.MinDuration, p.CollectionInterval, p.MetricsToDebug = 10*time.Millisecond, 10*time.Second, true
		p.SchedulerOff, p.BlockOff = cfg == cfgMetricsBare, cfg == cfgMetricsBare
	}
	return p
}

// runSample is one benchmark run under one configuration.
type runSample struct {
	Round, Config string
	Puts          int
	Seconds       float64 // benchmark's Total
	ReqPerSec     float64
	P50, P99      float64 // seconds
	EtcdCPU       float64 // seconds during the benchmark
	TracerCPU     float64 // collector, bpftrace or strace, seconds during the benchmark
	TracerIdleKB  int64   // tracer VmRSS before the load
	TracerHWMKB   int64   // tracer VmHWM after the load
	RingbufFull   uint64
	InflightFull  uint64
	Exported      int64   // records the debug exporter reported
	Foreign       int     // syscall tracepoint programs others had loaded at the start
	Load1         float64 // 1-minute load average at the start
	// BPFNs is the run time of the tracer's BPF programs over the benchmark (the
	// receiver's or bpftrace's; kernel.bpf_stats_enabled is on for the phase).
	BPFNs float64
}

func loadAvg() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func (s runSample) cpuPerPut() float64 { return (s.EtcdCPU + s.TracerCPU) / float64(s.Puts) }

var (
	reqRe   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	totalRe = regexp.MustCompile(`Total:\s+([0-9.]+) secs`)
	p99Re   = regexp.MustCompile(`\n\s*99% in ([0-9.]+) secs`)
	p50Re   = regexp.MustCompile(`\n\s*50% in ([0-9.]+) secs`)
	debugRe = regexp.MustCompile(`"log records": (\d+)`)
)

func parseFloat(re *regexp.Regexp, s string) float64 {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

type etcdEnv struct {
	etcdBin, benchBin, collector, work string
	baseCollector                      string // H's binary, "" without -base-collector
}

// benchmarkPut runs etcd's benchmark put against the server with the flags.
func (e *etcdEnv) benchmarkPut(srv *etcdtest.Server, total int) (string, error) {
	ep := strings.TrimPrefix(srv.ClientURL, "http://")
	return run(e.benchBin, "--endpoints="+ep, "--conns=16", "--clients=64",
		"put", "--key-size=8", "--val-size=256", fmt.Sprintf("--total=%d", total))
}

// startEtcd starts a fresh etcd (new data dir).
func (e *etcdEnv) startEtcd(dir string) (*etcdtest.Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return etcdtest.Start(e.etcdBin, dir)
}

func (e *etcdEnv) stopEtcd(srv *etcdtest.Server, dir string) {
	srv.Stop()
	_ = os.RemoveAll(dir)
}

// tracerProc is a running tracer of a round (collector, bpftrace or strace).
type tracerProc struct {
	*subprocess.Process
}

// stop stops the tracer and returns its log.
func (t tracerProc) stop() string {
	_ = t.Stop(10 * time.Second)
	return t.Log()
}

// startTracer starts cfg's tracer of etcdPID, or returns nil for the baseline.
func (e *etcdEnv) startTracer(cfg string, etcdPID int, dir string) (*tracerProc, error) {
	if cfg == cfgBaseline {
		return nil, nil
	}
	if isCollector(cfg) {
		bin := e.collector
		if cfg == cfgMetricsBase {
			bin = e.baseCollector
		}
		col, err := collector.Run(context.Background(), bin, collectorPipeline(etcdPID, cfg), dir, nil)
		if err != nil {
			return nil, err
		}
		return &tracerProc{col.Process}, nil
	}
	if cfg == cfgBpftrace {
		p, err := startBpftrace(filepath.Join(dir, "tracer.log"))
		if err != nil {
			return nil, err
		}
		return &tracerProc{p}, nil
	}
	p, err := startReady(subprocess.Options{LogPath: filepath.Join(dir, "tracer.log"), StopSignal: syscall.SIGINT,
		Path: "strace", Args: straceArgs(etcdPID), Ready: "attached"})
	if err != nil {
		return nil, err
	}
	return &tracerProc{p}, nil
}

// startBpftrace starts configuration D's one-liner and returns once its probes are attached.
func startBpftrace(logPath string) (*subprocess.Process, error) {
	p, err := startReady(subprocess.Options{LogPath: logPath, StopSignal: syscall.SIGINT,
		Path: "bpftrace", Args: []string{"-e", bpftraceScript()}, Ready: "Attaching"})
	if err == nil {
		time.Sleep(500 * time.Millisecond) // "Attaching" is printed before the attach completes
	}
	return p, err
}

// startReady starts a tracer and waits for its ready line.
func startReady(o subprocess.Options) (*subprocess.Process, error) {
	p, err := subprocess.Start(o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		_ = p.Stop(time.Second)
		return nil, err
	}
	return p, nil
}

// oneRun runs one benchmark under cfg on a fresh etcd.
func (e *etcdEnv) oneRun(round int, cfg string, total int) (runSample, error) {
	s := runSample{Round: strconv.Itoa(round), Config: cfg, Puts: total}
	dir := filepath.Join(e.work, fmt.Sprintf("r%02d-%s", round, cfg))
	srv, err := e.startEtcd(dir)
	if err != nil {
		return s, err
	}
	defer e.stopEtcd(srv, dir)
	s.Foreign = foreignPrograms()
	s.Load1 = loadAvg()
	tr, err := e.startTracer(cfg, srv.PID(), dir)
	if err != nil {
		return s, err
	}
	if tr != nil {
		defer tr.stop()
	}
	time.Sleep(500 * time.Millisecond) // let etcd and the tracer settle
	if tr != nil {
		s.TracerIdleKB = statusKB(tr.PID(), "VmRSS")
	}
	etcd0, _ := cpuSeconds(srv.PID())
	var tr0 float64
	var bpf0 time.Duration
	if tr != nil {
		tr0, _ = cpuSeconds(tr.PID())
		bpf0 = bpfRunTime(tr.PID())
	}
	out, err := e.benchmarkPut(srv, total)
	if err != nil {
		return s, err
	}
	etcd1, _ := cpuSeconds(srv.PID())
	if tr != nil {
		s.BPFNs = float64(bpfRunTime(tr.PID()) - bpf0)
	}
	s.EtcdCPU = etcd1 - etcd0
	if tr != nil {
		// Let the receiver drain what the last puts queued before reading its CPU.
		time.Sleep(300 * time.Millisecond)
		tr1, _ := cpuSeconds(tr.PID())
		s.TracerCPU = tr1 - tr0
		s.TracerHWMKB = statusKB(tr.PID(), "VmHWM")
		if isCollector(cfg) {
			s.RingbufFull, s.InflightFull, err = kernelDrops(tr.PID())
			if err != nil {
				logf("  reading drop counters: %v", err)
			}
		}
		trLog := tr.stop()
		for _, m := range debugRe.FindAllStringSubmatch(trLog, -1) {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			s.Exported += n
		}
		if cfg == cfgBpftrace {
			_ = os.WriteFile(filepath.Join(e.work, "bpftrace-last.txt"), []byte(trLog), 0o644)
		}
	}
	s.ReqPerSec = parseFloat(reqRe, out)
	s.Seconds = parseFloat(totalRe, out)
	s.P99 = parseFloat(p99Re, out)
	s.P50 = parseFloat(p50Re, out)
	if s.ReqPerSec == 0 {
		return s, fmt.Errorf("no Requests/sec in the benchmark output:\n%s", tail([]byte(out), 1500))
	}
	return s, nil
}

// calibrate runs one untraced benchmark and returns the --total that lasts about d.
func (e *etcdEnv) calibrate(d time.Duration) (int, error) {
	dir := filepath.Join(e.work, "calibrate")
	srv, err := e.startEtcd(dir)
	if err != nil {
		return 0, err
	}
	defer e.stopEtcd(srv, dir)
	out, err := e.benchmarkPut(srv, 20000)
	if err != nil {
		return 0, err
	}
	rate := parseFloat(reqRe, out)
	if rate == 0 {
		return 0, fmt.Errorf("calibration: no Requests/sec in:\n%s", tail([]byte(out), 1500))
	}
	total := int(rate*d.Seconds()*1.15/1000+1) * 1000 // 15% headroom: baseline runs stay >= d
	logf("calibration: %.0f req/s untraced, --total=%d for runs of >= %v", rate, total, d)
	return total, nil
}

// bpfStatsUnderEtcd runs one benchmark under the collector with BPF run-time
// stats on and returns the per-program deltas and the maps in use.
func (e *etcdEnv) bpfStatsUnderEtcd(cfg string, total int) ([]progDelta, map[string]bpfobjects.Map, runSample, error) {
	dir := filepath.Join(e.work, "bpfstats-"+cfg)
	srv, err := e.startEtcd(dir)
	if err != nil {
		return nil, nil, runSample{}, err
	}
	defer e.stopEtcd(srv, dir)
	tr, err := e.startTracer(cfg, srv.PID(), dir)
	if err != nil {
		return nil, nil, runSample{}, err
	}
	defer tr.stop()
	undo, err := bpfStats()
	if err != nil {
		return nil, nil, runSample{}, err
	}
	defer undo()
	before, err := ownedPrograms(tr.PID())
	if err != nil {
		return nil, nil, runSample{}, err
	}
	out, err := e.benchmarkPut(srv, total)
	if err != nil {
		return nil, nil, runSample{}, err
	}
	after, err := ownedPrograms(tr.PID())
	if err != nil {
		return nil, nil, runSample{}, err
	}
	maps, err := ownedMaps(tr.PID())
	if err != nil {
		return nil, nil, runSample{}, err
	}
	s := runSample{Config: cfg, Puts: total, ReqPerSec: parseFloat(reqRe, out)}
	return snapshotDelta(before, after), maps, s, nil
}

// etcd runs the phases against a real etcd: BPF stats under the receiver, and
// the rounds of configurations.
func (h *harness) etcd() error {
	o := h.o
	env, err := prepareEtcd(o, h.work)
	if err != nil {
		return err
	}
	total := o.total
	if total == 0 {
		if total, err = env.calibrate(o.duration); err != nil {
			return err
		}
	}
	h.rep.total = total
	if h.has("bpfstats") {
		for _, cfg := range []string{cfgRecv, cfgRecvPay64, cfgMetrics} {
			logf("phase bpfstats: etcd benchmark under %s with BPF run-time stats", configNames[cfg])
			d, maps, s, err := env.bpfStatsUnderEtcd(cfg, total)
			if err != nil {
				return err
			}
			h.rep.etcdStats = append(h.rep.etcdStats, etcdStat{cfg: cfg, progs: d, maps: maps, sample: s})
		}
	}
	if !h.has("etcd") {
		return nil
	}
	// The run time of every tracer's programs, in every run: the cost per put measured directly.
	undoStats, err := bpfStats()
	if err != nil {
		return err
	}
	defer undoStats()
	logf("phase etcd: %d rounds of %s, --total=%d", o.rounds, strings.Join(configs, " "), total)
	for round := 1; round <= o.rounds; round++ {
		for _, cfg := range configs {
			s, err := env.oneRun(round, cfg, total)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round, cfg, err)
			}
			h.rep.runs = append(h.rep.runs, s)
			logf("  round %2d %s %-44s %8.0f req/s  p99 %6.1f ms  etcd %.2f s  tracer %.2f s  BPF %4.0f ns/put  %.1f s", round, cfg, configNames[cfg],
				s.ReqPerSec, s.P99*1000, s.EtcdCPU, s.TracerCPU, s.BPFNs/float64(s.Puts), s.Seconds)
		}
		// The calibration run is a fresh etcd's first load and often slower than
		// the rounds: keep every run at least -duration long.
		if a, ok := h.rep.perRound()[strconv.Itoa(round)][cfgBaseline]; ok && o.total == 0 && a.Seconds > 0 && a.Seconds < o.duration.Seconds() {
			total = int(float64(total)*o.duration.Seconds()/a.Seconds*1.15/1000+1) * 1000
			logf("  the baseline run lasted %.1f s < %v: --total=%d from round %d", a.Seconds, o.duration, total, round+1)
		}
		// A report after every round: an interrupted run still leaves one.
		if err := h.rep.write(o.out); err != nil {
			return err
		}
	}
	return nil
}

// prepareEtcd finds or builds etcd, its benchmark tool and the collector.
func prepareEtcd(o options, work string) (*etcdEnv, error) {
	env := &etcdEnv{work: work}
	etcdBin, err := etcdtest.Find(context.Background(), o.etcdBin, os.Stderr)
	if err != nil {
		return nil, err
	}
	env.etcdBin, env.benchBin = etcdBin, filepath.Join(filepath.Dir(etcdBin), "benchmark")
	if _, err := os.Stat(env.benchBin); err != nil {
		return nil, fmt.Errorf("etcd's benchmark tool beside etcd: %w (scripts/install-etcd.sh builds both)", err)
	}
	if comm != "etcd" { // the process name is the binary's file name
		renamed := filepath.Join(work, "bin", comm)
		_ = os.MkdirAll(filepath.Dir(renamed), 0o755)
		if _, err := run("cp", env.etcdBin, renamed); err != nil {
			return nil, err
		}
		env.etcdBin = renamed
	}
	bin, err := collector.Binary(context.Background(), o.collector, os.Stderr)
	if err != nil {
		return nil, err
	}
	// A private copy: a rebuild of _build/ during the run must not change the binary under test.
	env.collector = filepath.Join(work, "otelcol-etcd")
	if _, err := run("cp", bin, env.collector); err != nil {
		return nil, err
	}
	if o.baseColl != "" {
		env.baseCollector = filepath.Join(work, "otelcol-etcd-base")
		if _, err := run("cp", o.baseColl, env.baseCollector); err != nil {
			return nil, fmt.Errorf("-base-collector: %w", err)
		}
	}
	for _, tool := range []string{"bpftrace", "strace"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not installed (apt-get install -y %s)", tool, tool)
		}
	}
	return env, nil
}
