// Command etcdebpf-demo shows the etcdebpf receiver end to end: it starts a real
// etcd on loopback, the otelcol-etcd collector tracing it, an OTLP backend in
// this process and VictoriaLogs; drives a few seconds of puts; prints the records
// as they arrive, a summary beside etcd's own WAL fsync histogram, and the LogsQL
// queries a user types next with their answers. Run it as root, from the
// checkout: sudo make demo.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	o := Options{Out: os.Stdout}
	flag.DurationVar(&o.Duration, "duration", 5*time.Second, "how long to drive puts against etcd (at most 2m)")
	flag.IntVar(&o.Clients, "clients", 4, "concurrent put loops")
	flag.StringVar(&o.EtcdBin, "etcd-bin", "", "etcd server binary or its directory (default: $ETCD_BIN, then scripts/install-etcd.sh's cache, installing it if absent)")
	flag.StringVar(&o.Collector, "collector", "", "otelcol-etcd binary (default: _build/otelcol-etcd/otelcol-etcd, rebuilt with ocb if older than the sources)")
	flag.BoolVar(&o.Verbose, "v", false, "also print the collector's log (debug exporter included)")
	flag.IntVar(&o.Lines, "lines", 15, "print at most this many records a second")
	flag.BoolVar(&o.Keep, "keep", false, "keep the temporary directory with etcd's data and the collector's config and log")
	flag.BoolVar(&o.Serve, "serve", false, "after the summary, keep VictoriaLogs and VictoriaMetrics running (with the data) until Ctrl-C, to try queries")
	flag.BoolVar(&o.Cluster, "cluster", true, "act 2: a three-member cluster whose leader's disk is throttled, then a noisy neighbour, then CPU contention (about 90 s)")
	flag.BoolVar(&o.Prometheus, "prometheus", true, "act 2's metrics also go to Prometheus (built from the Go module proxy once, about 5 minutes) evaluating the shipped alert rules (examples/prometheus, their for: shortened to a second); the demo prints which alert fired in which phase")
	flag.StringVar(&o.Report, "report", "", "where act 2 writes its picture, an HTML page: per member WAL fdatasync latency over time, fault windows shaded, leader changes marked (default: _build/demo-cluster.html in the checkout)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: sudo %s [flags]\n\n", os.Args[0])
		fmt.Fprintln(flag.CommandLine.Output(), "Traces a local etcd with the otelcol-etcd collector and prints what reaches an OTLP backend.")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if o.Duration <= 0 || o.Duration > 2*time.Minute || o.Clients < 1 || o.Clients > 256 || o.Lines < 0 {
		fmt.Fprintln(os.Stderr, "etcdebpf-demo: -duration must be in (0, 2m], -clients in [1, 256], -lines >= 0")
		os.Exit(2)
	}

	// Ctrl-C (or SIGTERM) cancels the run; Run then stops what it started. A
	// second Ctrl-C kills the demo at once: its children die with it (Pdeathsig).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "etcdebpf-demo:", err)
		os.Exit(1)
	}
}
