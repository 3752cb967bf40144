//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpfobjects"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/otlpsink"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/victoria"
)

// Options of Run.
type Options struct {
	Duration  time.Duration // length of the put workload
	Clients   int           // concurrent put loops
	EtcdBin   string        // etcd binary, or the directory holding it; "" to find or install one
	Collector string        // collector binary; "" to build it from the checkout if stale
	Verbose   bool          // copy the collector's log to Out
	Lines     int           // records printed per second at most
	Keep      bool          // keep the temporary directory (etcd data, configs, logs)
	Serve     bool          // after the summary, keep the backends running until ctx ends
	Cluster   bool          // act 2: the three-member cluster and its faults
	Report    string        // where act 2 writes its picture (HTML)
	// Prometheus: act 2's metrics also go to a Prometheus evaluating the
	// shipped alert rules, and the demo prints which alerts fired in which phase.
	Prometheus bool
	Out        io.Writer
}

const walFsyncMetric = "etcd_disk_wal_fsync_duration_seconds"

// Run runs the demo until it is done or ctx is cancelled (Ctrl-C); everything
// it started is stopped before it returns.
func Run(ctx context.Context, o Options) error {
	if err := checkPrivileges(); err != nil {
		return err
	}
	fmt.Fprintln(o.Out, "etcdebpf demo: a real etcd on loopback, traced by the otelcol-etcd collector, exporting over OTLP to this program, VictoriaLogs and VictoriaMetrics")
	d := &demo{Options: o, out: o.Out, step: stepper(o.Out, 7)}
	defer d.stopAll()
	if err := d.start(ctx); err != nil {
		return err
	}
	w, err := d.measure(ctx)
	if err != nil {
		return err
	}
	if err := d.summarize(ctx, w); err != nil {
		return err
	}
	if err := writeNextQueries(ctx, d.out, d.vl, d.vm); err != nil {
		return err
	}
	if o.Cluster {
		if err := d.actTwo(ctx); err != nil {
			return fmt.Errorf("act 2: %w", err)
		}
	} else {
		fmt.Fprintln(d.out, "\nAct 2 (a three-member cluster whose leader's disk goes slow, about 90 s more) was skipped: run without -cluster=false to see it.")
	}
	if o.Serve {
		fmt.Fprintf(d.out, "\nVictoriaLogs (%s/select/vmui) and VictoriaMetrics (%s/vmui) keep running with the data; Ctrl-C stops them.\n", d.vl.URL, d.vm.URL)
		<-ctx.Done()
	}
	return nil
}

// demo is one run: what it started, and how to stop it.
type demo struct {
	Options
	out  io.Writer
	step func(format string, args ...any)

	dir    string // etcd's data, the collector's config and log
	srv    *etcdtest.Server
	sink   *otlpsink.Sink
	pr     *printer
	vl, vm *victoria.Server
	col    *collector.Collector
	objs   bpfobjects.Held // what the collector's receiver loaded

	collectorBin, etcdBin string // found or built in step 1 and 2

	stops []namedStop // in start order
}

type namedStop struct {
	name string
	stop func()
}

// onStop registers what stopAll stops, last started first.
func (d *demo) onStop(name string, stop func()) { d.stops = append(d.stops, namedStop{name, stop}) }

func (d *demo) stopAll() {
	var stopped []string
	for _, s := range slices.Backward(d.stops) {
		s.stop()
		stopped = append(stopped, s.name)
	}
	if len(stopped) > 0 {
		fmt.Fprintf(d.out, "stopped: %s\n", strings.Join(stopped, ", "))
	}
	if d.dir == "" {
		return
	}
	if d.Keep {
		fmt.Fprintf(d.out, "kept %s (etcd data, collector config and log)\n", d.dir)
	} else {
		os.RemoveAll(d.dir)
	}
}

// start runs steps 1 to 6: the collector binary and etcd found or built, then
// etcd, the backends and the collector started.
func (d *demo) start(ctx context.Context) error {
	bin, err := collector.Binary(ctx, d.Collector, indent(d.out))
	if err != nil {
		return err
	}
	d.step("collector: %s", bin)
	d.collectorBin = bin

	etcdBin, err := etcdtest.Find(ctx, d.EtcdBin, indent(d.out))
	if err != nil {
		return err
	}
	d.step("etcd: %s (%s)", etcdBin, etcdtest.Version(etcdBin))
	d.etcdBin = etcdBin

	if d.dir, err = os.MkdirTemp("", "etcdebpf-demo-"); err != nil {
		return err
	}
	if d.srv, err = etcdtest.Start(etcdBin, d.dir); err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	d.onStop("etcd", d.srv.Stop)
	d.step("etcd started: pid %d, client URL %s, data in %s", d.srv.PID(), d.srv.ClientURL, d.srv.DataDir)

	d.pr = &printer{w: d.out, perSecond: d.Lines}
	if d.sink, err = otlpsink.Start("127.0.0.1:0", otlpsink.WithCallback(d.pr.logs)); err != nil {
		return err
	}
	d.onStop("OTLP backend", d.sink.Stop)
	d.step("OTLP/gRPC backend (plogotlp) listening on %s", d.sink.Endpoint())

	if err := d.startVictoria(ctx); err != nil {
		return err
	}
	return d.startCollector(ctx, bin)
}

