//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/convert"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/checkout"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/recordtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/victoria"
)

// The gateway phases: -gateway-agents simulated agents stream the receiver's
// records (gateway) or its collections' points (gateway-metrics, in
// gatewaymetrics.go) over OTLP/gRPC into one gateway (examples/kubernetes/gateway.yaml as
// shipped, run by the built collector with gateway-deployment.yaml's memory
// limit and GOMEMLIMIT), which writes them to VictoriaLogs (or VictoriaMetrics). Each agent is the
// agents' exporter (otlp_grpc with examples/otlp.yaml's settings: zstd, its
// sending queue and retries, its own logger and counters) fed batches of the
// agent's batch size, built by the receiver's own conversion from records
// shaped like a busy etcd's. Each rate of -gateway-rate is one step with a
// fresh gateway and backend. What is measured: the gateway's CPU per record
// and memory (/proc), its own counters of refused and failed records, the
// agents' counters, and what VictoriaLogs holds per agent against what each
// agent's exporter had acknowledged.

// agentBatch is the agent examples' batch processor's send_batch_size.
const agentBatch = 4096

// gatewayDrainLimit bounds the wait, after the agents stop offering, for
// their queues and the gateway's to empty.
const gatewayDrainLimit = 2 * time.Minute

// everyCallRate is etcd's every-call record rate under `benchmark put`
// (the field notes' ~22k records/s per member): the per-node yardstick.
const everyCallRate = 22000

// A gatewaySignal is what a phase streams through the gateway, and where the
// gateway writes it.
type gatewaySignal struct {
	phase   string // the agents' configuration, the report's section: "every call", "slow calls + histograms"
	items   string // what is counted: "records", "points"
	counter string // the collector's counters' suffix: "log_records", "metric_points"
	backend victoria.Product
	// backendEnv is gateway.yaml's variable for the backend's URL.
	backendEnv string
	// agents starts n agents' exporters, sending to gateway rate items/s each.
	agents func(ctx context.Context, root, gateway string, n int, rate float64, logger *zap.Logger, meters *sdkmetric.MeterProvider) ([]*simAgent, error)
	// stored is what the backend holds, in items, per agent's node.
	stored func(ctx context.Context, backend *victoria.Server) (map[string]int64, error)
	// perNode is what one node sends a second, in items, and how that was said:
	// the yardstick of nodes a core.
	perNode     float64
	perNodeSays string
	batchSays   string // what an agent's batch is, for the report
}

// c is the collector's counter prefix_<this signal's items>.
func (sig gatewaySignal) c(prefix string) string { return prefix + "_" + sig.counter }

var recordsSignal = gatewaySignal{
	phase: "every call", items: "records", counter: "log_records",
	backend: victoria.Logs, backendEnv: "VICTORIALOGS_URL",
	agents: logsAgents,
	stored: func(ctx context.Context, vl *victoria.Server) (map[string]int64, error) {
		rows, err := vl.LogsQL(ctx, `* | stats by (host.name) count() n`)
		if err != nil {
			return nil, err
		}
		stored := map[string]int64{}
		for _, row := range rows {
			stored[row["host.name"]], _ = strconv.ParseInt(row["n"], 10, 64)
		}
		return stored, nil
	},
	perNode:     everyCallRate,
	perNodeSays: fmt.Sprintf("%d records/s a node, etcd's every-call rate under `benchmark put`", everyCallRate),
	batchSays:   fmt.Sprintf("batches of %d records", agentBatch),
}

type gatewayStep struct {
	ratePerAgent float64
	accepted     float64 // items the gateway's receiver accepted in the window
	gatewayCPU   float64 // CPU seconds in the window: the gateway, its backend, this harness (the agents)
	backendCPU   float64
	ownCPU       float64
	rssKB        []int64 // the gateway's VmRSS, once a second in the window
	hwmKB        int64
	heapMax      float64            // the gateway's own otelcol_process_runtime_heap_alloc_bytes, its maximum in the window
	queueMax     float64            // the gateway's exporter queue (batches), its maximum in the window
	load1        float64            // the machine's 1-minute load average as the window starts
	agentQueue   int64              // the agents' queued batches at the window's end, all agents
	gw           map[string]float64 // the gateway's counters after the drain
	agents       map[string]float64 // the agents' exporters' counters after the drain
	taken        []int64            // per agent: items its exporter's Consume took
	refused      []int64            // and refused (its sending queue full)
	sent         map[string]float64 // per agent's node: items its exporter had acknowledged
	stored       map[string]int64   // the backend, per agent's node
	drain        time.Duration
	drained      bool
	gatewayDied  string // why the gateway was gone after the step, if it was
}

