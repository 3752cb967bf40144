//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.uber.org/zap"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/checkout"
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
//
// One job a file: this one runs a phase's steps; gatewaystep.go is one step
// (start, offer, measure, drain, count); gatewayprocess.go the gateway process
// in its memory cgroup; gatewayagents.go the simulated agents;
// gatewaylogs.go and gatewaymetrics.go what each phase streams and how its
// backend counts it; gatewayreport.go the report's sections.

// gatewayDrainLimit bounds the wait, after the agents stop offering, for
// their queues and the gateway's to empty.
const gatewayDrainLimit = 2 * time.Minute

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