// startVictoria starts the backends a user would query: VictoriaLogs for the
// records, VictoriaMetrics for the histograms.
func (d *demo) startVictoria(ctx context.Context) error {
	backends := map[string]*victoria.Server{}
	for _, p := range []victoria.Product{victoria.Logs, victoria.Metrics} {
		bin, err := victoria.Install(ctx, p, indent(d.out))
		if err != nil {
			return err
		}
		data := filepath.Join(d.dir, p.Name)
		if err := os.Mkdir(data, 0o755); err != nil {
			return err
		}
		srv, err := victoria.Start(ctx, p, bin, data)
		if err != nil {
			return err
		}
		d.onStop(p.Name, srv.Stop)
		backends[p.Name] = srv
	}
	d.vl, d.vm = backends[victoria.Logs.Name], backends[victoria.Metrics.Name]
	d.step("VictoriaLogs %s on %s (OTLP/HTTP in, LogsQL out), VictoriaMetrics %s on %s (OTLP/HTTP in, PromQL out); data in %s",
		victoria.Logs.Version, d.vl.URL, victoria.Metrics.Version, d.vm.URL, d.dir)
	return nil
}

// startCollector starts the collector, tracing the demo's etcd only.
// collectionInterval is the demo's metrics collection_interval: the workload lasts seconds.
const collectionInterval = time.Second

func (d *demo) startCollector(ctx context.Context, bin string) error {
	pipeline := collector.Pipeline{
		PIDs:               []int{d.srv.PID()},
		OTLPEndpoint:       d.sink.Endpoint(),
		OTLPHTTPLogs:       d.vl.OTLPLogsEndpoint(),
		CollectionInterval: collectionInterval,
		OTLPHTTPMetrics:    d.vm.OTLPMetricsEndpoint(),
		Debug:              "basic",
		FlushInterval:      100 * time.Millisecond,
		DetectHost:         true, // host.name, which the queries group by
	}
	var echo io.Writer
	if d.Verbose {
		echo = d.out
	}
	col, err := collector.Run(ctx, bin, pipeline, d.dir, echo)
	if err != nil {
		return err
	}
	d.col = col
	d.onStop("collector", func() { _ = col.Stop(15 * time.Second) })
	if d.objs, err = bpfobjects.HeldBy(col.PID()); err != nil {
		return err
	}
	d.step("collector started: pid %d, receiver etcdebpf (pids: [%d]); logs -> debug + otlp_grpc %s + otlp_http %s, metrics -> otlp_http %s; config %s, log %s",
		col.PID(), d.srv.PID(), d.sink.Endpoint(), d.vl.URL, d.vm.URL, col.ConfigPath, col.LogPath)
	return nil
}

// window is the workload's time between two reads of etcd's metrics.
type window struct {
	start, end                  time.Time
	puts                        int64
	countBefore, countAfter     float64
	bucketsBefore, bucketsAfter etcdtest.Histogram
	leftover                    int // BPF objects of the receiver left after the collector stopped
}