type gatewaySample struct {
	signal         gatewaySignal
	agents         int
	warmup, window time.Duration
	memLimit       string // the Deployment's limits.memory and GOMEMLIMIT the gateway ran with
	goMemLimit     string
	overlay        string // -gateway-config, merged over gateway.yaml
	steps          []gatewayStep
}

func (h *harness) gateway() error {
	rates, err := parseRates(h.o.gwRate)
	if err != nil {
		return fmt.Errorf("-gateway-rate: %w", err)
	}
	return h.runGateway(recordsSignal, rates)
}

// runGateway runs one step a rate (items/s an agent) of sig.
func (h *harness) runGateway(sig gatewaySignal, rates []float64) error {
	o := h.o
	ctx := context.Background()
	bin, err := collector.Binary(ctx, o.collector, os.Stderr)
	if err != nil {
		return err
	}
	backendBin, err := victoria.Install(ctx, sig.backend, os.Stderr)
	if err != nil {
		return err
	}
	root, err := checkout.Root()
	if err != nil {
		return err
	}
	limits, err := gatewayLimits(root)
	if err != nil {
		return err
	}
	if o.gwMemory != "" {
		memory, goMemLimit, _ := strings.Cut(o.gwMemory, ",")
		if limits, err = parseLimits(memory, goMemLimit); err != nil {
			return fmt.Errorf("-gateway-memory: %w", err)
		}
	}
	if o.gwOverlay != "" {
		if _, err := os.Stat(o.gwOverlay); err != nil {
			return fmt.Errorf("-gateway-config: %w", err)
		}
		o.gwOverlay, _ = filepath.Abs(o.gwOverlay)
	}
	s := &gatewaySample{signal: sig, agents: o.gwAgents, warmup: o.gwWarmup, window: o.gwWindow, memLimit: limits.memory, goMemLimit: limits.goMemLimit, overlay: o.gwOverlay}
	h.rep.gateways = append(h.rep.gateways, s)
	for i, rate := range rates {
		logf("gateway phase (%s), step %d of %d: %d agents x %.0f %s/s into one gateway, %s warm-up, %s measured",
			sig.phase, i+1, len(rates), o.gwAgents, rate, sig.items, o.gwWarmup, o.gwWindow)
		dir := filepath.Join(h.work, fmt.Sprintf("gateway-%s-%d", sig.counter, i+1))
		env := gatewayEnv{signal: sig, bin: bin, backendBin: backendBin, root: root, dir: dir, limits: limits, overlay: o.gwOverlay}
		step, err := gatewayRun(ctx, env, o.gwAgents, rate, o.gwWarmup, o.gwWindow)
		if err != nil {
			return fmt.Errorf("gateway step at %.0f %s/s an agent (logs in %s): %w", rate, sig.items, dir, err)
		}
		s.steps = append(s.steps, *step)
		logf("gateway phase: %.0f of %.0f %s/s accepted, %.0f refused, %.2f us gateway CPU per item, RSS max %d MiB, heap max %.0f MiB; agents acknowledged %.0f, %s holds %d",
			step.accepted/o.gwWindow.Seconds(), rate*float64(o.gwAgents), sig.items, step.gw[sig.c("otelcol_receiver_refused")], 1e6*step.gatewayCPU/step.accepted, maxKB(step.rssKB)>>10,
			step.heapMax/(1<<20), step.agents[sig.c("otelcol_exporter_sent")], sig.backend.Name, sum(mapValues(step.stored)))
	}
	return nil
}

type gatewayEnv struct {
	signal                     gatewaySignal
	bin, backendBin, root, dir string
	limits                     deploymentLimits
	overlay                    string
}

