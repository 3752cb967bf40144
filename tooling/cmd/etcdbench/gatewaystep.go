//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/victoria"
)

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
	c0, err3 := collector.Telemetry(telemetry)
	step.load1 = loadAvg()
	windowEnd := time.Now().Add(window)
	for time.Now().Before(windowEnd) && !exited() {
		time.Sleep(time.Second)
		step.rssKB = append(step.rssKB, statusKB(pid, "VmRSS"))
		if c, err := collector.Telemetry(telemetry); err == nil {
			step.gw = c // the last the gateway said, should it die
			step.heapMax = max(step.heapMax, c["otelcol_process_runtime_heap_alloc_bytes"])
			step.queueMax = max(step.queueMax, c["otelcol_exporter_queue_size"])
		}
	}
	cpu1, err4 := cpuSeconds(pid)
	backend1, err5 := cpuSeconds(backend.PID())
	own1 := ownCPU()
	c1, err6 := collector.Telemetry(telemetry)
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
		c, err2 := collector.Telemetry(telemetry)
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
	if c, err := collector.Telemetry(telemetry); err == nil {
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