// measure runs step 7, the put workload between two reads of etcd's metrics,
// then stops the collector so that every record is delivered.
func (d *demo) measure(ctx context.Context) (window, error) {
	var w window
	time.Sleep(300 * time.Millisecond) // let start-up writes settle
	var err1, err2 error
	w.countBefore, err1 = d.srv.Metric(walFsyncMetric + "_count")
	w.bucketsBefore, err2 = d.srv.Histogram(walFsyncMetric)
	if err := errors.Join(err1, err2); err != nil {
		return w, fmt.Errorf("reading etcd's metrics: %w", err)
	}
	w.start = time.Now()
	d.step("put workload: %d clients, 256-byte values, for %s; records as they arrive:", d.Clients, d.Duration)
	puts, workErr := workload(ctx, d.srv, d.Clients, d.Duration, d.out, d.sink, d.pr)
	w.end, w.puts = time.Now(), puts
	w.countAfter, err1 = d.srv.Metric(walFsyncMetric + "_count")
	w.bucketsAfter, err2 = d.srv.Histogram(walFsyncMetric)
	if workErr != nil {
		return w, workErr
	}
	if err := errors.Join(err1, err2); err != nil {
		return w, fmt.Errorf("reading etcd's metrics: %w", err)
	}

	time.Sleep(300 * time.Millisecond) // the syscalls of the last puts reach the ring buffer
	fmt.Fprintln(d.out, "stopping the collector (SIGTERM: the receiver detaches and flushes, the exporters drain)...")
	if err := d.col.Stop(15 * time.Second); err != nil {
		return w, fmt.Errorf("the collector did not stop cleanly: %w; its last lines:\n%s", err, d.col.Tail())
	}
	if n := d.pr.takeSkipped(); n > 0 {
		fmt.Fprintf(d.out, "-- %d more records arrived after the last progress line, not shown\n", n)
	}
	_ = d.objs.WaitGone(5 * time.Second) // what is left is counted
	w.leftover = d.objs.Alive()
	return w, nil
}

// summarize prints what arrived, the syscall table and the WAL comparison
// (the receiver's histogram read back from VictoriaMetrics among it).
func (d *demo) summarize(ctx context.Context, w window) error {
	out := d.out
	records := d.pr.records()
	debugRecords, exportErrors := scanCollectorLog(d.col.LogPath)
	fmt.Fprintf(out, "\n== Summary: %d puts in %s (%.0f/s); %d records arrived over OTLP, %d went through the debug exporter\n",
		w.puts, w.end.Sub(w.start).Round(time.Millisecond), float64(w.puts)/w.end.Sub(w.start).Seconds(), len(records), debugRecords)
	if exportErrors > 0 {
		fmt.Fprintf(out, "!! the collector logged %d export errors: see %s (run with -keep to keep it)\n", exportErrors, d.col.LogPath)
	}
	if len(records) == 0 {
		return errors.New("no records arrived at the OTLP backend; run with -v to see the collector's log")
	}
	fmt.Fprintln(out, "\nAll records of etcd while traced (bytes: sum of successful write sizes; latency: entry to exit in the kernel):")
	writeSyscallTable(out, summarize(records))

	if err := errors.Join(d.vl.Flush(ctx), d.vm.Flush(ctx)); err != nil {
		return err
	}
	cmp := walComparison{window: w.end.Sub(w.start), etcdCount: w.countAfter - w.countBefore}
	var err error
	if cmp.histogram, err = walSyncHistogram(ctx, d.vm, w.start, collectionInterval); err != nil {
		return err
	}
	for _, r := range records {
		if r.isWALSync() && r.ts.After(w.start) && r.ts.Before(w.end) {
			cmp.kernel = append(cmp.kernel, r.duration)
		}
	}
	slices.Sort(cmp.kernel)
	if len(w.bucketsAfter) == 0 {
		cmp.bucketsMissed = true
	} else {
		cmp.etcdBuckets = w.bucketsAfter.Since(w.bucketsBefore)
	}
	fmt.Fprintf(out, "\nWAL fdatasync during the workload (%s between two reads of etcd's /metrics), kernel vs etcd:\n", cmp.window.Round(time.Millisecond))
	cmp.write(out)
	if w.leftover > 0 {
		fmt.Fprintf(out, "!! %d BPF objects of the receiver are still loaded after the collector stopped\n", w.leftover)
	} else {
		fmt.Fprintln(out, "\nAfter the collector stopped, none of the receiver's BPF programs is left in the kernel.")
	}
	return nil
}

func stepper(out io.Writer, total int) func(format string, args ...any) {
	n := 0
	return func(format string, args ...any) {
		n++
		fmt.Fprintf(out, "[%d/%d] %s\n", n, total, fmt.Sprintf(format, args...))
	}
}

type indentWriter struct{ w io.Writer }

func (i indentWriter) Write(p []byte) (int, error) {
	for line := range strings.Lines(string(p)) {
		fmt.Fprint(i.w, "      "+line)
	}
	return len(p), nil
}

func indent(w io.Writer) io.Writer { return indentWriter{w} }

var debugRecordsRe = regexp.MustCompile(`"log records": (\d+)`)

// scanCollectorLog counts the records the debug exporter logged and the export errors.
func scanCollectorLog(path string) (debugRecords, exportErrors int) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := debugRecordsRe.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			debugRecords += n
		}
		if strings.Contains(line, "Exporting failed") {
			exportErrors++
		}
	}
	return debugRecords, exportErrors
}