// gatewayRun is one step: a fresh backend and gateway, agents offering
// rate items/s each for warmup+window, then the drain and the count.
func gatewayRun(ctx context.Context, env gatewayEnv, nAgents int, rate float64, warmup, window time.Duration) (*gatewayStep, error) {
	dir, sig := env.dir, env.signal
	if err := os.MkdirAll(filepath.Join(dir, "backend"), 0o755); err != nil {
		return nil, err
	}
	backend, err := victoria.Start(ctx, sig.backend, env.backendBin, filepath.Join(dir, "backend"))
	if err != nil {
		return nil, err
	}
	defer backend.Stop()

	gw, telemetry, cg, err := startGateway(ctx, env, backend.URL)
	if err != nil {
		return nil, err
	}
	defer cg.remove()
	defer func() { _ = gw.Stop(30 * time.Second) }()

	logger, err := fileLogger(filepath.Join(dir, "agents.log"))
	if err != nil {
		return nil, err
	}
	defer func() { _ = logger.Sync() }()
	reader := sdkmetric.NewManualReader()
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = meters.Shutdown(ctx) }()
	agents, err := sig.agents(ctx, env.root, gw.addr, nAgents, rate, logger, meters)
	if err != nil {
		return nil, err
	}
	shutdownAgents := func() {
		for _, a := range agents {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			if err := a.exp.Shutdown(sctx); err != nil {
				logf("agent %s: shutdown: %v", a.node, err)
			}
			cancel()
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Go(func() { a.stream(ctx, rate, stop) })
	}
	stopOffering := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopOffering()
	time.Sleep(warmup)

	step := &gatewayStep{ratePerAgent: rate}
	exited := func() bool {
		select {
		case <-gw.Exited():
			return true
		default:
			return false
		}
	}
	pid := gw.PID()
	cpu0, err1 := cpuSeconds(pid)
	backend0, err2 := cpuSeconds(backend.PID())
	own0 := ownCPU()
	c0, err3 := scrapeCounters(telemetry)
	step.load1 = loadAvg()
	windowEnd := time.Now().Add(window)
	for time.Now().Before(windowEnd) && !exited() {
		time.Sleep(time.Second)
		step.rssKB = append(step.rssKB, statusKB(pid, "VmRSS"))
		if c, err := scrapeCounters(telemetry); err == nil {
			step.gw = c // the last the gateway said, should it die
			step.heapMax = max(step.heapMax, c["otelcol_process_runtime_heap_alloc_bytes"])
			step.queueMax = max(step.queueMax, c["otelcol_exporter_queue_size"])
		}
	}
	cpu1, err4 := cpuSeconds(pid)
	backend1, err5 := cpuSeconds(backend.PID())
	own1 := ownCPU()
	c1, err6 := scrapeCounters(telemetry)
	step.hwmKB = statusKB(pid, "VmHWM")
	stopOffering()
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil && !exited() {
		shutdownAgents()
		return nil, fmt.Errorf("%w\n%s", err, gw.Tail())
	}
	if !exited() {
		step.gatewayCPU, step.backendCPU, step.ownCPU = cpu1-cpu0, backend1-backend0, own1-own0
		step.accepted = c1[sig.c("otelcol_receiver_accepted")] - c0[sig.c("otelcol_receiver_accepted")]
	}
	if m, err := agentCounters(ctx, reader, sig); err == nil {
		step.agentQueue = int64(m.total["otelcol_exporter_queue_size"])
	}

	// The drain: the agents' queues into the gateway, the gateway's into
	// the backend, until every item an agent took is acknowledged or
	// dropped, and the gateway has sent or dropped all it accepted.
	logf("gateway phase: draining the agents' and the gateway's queues (at most %s)", gatewayDrainLimit)
	drainStart := time.Now()
	var taken int64
	for _, a := range agents {
		taken += a.taken.Load()
	}
	for !exited() {
		m, err1 := agentCounters(ctx, reader, sig)
		c, err2 := scrapeCounters(telemetry)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		step.gw = c
		agentsDone := m.total[sig.c("otelcol_exporter_sent")]+m.total[sig.c("otelcol_exporter_send_failed")] >= float64(taken)
		gwOut := c[sig.c("otelcol_exporter_sent")] + c[sig.c("otelcol_exporter_send_failed")] + c[sig.c("otelcol_exporter_enqueue_failed")]
		if agentsDone && gwOut >= c[sig.c("otelcol_receiver_accepted")] && c["otelcol_exporter_queue_size"] == 0 {
			step.drained = true
			break
		}
		if time.Since(drainStart) > gatewayDrainLimit {
			break
		}
		time.Sleep(time.Second)
	}
	step.drain = time.Since(drainStart)
	if exited() {
		// Nothing more can be delivered: the agents' retries would only wait
		// out their max_elapsed_time.
		step.gatewayDied = "the gateway exited: " + cg.oomReport()
		logf("gateway phase: %s", step.gatewayDied)
	}
	shutdownAgents()
	for _, a := range agents {
		step.taken = append(step.taken, a.taken.Load())
		step.refused = append(step.refused, a.refused.Load())
	}
	m, err := agentCounters(ctx, reader, sig)
	if err != nil {
		return nil, err
	}
	step.agents, step.sent = m.total, m.sentByNode
	if c, err := scrapeCounters(telemetry); err == nil {
		step.gw = c
	}
	// A gateway that did not drain sends what it still holds as it stops:
	// the backend is counted after that, not while it is still arriving.
	if err := gw.Stop(30 * time.Second); err != nil {
		logf("gateway: stop: %v", err)
	}

	if err := backend.Flush(ctx); err != nil {
		return nil, err
	}
	if step.stored, err = sig.stored(ctx, backend); err != nil {
		return nil, err
	}
	return step, nil
}

