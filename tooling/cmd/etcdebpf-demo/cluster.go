//go:build linux

package main

import (
	"context"
	"fmt"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/checkout"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/scenario"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/victoria"
)

// actTwoPhases is the second act's schedule: the leader's disk throttled long
// enough for the leader to move, then a noisy neighbour on the same disk, then
// CPU contention on the (new) leader.
var actTwoPhases = []scenario.Phase{
	{Name: "healthy", Duration: 10 * time.Second},
	{Name: "leader's disk throttled", Fault: scenario.DiskThrottle, Target: scenario.TheLeader, Duration: 25 * time.Second},
	{Name: "recovered", Duration: 10 * time.Second},
	{Name: "noisy neighbour", Fault: scenario.Neighbour, Duration: 15 * time.Second},
	{Name: "leader's CPU contended", Fault: scenario.CPUContention, Target: scenario.TheLeader, Duration: 15 * time.Second},
}

// actTwo runs the failure the receiver exists for: three members, the
// leader's disk slowed, what etcd says and what the receiver measured, per
// member and per phase, then the picture and the queries that find the slow
// member in the backends.
func (d *demo) actTwo(ctx context.Context) error {
	start := time.Now()
	out := d.out
	fmt.Fprintln(out, "\n== Act 2: a three-member etcd cluster on loopback under a put load; the leader's disk is throttled, then a noisy neighbour writes to the same disk, then the leader's CPU is contended")
	dir, err := scenario.MkdirOnDisk("etcdebpf-demo-cluster-")
	if err != nil {
		return err
	}
	defer func() {
		if d.Keep {
			fmt.Fprintf(out, "kept %s (the members' data and logs, the collector's config and log)\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	var prom *victoria.Server
	promEndpoint := ""
	if d.Prometheus {
		if prom, err = startPrometheus(ctx, out, dir); err != nil {
			return err
		}
		defer prom.Stop()
		promEndpoint = prom.OTLPMetricsEndpoint()
	}
	s, err := scenario.Start(ctx, scenario.Options{
		EtcdBin: d.etcdBin, Collector: d.collectorBin, Dir: dir,
		OTLPHTTPLogs: d.vl.OTLPLogsEndpoint(), OTLPHTTPMetrics: d.vm.OTLPMetricsEndpoint(),
		OTLPHTTPMetricsAlso: promEndpoint,
		Progress:            indent(out),
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := s.Stop(); err != nil {
			fmt.Fprintf(out, "!! stopping the scenario: %v\n", err)
		}
		fmt.Fprintln(out, "act 2 stopped: the fault removed (no cgroup left), the load, the collector and the members stopped")
	}()
	if err := s.StartLoad(); err != nil {
		return err
	}
	results, err := s.Run(ctx, actTwoPhases, func(r scenario.PhaseResult) { writePhaseLine(out, r) })
	if err != nil {
		return err
	}
	s.StopLoad()
	if err := s.StopCollector(); err != nil {
		return err
	}
	obs := s.Observed()
	writePhaseTables(out, results, obs)
	writeCauses(out, results, obs)
	writeSubmitters(out, results, obs, s.Members())

	report := scenario.Report{Members: s.Members(), Series: obs.Series, Phases: results, Leaders: s.LeaderChanges(), Slow: obs.Slow}
	path := reportPath(d.Report)
	if err := writeReportFile(path, report); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nThe picture (per member WAL fdatasync latency over time, fault windows shaded, leader changes marked): %s\n", path)
	png := strings.TrimSuffix(path, filepath.Ext(path)) + ".png"
	if _, err := scenario.Chromium(); err != nil {
		fmt.Fprintf(out, "(no screenshot of it: %v)\n", err)
	} else if err := scenario.Screenshot(ctx, path, png, len(report.Members)); err != nil {
		fmt.Fprintf(out, "!! its screenshot failed: %v\n", err)
	} else {
		fmt.Fprintf(out, "and its screenshot, rendered by headless Chromium: %s\n", png)
	}
	if err := writeClusterQueries(ctx, out, d.vl, d.vm, s, throttledPhase(results)); err != nil {
		return err
	}
	if prom != nil {
		if err := writeAlerts(ctx, out, prom, results); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "\nAct 2 took %s (-cluster=false skips it).\n", time.Since(start).Round(time.Second))
	return nil
}

// throttledPhase is the first phase whose fault throttled a disk.
func throttledPhase(results []scenario.PhaseResult) scenario.PhaseResult {
	for _, r := range results {
		if r.Fault == scenario.DiskThrottle {
			return r
		}
	}
	return scenario.PhaseResult{}
}

// reportPath is where the picture goes: given, else _build/demo-cluster.html
// in the checkout, else in the current directory.
func reportPath(given string) string {
	if given == "" {
		given = "demo-cluster.html"
		if root, err := checkout.Root(); err == nil {
			given = filepath.Join(root, "_build", given)
		}
	}
	abs, err := filepath.Abs(given)
	if err != nil {
		return given
	}
	return abs
}

func writeReportFile(path string, r scenario.Report) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := r.WriteHTML(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writePhaseLine says, as a phase ends, how the cluster fared in it.
func writePhaseLine(out io.Writer, r scenario.PhaseResult) {
	leader, puts := "none", 0.0
	var changes float64
	for i, a := range r.After {
		if a.Leader {
			leader = a.Member
		}
		puts = max(puts, a.Puts-r.Before[i].Puts)
		changes = max(changes, a.LeaderChanges-r.Before[i].LeaderChanges)
	}
	fmt.Fprintf(out, "   -> %s: %.0f puts/s, leader now %s, %.0f leader change(s)\n", r.Name, puts/r.Duration().Seconds(), leader, changes)
}

// writePhaseTables prints, per phase, each member's WAL fdatasyncs as the
// receiver measured them beside etcd's own figures.
func writePhaseTables(out io.Writer, results []scenario.PhaseResult, obs scenario.Observed) {
	fmt.Fprintln(out, "\nWAL fdatasync per member and phase: the receiver (kernel, every call in its histogram) | etcd's own histogram")
	fmt.Fprintln(out, "(etcd's percentiles are interpolated in its 1, 2, 4, ... ms buckets; leader changes, heartbeat failures: etcd's counters; warnings: etcd's log)")
	for _, r := range results {
		what := r.Fault.String()
		if r.Target != "" {
			what += " on " + r.Target
		}
		fmt.Fprintf(out, "\n%s (%s, %s):\n", r.Name, what, r.Duration().Round(100*time.Millisecond))
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  \tmember\trole\tsyncs\tetcd\tp50\tetcd\tp99\tetcd\tleader changes\theartbeat failures\tslow fdatasync\tlate heartbeat\t")
		for _, f := range r.Figures(obs) {
			role := "follower"
			if f.Leader {
				role = "leader"
			}
			if f.Hit {
				role += " *"
			}
			fmt.Fprintf(tw, "  \t%s\t%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%d\t%d\t\n", f.Member, role,
				f.Receiver.Count, f.EtcdSyncs,
				histQuantile(f.Receiver.Buckets, 0.5), histQuantile(f.Etcd, 0.5), histQuantile(f.Receiver.Buckets, 0.99), histQuantile(f.Etcd, 0.99),
				f.LeaderChanges, f.HeartbeatFailures, f.SlowFdatasyncs, f.LateHeartbeats)
		}
		tw.Flush()
	}
	fmt.Fprintln(out, "(* the member the fault hit; role at the phase's end)")
}

// writeCauses prints, per phase and member, where the slow WAL syncs' time
// went, from their records (docs/why-slow.md): each part's share and the
// largest.
func writeCauses(out io.Writer, results []scenario.PhaseResult, obs scenario.Observed) {
	fmt.Fprintf(out, "\nWhy the WAL syncs of %s or more were slow (from their records: the share of their time by part, docs/why-slow.md):\n", scenario.SlowCall)
	// io is own I/O unsplit, only where the disks' view is off: its column only then.
	parts := []tracer.Part{}
	for p := range tracer.PartCount {
		if p != tracer.PartIO || slices.ContainsFunc(results, func(r scenario.PhaseResult) bool {
			return slices.ContainsFunc(r.Figures(obs), func(f scenario.MemberFigures) bool { return f.Slow.Parts[tracer.PartIO] > 0 })
		}) {
			parts = append(parts, p)
		}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "  \tphase\tmember\tslow syncs\ttheir time\t")
	for _, p := range parts {
		fmt.Fprintf(tw, "%s\t", p)
	}
	fmt.Fprintln(tw, "cause\t")
	for _, r := range results {
		for _, f := range r.Figures(obs) {
			c := f.Slow
			if c.Syncs == 0 {
				continue
			}
			name := f.Member
			if f.Hit {
				name += " *"
			}
			fmt.Fprintf(tw, "  \t%s\t%s\t%d\t%s\t", r.Name, name, c.Syncs, fmtDur(time.Duration(c.DurationNs)))
			for _, p := range parts {
				if c.Parts[p] == 0 {
					fmt.Fprint(tw, "-\t")
				} else {
					fmt.Fprintf(tw, "%.0f%%\t", 100*c.Share(p))
				}
			}
			fmt.Fprintf(tw, "%s\t\n", c.Dominant())
		}
	}
	tw.Flush()
	fmt.Fprintln(out, "(* the member the fault hit. cpu: on a CPU; runnable: waiting for one; io_queue / io_device: waiting for its own")
	fmt.Fprintln(out, "writes and flush while they were in the kernel's queue (a cgroup throttle holds them there) / on the device;")
	fmt.Fprintln(out, "journal: the file system's journal commit; lock, throttle (dirty pages, wbt), other: the remaining waits)")
}

// writeSubmitters prints, per fault, who wrote to the disks meanwhile: the
// receiver's disks' view names the neighbour.
func writeSubmitters(out io.Writer, results []scenario.PhaseResult, obs scenario.Observed, members []scenario.Member) {
	fmt.Fprintln(out, "\nWho submitted writes to the disks during each phase (the receiver's disks' view, etcdebpf.disk.submitted.bytes; top 5):")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  \tphase\tdisk\tpid\tprocess\tMB/s\t")
	printed := false
	for _, r := range results {
		subs := obs.Submitters(r)
		for i, sub := range subs[:min(5, len(subs))] {
			name := sub.Comm
			for _, m := range members {
				if m.PID == sub.PID {
					name += " (" + m.Name + ")"
				}
			}
			if slices.Contains(r.FaultPIDs, sub.PID) {
				name += " *"
			}
			phase := r.Name
			if i > 0 {
				phase = ""
			}
			fmt.Fprintf(tw, "  \t%s\t%s\t%d\t%s\t%.1f\t\n", phase, sub.Device, sub.PID, name, sub.Bytes/1e6/r.Duration().Seconds())
			printed = true
		}
	}
	tw.Flush()
	if !printed {
		fmt.Fprintln(out, "  (none: the collector's receiver sends no disks' view)")
	}
	fmt.Fprintln(out, "(* a process the phase's fault started: the neighbour)")
}

// histQuantile prints h's q-quantile, or "-" where h counts nothing.
func histQuantile(h etcdtest.Histogram, q float64) string {
	v, ok := h.Quantile(q)
	if !ok {
		return "-"
	}
	return fmtDur(seconds(v))
}

// writeClusterQueries runs the queries that find the slow member in the
// backends and prints them with their answers: what an operator types when a
// cluster's leader keeps moving. Members are told apart by their Resource's
// process.command_args (docs/records.md), which both backends store as the
// array's JSON text: the member's name is taken out of its --name argument.
func writeClusterQueries(ctx context.Context, out io.Writer, vl, vm *victoria.Server, s *scenario.Scenario, throttled scenario.PhaseResult) error {
	fmt.Fprintf(out, "\n== Finding the slow member in the backends (members: %s)\n", memberList(s))
	logs := victoria.Query{
		Question: "VictoriaLogs: the WAL syncs of 10 ms or more (the collector sends a record for each such call) of the last 5 minutes, by member: count, p99 and worst in ms",
		Query: `_time:5m etcd.syscall.name:=fdatasync file.name:~"\\.wal$" process.command_args:~"\"--name\",\"etcd-"` +
			` | extract '"--name","<member>"' from process.command_args` +
			` | stats by (member) count() slow_syncs, quantile(0.99, etcd.syscall.duration_ns) p99_ns, max(etcd.syscall.duration_ns) max_ns` +
			` | math round(p99_ns/1e6, 0.1) as p99_ms, round(max_ns/1e6, 0.1) as max_ms | sort by (p99_ms desc) | fields member, slow_syncs, p99_ms, max_ms`,
		Columns: []string{"member", "slow_syncs", "p99_ms", "max_ms"},
	}
	rows, err := vl.LogsQL(ctx, logs.Query)
	if err != nil {
		return err
	}
	if err := writeAnswer(out, logs, rows); err != nil {
		return err
	}

	window := throttled.End.Sub(throttled.Start).Round(time.Second)
	metrics := victoria.Query{
		Question: fmt.Sprintf("VictoriaMetrics: each member's WAL fdatasync p99 in ms over the %s the disk was throttled (the receiver's histograms, every call counted; evaluated at the fault's end)", window),
		Query: fmt.Sprintf(`round(histogram_quantile(0.99, sum by (member, vmrange) (label_replace(increase_pure(etcd_syscall_duration_seconds_bucket`+
			`{etcd_syscall_name="fdatasync",etcd_syscall_file_class="wal",process_command_args=~".*\"--name\",\"etcd-.*"}[%ds]),`+
			` "member", "$1", "process_command_args", ".*\"--name\",\"([^\"]+)\".*"))) * 1e3, 0.01)`, int(window.Seconds())),
		Columns: []string{"member", "value"},
	}
	samples, err := vm.PromQL(ctx, metrics.Query, throttled.End)
	if err != nil {
		return err
	}
	rows = rows[:0]
	for _, smp := range samples {
		rows = append(rows, map[string]string{"member": smp.Labels["member"], "value": strconv.FormatFloat(smp.Value, 'f', -1, 64)})
	}
	if err := writeAnswer(out, metrics, rows); err != nil {
		return err
	}
	if throttled.Target != "" {
		fmt.Fprintf(out, "\nThe fault hit %s (pid %d): both answers point at it.\n", throttled.Target, throttled.TargetPID)
	}
	return nil
}

func memberList(s *scenario.Scenario) string {
	var parts []string
	for _, m := range s.Cluster.Members {
		parts = append(parts, fmt.Sprintf("%s pid %d", m.Name, m.PID()))
	}
	return strings.Join(parts, ", ")
}

// startPrometheus runs Prometheus on loopback with its data in dir, taking
// OTLP metrics and evaluating the shipped alert rules with their for:
// shortened to a second: an act of a minute and a half cannot wait the 5
// minutes they wait in production.
func startPrometheus(ctx context.Context, out io.Writer, dir string) (*victoria.Server, error) {
	root, err := checkout.Root()
	if err != nil {
		return nil, err
	}
	bin, err := victoria.Install(ctx, victoria.Prometheus, indent(out))
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "prometheus")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	rules, err := victoria.WriteShortRules(root, data, time.Second)
	if err != nil {
		return nil, err
	}
	config := filepath.Join(data, "prometheus.yml")
	if err := os.WriteFile(config, []byte(victoria.PrometheusConfig(rules, "")), 0o600); err != nil {
		return nil, err
	}
	srv, err := victoria.Start(ctx, victoria.Prometheus, bin, data, "--config.file="+config)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "   Prometheus %s on %s: OTLP in, the rules of examples/prometheus/etcdebpf-rules.yaml (for: 1s) evaluated every second\n", victoria.Prometheus.Version, srv.URL)
	return srv, nil
}

// writeAlerts prints, per phase, the alerts of the shipped rules that fired
// at some evaluation during it, with the labels that name the member and the
// cause, or the neighbour.
func writeAlerts(ctx context.Context, out io.Writer, prom *victoria.Server, results []scenario.PhaseResult) error {
	fmt.Fprintln(out, "\nPrometheus: the shipped alerts that fired in each phase (examples/prometheus; their for: shortened to 1s; the rules' 5-minute windows hold the act so far):")
	for _, r := range results {
		query := fmt.Sprintf(`max_over_time(ALERTS{alertstate="firing"}[%dms])`, r.End.Sub(r.Start).Milliseconds())
		samples, err := prom.PromQL(ctx, query, r.End)
		if err != nil {
			return err
		}
		// One line an alert and member; its cause may have changed within the
		// phase (a new alert series each time): every cause it named.
		causes := map[string][]string{}
		for _, a := range samples {
			l := a.Labels
			who := fmt.Sprintf("%s member=%s (pid %s) cause=", l["alertname"], l["member"], l["process_pid"])
			what := l["cause"]
			if l["neighbour"] != "" {
				who, what = fmt.Sprintf("%s on %s: neighbour=", l["alertname"], l["system_device"]), fmt.Sprintf("%s (pid %s)", l["neighbour"], l["neighbour_pid"])
			}
			causes[who] = append(causes[who], what)
		}
		var lines []string
		for who, what := range causes {
			slices.Sort(what)
			lines = append(lines, who+strings.Join(what, ","))
		}
		slices.Sort(lines)
		if len(lines) == 0 {
			lines = []string{"none"}
		}
		fmt.Fprintf(out, "  %-24s %s\n", r.Name+":", strings.Join(lines, "; "))
	}
	return nil
}
