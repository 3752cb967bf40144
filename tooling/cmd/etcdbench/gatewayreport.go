//go:build linux

package main

import (
	"os"
	"slices"
	"strings"
	"time"
)

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