// deploymentLimits are the gateway container's limits.memory and GOMEMLIMIT
// in examples/kubernetes/gateway-deployment.yaml: the gateway's
// memory_limiter takes its limits from the cgroup's, so a gateway run without
// them would let its queues grow to 80% of this machine's memory.
type deploymentLimits struct {
	memory     string // "512Mi"
	bytes      int64
	goMemLimit string
}

func gatewayLimits(root string) (deploymentLimits, error) {
	path := filepath.Join(root, "examples", "kubernetes", "gateway-deployment.yaml")
	f, err := os.Open(path)
	if err != nil {
		return deploymentLimits{}, err
	}
	defer f.Close()
	type container struct {
		Env []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		Resources struct {
			Limits struct {
				Memory string `yaml:"memory"`
			} `yaml:"limits"`
		} `yaml:"resources"`
	}
	dec := yaml.NewDecoder(f)
	for {
		var doc struct {
			Kind string `yaml:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []container `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); err != nil {
			return deploymentLimits{}, fmt.Errorf("%s: no Deployment with a container's limits.memory: %w", path, err)
		}
		if doc.Kind != "Deployment" || len(doc.Spec.Template.Spec.Containers) == 0 {
			continue
		}
		c := doc.Spec.Template.Spec.Containers[0]
		var goMemLimit string
		for _, e := range c.Env {
			if e.Name == "GOMEMLIMIT" {
				goMemLimit = e.Value
			}
		}
		l, err := parseLimits(c.Resources.Limits.Memory, goMemLimit)
		if err != nil {
			return deploymentLimits{}, fmt.Errorf("%s: %w", path, err)
		}
		return l, nil
	}
}

func parseLimits(memory, goMemLimit string) (deploymentLimits, error) {
	mi, ok := strings.CutSuffix(memory, "Mi")
	n, err := strconv.ParseInt(mi, 10, 64)
	if !ok || err != nil || n <= 0 {
		return deploymentLimits{}, fmt.Errorf("limits.memory %q: the bench reads a whole number of Mi, such as 512Mi", memory)
	}
	return deploymentLimits{memory: memory, bytes: n << 20, goMemLimit: goMemLimit}, nil
}

// gatewayProcess is the running gateway and the address its OTLP/gRPC receiver listens on.
type gatewayProcess struct {
	*collector.Collector
	addr string
}

// startGateway runs gateway.yaml as shipped (plus its own metrics on a
// loopback port, a second --config merged over it) inside a memory cgroup of
// the Deployment's limit, with its GOMEMLIMIT.
func startGateway(ctx context.Context, env gatewayEnv, backendURL string) (*gatewayProcess, string, *memCgroup, error) {
	ports, err := subprocess.FreePorts(3)
	if err != nil {
		return nil, "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	telemetry := fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1])
	overlay := filepath.Join(env.dir, "telemetry.yaml")
	if err := os.WriteFile(overlay, fmt.Appendf(nil, `service:
  telemetry:
    metrics:
      level: normal
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %d
`, ports[1]), 0o600); err != nil {
		return nil, "", nil, err
	}
	args := []string{"--config", overlay}
	if env.overlay != "" {
		args = append(args, "--config", env.overlay)
	}
	cg, err := newMemCgroup(fmt.Sprintf("etcdbench-gateway-%d", os.Getpid()), env.limits.bytes)
	if err != nil {
		return nil, "", nil, err
	}
	// The wrapper joins the cgroup before it execs the collector, whose
	// memory_limiter reads the cgroup's limit once, at start.
	wrapper := filepath.Join(env.dir, "gateway.sh")
	if err := os.WriteFile(wrapper, fmt.Appendf(nil, "#!/bin/sh\necho $$ > %s/cgroup.procs || exit 1\nexec %s \"$@\"\n", cg.path, env.bin), 0o755); err != nil {
		cg.remove()
		return nil, "", nil, err
	}
	gw, err := collector.Start(collector.Options{
		Binary:     wrapper,
		ConfigPath: filepath.Join(env.root, "examples", "kubernetes", "gateway.yaml"),
		LogPath:    filepath.Join(env.dir, "gateway.log"),
		Env: []string{"GATEWAY_GRPC_ENDPOINT=" + addr, "GOMEMLIMIT=" + env.limits.goMemLimit,
			// The other signal's backend: nothing is sent there, and nothing listens.
			fmt.Sprintf("VICTORIALOGS_URL=http://127.0.0.1:%d", ports[2]),
			fmt.Sprintf("VICTORIAMETRICS_URL=http://127.0.0.1:%d", ports[2]),
			env.signal.backendEnv + "=" + backendURL},
		Args: args,
	})
	if err != nil {
		cg.remove()
		return nil, "", nil, err
	}
	// Stopped at exit before its cgroup is removed (the undos run last
	// first): a group with a process in it cannot be.
	onCleanup(func() { _ = gw.Stop(10 * time.Second) })
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = gw.WaitReady(readyCtx)
	cancel()
	if err != nil {
		_ = gw.Stop(10 * time.Second)
		cg.remove()
		return nil, "", nil, fmt.Errorf("gateway: %w\n%s", err, gw.Tail())
	}
	return &gatewayProcess{Collector: gw, addr: addr}, telemetry, cg, nil
}

// memCgroup is a cgroup v1 memory group (this machine's memory controller is
// on v1; the collector's memory_limiter reads v1 and v2 limits alike).
type memCgroup struct{ path string }

func newMemCgroup(name string, limit int64) (*memCgroup, error) {
	cg := &memCgroup{path: filepath.Join("/sys/fs/cgroup/memory", name)}
	if err := os.Mkdir(cg.path, 0o755); err != nil {
		return nil, fmt.Errorf("the gateway's memory cgroup: %w", err)
	}
	onCleanup(cg.remove)
	if err := os.WriteFile(filepath.Join(cg.path, "memory.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		cg.remove()
		return nil, fmt.Errorf("the gateway's memory limit: %w", err)
	}
	return cg, nil
}

// oomReport is the group's oom_kill count and peak usage.
func (cg *memCgroup) oomReport() string {
	b, _ := os.ReadFile(filepath.Join(cg.path, "memory.oom_control"))
	peak, _ := os.ReadFile(filepath.Join(cg.path, "memory.max_usage_in_bytes"))
	return strings.Join(strings.Fields(string(b)), " ") + ", max_usage_in_bytes " + strings.TrimSpace(string(peak))
}

// remove deletes the group once its processes are gone (idempotent).
func (cg *memCgroup) remove() {
	for range 50 {
		err := os.Remove(cg.path)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// simAgent is one agent's exporter, handed a batch of batchItems items at the
// rate a step offers.
type simAgent struct {
	node       string // its exporter's name, and the key of what the backend holds from it
	exp        component.Component
	send       func(ctx context.Context, i int) (items int, err error) // hands the exporter the i-th batch
	batchItems int
	taken      atomic.Int64
	refused    atomic.Int64
}

// agentNode is the i-th agent's name: its exporter's, and its records' host.name.
func agentNode(i int) string { return fmt.Sprintf("node-%02d", i+1) }

// agentExporters creates and starts n of examples/otlp.yaml's otlp_grpc
// exporters, each named for its node, with create's signal.
func agentExporters[E component.Component](ctx context.Context, root, gateway string, n int, logger *zap.Logger, meters *sdkmetric.MeterProvider,
	create func(context.Context, exporter.Settings, component.Config) (E, error)) ([]E, error) {
	exporterConf, err := agentExporterConfig(root, gateway)
	if err != nil {
		return nil, err
	}
	f := otlpexporter.NewFactory()
	var out []E
	for i := range n {
		node := agentNode(i)
		cfg := f.CreateDefaultConfig()
		if err := exporterConf.Unmarshal(cfg); err != nil {
			return nil, fmt.Errorf("examples/otlp.yaml's otlp_grpc exporter: %w", err)
		}
		// One exporter ID per agent: its counters carry exporter=otlp_grpc/<node>.
		set := exportertest.NewNopSettings(f.Type())
		set.ID = component.NewIDWithName(f.Type(), node)
		set.Logger = logger.With(zap.String("agent", node))
		set.MeterProvider = meters
		exp, err := create(ctx, set, cfg)
		if err != nil {
			return nil, err
		}
		if err := exp.Start(ctx, componenttest.NewNopHost()); err != nil {
			return nil, err
		}
		out = append(out, exp)
	}
	return out, nil
}

// logsAgents are the every-call agents: batches of agentBatch records.
func logsAgents(ctx context.Context, root, gateway string, n int, _ float64, logger *zap.Logger, meters *sdkmetric.MeterProvider) ([]*simAgent, error) {
	exps, err := agentExporters(ctx, root, gateway, n, logger, meters, otlpexporter.NewFactory().CreateLogs)
	if err != nil {
		return nil, err
	}
	var agents []*simAgent
	for i, exp := range exps {
		node := agentNode(i)
		batches := []plog.Logs{etcdBatch(node, uint32(4000+i)), etcdBatch(node, uint32(4000+i))}
		agents = append(agents, &simAgent{node: node, exp: exp, batchItems: agentBatch,
			send: func(ctx context.Context, k int) (int, error) {
				b := batches[k%len(batches)]
				return b.LogRecordCount(), exp.ConsumeLogs(ctx, b)
			}})
		if i == 0 {
			size := (&plog.ProtoMarshaler{}).LogsSize(batches[0])
			logf("gateway phase: a batch of %d records is %d bytes of OTLP protobuf (%.0f a record), %d bytes of heap once decoded",
				agentBatch, size, float64(size)/agentBatch, decodedHeap(batches[0]))
		}
	}
	return agents, nil
}

// agentExporterConfig is examples/otlp.yaml's otlp_grpc exporter, sending to gateway.
func agentExporterConfig(root, gateway string) (*confmap.Conf, error) {
	data, err := os.ReadFile(filepath.Join(root, "examples", "otlp.yaml"))
	if err != nil {
		return nil, err
	}
	var doc struct {
		Exporters map[string]map[string]any `yaml:"exporters"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	m, ok := doc.Exporters["otlp_grpc"]
	if !ok {
		return nil, fmt.Errorf("examples/otlp.yaml has no otlp_grpc exporter")
	}
	m["endpoint"] = gateway
	m["tls"] = map[string]any{"insecure": true}
	return confmap.NewFromStringMap(m), nil
}

// stream hands the exporter a batch every batchItems/rate seconds until stop,
// as the agent's pipeline would at that rate.
func (a *simAgent) stream(ctx context.Context, rate float64, stop <-chan struct{}) {
	t := time.NewTicker(time.Duration(float64(time.Second) * float64(a.batchItems) / rate))
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if n, err := a.send(ctx, i); err != nil {
			a.refused.Add(int64(n))
		} else {
			a.taken.Add(int64(n))
		}
	}
}

// agentTelemetry is the agents' exporters' own counters and gauges, summed
// over the agents, and the items each one's exporter had acknowledged.
type agentTelemetry struct {
	total      map[string]float64
	sentByNode map[string]float64
}

func agentCounters(ctx context.Context, reader *sdkmetric.ManualReader, sig gatewaySignal) (agentTelemetry, error) {
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		return agentTelemetry{}, fmt.Errorf("the agents' telemetry: %w", err)
	}
	t := agentTelemetry{total: map[string]float64{}, sentByNode: map[string]float64{}}
	add := func(name string, attrs attribute.Set, v float64) {
		t.total[name] += v
		if name != sig.c("otelcol_exporter_sent") {
			return
		}
		if id, ok := attrs.Value("exporter"); ok {
			_, node, _ := strings.Cut(id.AsString(), "/")
			t.sentByNode[node] += v
		}
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					add(m.Name, p.Attributes, float64(p.Value))
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					add(m.Name, p.Attributes, float64(p.Value))
				}
			}
		}
	}
	return t, nil
}

// etcdBatch is agentBatch records of one etcd under `benchmark put`, as the
// receiver converts them (every call, decoded, scheduler and disk fields), on a
// Resource naming node as the agents' resource_detection does. The mix is the
// demo's measured one: ~69% socket writes, ~28% WAL writes and fdatasyncs, ~2%
// bbolt. Read-only: the agents' exporters send it again and again.
func etcdBatch(node string, pid uint32) plog.Logs {
	lb := convert.NewLogBuilder(true, "github.com/etcdebpf/etcdebpfreceiver", "bench", agentBatch)
	var mono unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	start := uint64(mono.Nano())
	observed := pcommon.NewTimestampFromTime(time.Now())
	for i := range agentBatch {
		ev := bpf.MonitorEvent{
			Version: bpf.RecordVersion, Pid: pid, Tid: pid + 10 + uint32(i%8), CgroupId: 1234, Offset: -1,
			StartNs: start + uint64(i)*45_000, Measured: uint32(bpf.MonitorRecordMeasuredMEASURED_SCHED),
			BlockedNs: 3_000, RunnableNs: 1_000,
		}
		copy(ev.Comm[:], recordtest.Chars("etcd", len(ev.Comm)))
		switch k := i % 100; {
		case k < 69: // a gRPC or peer socket write
			ev.Type, ev.FdKind, ev.Fd = uint16(tracer.SyscallWrite), uint8(tracer.FDKindSocket), 30+int32(k%16)
			ev.Count, ev.Ret, ev.DurationNs = 180, 180, 9_000
		case k < 84: // a WAL append
			ev.Type, ev.FdKind, ev.Fd, ev.Inode = uint16(tracer.SyscallWrite), uint8(tracer.FDKindFile), 12, 3670031
			ev.Count, ev.Ret, ev.DurationNs = 4096, 4096, 14_000
			copy(ev.FileName[:], recordtest.Chars("0000000000000000-0000000000000000.wal", len(ev.FileName)))
		case k < 98: // its sync
			ev.Type, ev.FdKind, ev.Fd, ev.Inode = uint16(tracer.SyscallFdatasync), uint8(tracer.FDKindFile), 12, 3670031
			ev.DurationNs, ev.Measured = 600_000, ev.Measured|uint32(bpf.MonitorRecordMeasuredMEASURED_DISK)
			ev.Disk, ev.DiskRequests, ev.DiskDeviceNs, ev.DiskOwnBytes = 254<<20, 2, 450_000, 8192
			copy(ev.FileName[:], recordtest.Chars("0000000000000000-0000000000000000.wal", len(ev.FileName)))
		case k < 99: // a bbolt page
			ev.Type, ev.FdKind, ev.Fd, ev.Inode = uint16(tracer.SyscallPwrite64), uint8(tracer.FDKindFile), 9, 3670020
			ev.Count, ev.Ret, ev.Offset, ev.DurationNs = 4096, 4096, 1<<20, 11_000
			copy(ev.FileName[:], recordtest.Chars("db", len(ev.FileName)))
		default: // bbolt's commit sync
			ev.Type, ev.FdKind, ev.Fd, ev.Inode = uint16(tracer.SyscallFdatasync), uint8(tracer.FDKindFile), 9, 3670020
			ev.DurationNs = 900_000
			copy(ev.FileName[:], recordtest.Chars("db", len(ev.FileName)))
		}
		if err := lb.Append(recordtest.Encode(ev, nil), observed); err != nil {
			panic(err) // a record laid out by recordtest always decodes
		}
	}
	logs := lb.Take(agentBatch)
	for _, rl := range logs.ResourceLogs().All() {
		rl.Resource().Attributes().PutStr("host.name", node)
		rl.Resource().Attributes().PutStr("k8s.node.name", node)
		rl.Resource().Attributes().PutStr("os.type", "linux")
	}
	logs.MarkReadOnly()
	return logs
}

// scrapeCounters reads the collector's own metrics in the Prometheus text
// format, summed over their labels, by name without the _total suffix.
func scrapeCounters(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, fmt.Errorf("the collector's telemetry: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the collector's telemetry at %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "otelcol_") {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		} else {
			name, rest, _ = strings.Cut(line, " ")
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		out[strings.TrimSuffix(name, "_total")] += v
	}
	return out, sc.Err()
}

func fileLogger(path string) (*zap.Logger, error) {
	cfg := zap.NewProductionConfig()
	cfg.OutputPaths = []string{path}
	cfg.Sampling = nil // every failed export, not the first few a second
	return cfg.Build()
}

func ownCPU() float64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func sum(xs []int64) int64 {
	var n int64
	for _, x := range xs {
		n += x
	}
	return n
}

func mapValues(m map[string]int64) []int64 {
	var out []int64
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// keptUp says whether the gateway took everything offered, refused and lost
// nothing, and the backend holds exactly what each agent's exporter had
// acknowledged.
func (st gatewayStep) keptUp(sig gatewaySignal, agents int, window time.Duration) bool {
	offered := st.ratePerAgent * float64(agents) * window.Seconds()
	lost := st.gw[sig.c("otelcol_receiver_refused")] + st.gw[sig.c("otelcol_exporter_send_failed")] +
		st.gw[sig.c("otelcol_exporter_enqueue_failed")] + st.agents[sig.c("otelcol_exporter_send_failed")] +
		float64(sum(st.refused))
	if !st.drained || st.gatewayDied != "" || lost > 0 || st.accepted < 0.98*offered {
		return false
	}
	for i := range agents {
		node := agentNode(i)
		if float64(st.stored[node]) != st.sent[node] || float64(st.taken[i]) != st.sent[node] {
			return false
		}
	}
	return true
}

func (r *report) writeGateway(w func(string, ...any)) {
	for _, s := range r.gateways {
		s.write(w)
	}
}

func (s *gatewaySample) write(w func(string, ...any)) {
	if len(s.steps) == 0 {
		return
	}
	sig, items := s.signal, s.signal.items
	w("## The gateway under load: %s\n\n", sig.phase)
	w("%d simulated agents in this process (each the agents' `otlp_grpc` exporter with `examples/otlp.yaml`'s settings, its own gRPC connection, sending queue, retries and counters; "+
		"%s, built by the receiver's conversion) stream into one gateway: the built collector running `examples/kubernetes/gateway.yaml` as shipped, "+
		"in a memory cgroup of %s with `GOMEMLIMIT=%s` (`gateway-deployment.yaml`'s `limits.memory` and `GOMEMLIMIT` unless `-gateway-memory` says otherwise), writing to %s on loopback. "+
		"Each step is a fresh gateway and backend: %s warm-up, %s measured, then the agents stop offering and the queues drain (at most %s). "+
		"CPU is each process's own (utime+stime from /proc) over the measured window.\n\n",
		s.agents, sig.batchSays, s.memLimit, s.goMemLimit, sig.backend.Name, s.warmup, s.window, gatewayDrainLimit)
	if s.overlay != "" {
		w("Merged over `gateway.yaml` (`-gateway-config`):\n\n```yaml\n%s```\n\n", readOr(s.overlay))
	}
	w("| %s/s offered (per agent) | nodes | accepted by the gateway | gateway cores | **gateway µs/%s** | gateway RSS median / max MiB | gateway heap max MiB (its own `heap_alloc`) | gateway's exporter queue max (batches) | %s cores | agents' (harness) cores | agents' queued batches at the end | load average (1 min) at the window's start |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
		items, strings.TrimSuffix(items, "s"), sig.backend.Name)
	for _, st := range s.steps {
		offered := st.ratePerAgent * float64(s.agents)
		nodes := offered / sig.perNode
		if st.accepted == 0 {
			w("| %.0f (%.0f) | %.0f | — (%s) | | | max %d | | | | | %d | %.2f |\n", offered, st.ratePerAgent, nodes, st.gatewayDied, maxKB(st.rssKB)>>10, st.agentQueue, st.load1)
			continue
		}
		rss := slices.Clone(st.rssKB)
		slices.Sort(rss)
		sec := s.window.Seconds()
		w("| %.0f (%.0f) | %.0f | %.0f (%.0f%%) | %.2f | **%.2f** | %d / %d | %.0f | %.0f | %.2f | %.2f | %d | %.2f |\n",
			offered, st.ratePerAgent, nodes, st.accepted/sec, 100*st.accepted/sec/offered,
			st.gatewayCPU/sec, 1e6*st.gatewayCPU/st.accepted, rss[len(rss)/2]>>10, rss[len(rss)-1]>>10,
			st.heapMax/(1<<20), st.queueMax, st.backendCPU/sec, st.ownCPU/sec, st.agentQueue, st.load1)
	}
	w("\nWhat became of every one of the %s, each step's whole run (counters after the drain):\n\n", items)
	w("| %s/s offered | agents: taken / refused (queue full) | agents: acknowledged / dropped (`send_failed`) | gateway: accepted / refused | gateway: sent / `send_failed` / `enqueue_failed` | %s | stored − acknowledged | drained in | kept up |\n|---|---|---|---|---|---|---|---|---|\n",
		items, sig.backend.Name)
	best := -1
	for i, st := range s.steps {
		stored := sum(mapValues(st.stored))
		drain := st.drain.Round(time.Second).String()
		if !st.drained {
			drain = "**not within " + gatewayDrainLimit.String() + "**"
		}
		kept := st.keptUp(sig, s.agents, s.window)
		if kept {
			best = i
		}
		verdict := map[bool]string{true: "yes", false: "**no**"}[kept]
		if st.gatewayDied != "" {
			verdict += " (" + st.gatewayDied + ")"
		}
		a, g := st.agents, st.gw
		w("| %.0f | %d / %d | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f / %.0f | %d | %+.0f | %s | %s |\n",
			st.ratePerAgent*float64(s.agents), sum(st.taken), sum(st.refused),
			a[sig.c("otelcol_exporter_sent")], a[sig.c("otelcol_exporter_send_failed")],
			g[sig.c("otelcol_receiver_accepted")], g[sig.c("otelcol_receiver_refused")],
			g[sig.c("otelcol_exporter_sent")], g[sig.c("otelcol_exporter_send_failed")], g[sig.c("otelcol_exporter_enqueue_failed")],
			stored, float64(stored)-a[sig.c("otelcol_exporter_sent")], drain, verdict)
	}
	w("\n")
	if best < 0 {
		w("No step kept up.\n\n")
		return
	}
	st := s.steps[best]
	perCore := 1e6 / (1e6 * st.gatewayCPU / st.accepted)
	w("At the highest rate it kept up with (%.0f %s/s), one gateway core handles %.0f %s/s: **%.1f nodes a core at %s** (%s).\n\n",
		st.ratePerAgent*float64(s.agents), items, perCore, items, perCore/sig.perNode, sig.phase, sig.perNodeSays)
}

func maxKB(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	return slices.Max(xs)
}

func readOr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error() + "\n"
	}
	return string(b)
}

// decodedHeap is the heap that decoding one request's protobuf takes, as a
// receiver does: what each request in flight holds before memory_limiter can
// refuse it.
func decodedHeap(b plog.Logs) uint64 {
	raw, err := (&plog.ProtoMarshaler{}).MarshalLogs(b)
	if err != nil {
		return 0
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	decoded, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(raw)
	runtime.ReadMemStats(&after)
	if err != nil {
		return 0
	}
	runtime.KeepAlive(decoded)
	return after.TotalAlloc - before.TotalAlloc
}
