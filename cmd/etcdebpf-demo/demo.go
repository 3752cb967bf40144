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
	"sync"
	"sync/atomic"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpfobjects"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/collector"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/otlpsink"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/victoria"
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
	Out       io.Writer
}

const walFsyncMetric = "etcd_disk_wal_fsync_duration_seconds"

// Run runs the demo until it is done or ctx is cancelled (Ctrl-C); everything
// it started is stopped before it returns.
func Run(ctx context.Context, o Options) (err error) {
	out := o.Out
	if err := checkPrivileges(); err != nil {
		return err
	}
	fmt.Fprintln(out, "etcdebpf demo: a real etcd on loopback, traced by the otelcol-etcd collector, exporting over OTLP to this program, VictoriaLogs and VictoriaMetrics")
	step := stepper(out, 7)

	// 1. The collector.
	bin, err := collector.Binary(ctx, o.Collector, indent(out))
	if err != nil {
		return err
	}
	step("collector: %s", bin)

	// 2. etcd.
	etcdBin, err := etcdtest.Find(ctx, o.EtcdBin, indent(out))
	if err != nil {
		return err
	}
	step("etcd: %s (%s)", etcdBin, etcdtest.Version(etcdBin))

	dir, err := os.MkdirTemp("", "etcdebpf-demo-")
	if err != nil {
		return err
	}
	defer func() {
		if o.Keep {
			fmt.Fprintf(out, "kept %s (etcd data, collector config and log)\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()

	// 3. Start etcd.
	srv, err := etcdtest.Start(etcdBin, dir)
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	var stopped []string
	defer func() {
		srv.Stop()
		stopped = append(stopped, "etcd")
		fmt.Fprintf(out, "stopped: %s\n", strings.Join(stopped, ", "))
	}()
	step("etcd started: pid %d, client URL %s, data in %s", srv.PID(), srv.ClientURL, srv.DataDir)

	// 4. The OTLP backend.
	pr := &printer{w: out, perSecond: o.Lines}
	sink, err := otlpsink.Start("127.0.0.1:0", otlpsink.WithCallback(pr.logs))
	if err != nil {
		return err
	}
	defer func() {
		sink.Stop()
		stopped = append(stopped, "OTLP backend")
	}()
	step("OTLP/gRPC backend (plogotlp) listening on %s", sink.Endpoint())

	// 5. The backends a user would query: VictoriaLogs for the records,
	// VictoriaMetrics for the histograms.
	backends := map[string]*victoria.Server{}
	for _, p := range []victoria.Product{victoria.Logs, victoria.Metrics} {
		bin, err := victoria.Install(ctx, p, indent(out))
		if err != nil {
			return err
		}
		data := filepath.Join(dir, p.Name)
		if err := os.Mkdir(data, 0o755); err != nil {
			return err
		}
		srv, err := victoria.Start(ctx, p, bin, data)
		if err != nil {
			return err
		}
		defer func() {
			srv.Stop()
			stopped = append(stopped, p.Name)
		}()
		backends[p.Name] = srv
	}
	vl, vm := backends[victoria.Logs.Name], backends[victoria.Metrics.Name]
	step("VictoriaLogs %s on %s (OTLP/HTTP in, LogsQL out), VictoriaMetrics %s on %s (OTLP/HTTP in, PromQL out); data in %s",
		victoria.Logs.Version, vl.URL, victoria.Metrics.Version, vm.URL, dir)

	// 6. The collector, tracing that etcd only.
	pipeline := collector.Pipeline{
		PIDs:         []int{srv.PID()},
		OTLPEndpoint: sink.Endpoint(),
		OTLPHTTPLogs: vl.OTLPLogsEndpoint(),
		// The histograms, every second: the workload lasts seconds.
		CollectionInterval: time.Second,
		OTLPHTTPMetrics:    vm.OTLPMetricsEndpoint(),
		Debug:              "basic",
		FlushInterval:      100 * time.Millisecond,
	}
	var echo io.Writer
	if o.Verbose {
		echo = out
	}
	col, err := collector.Run(ctx, bin, pipeline, dir, echo)
	if err != nil {
		return err
	}
	defer func() {
		_ = col.Stop(15 * time.Second)
		stopped = append(stopped, "collector")
	}()
	// What the collector's receiver loaded, to check that nothing outlives it.
	objs, err := bpfobjects.HeldBy(col.PID())
	if err != nil {
		return err
	}
	step("collector started: pid %d, receiver etcdebpf (pids: [%d]); logs -> debug + otlp_grpc %s + otlp_http %s, metrics -> otlp_http %s; config %s, log %s",
		col.PID(), srv.PID(), sink.Endpoint(), vl.URL, vm.URL, col.ConfigPath, col.LogPath)

	// 7. The workload, between two reads of etcd's metrics.
	time.Sleep(300 * time.Millisecond) // let start-up writes settle
	countBefore, err1 := srv.Metric(walFsyncMetric + "_count")
	bucketsBefore, err2 := srv.Histogram(walFsyncMetric)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("reading etcd's metrics: %w", err)
	}
	windowStart := time.Now()
	step("put workload: %d clients, 256-byte values, for %s; records as they arrive:", o.Clients, o.Duration)
	puts, workErr := workload(ctx, srv, o.Clients, o.Duration, out, sink, pr)
	windowEnd := time.Now()
	countAfter, err1 := srv.Metric(walFsyncMetric + "_count")
	bucketsAfter, err2 := srv.Histogram(walFsyncMetric)
	if workErr != nil {
		return workErr
	}
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("reading etcd's metrics: %w", err)
	}

	time.Sleep(300 * time.Millisecond) // the syscalls of the last puts reach the ring buffer
	fmt.Fprintln(out, "stopping the collector (SIGTERM: the receiver detaches and flushes, the exporters drain)...")
	if err := col.Stop(15 * time.Second); err != nil {
		return fmt.Errorf("the collector did not stop cleanly: %w; its last lines:\n%s", err, col.Tail())
	}
	if n := pr.takeSkipped(); n > 0 {
		fmt.Fprintf(out, "-- %d more records arrived after the last progress line, not shown\n", n)
	}
	_ = objs.WaitGone(5 * time.Second) // what is left is counted below
	leftover := objs.Alive()

	// Summary.
	records := pr.records()
	debugRecords, exportErrors := scanCollectorLog(col.LogPath)
	fmt.Fprintf(out, "\n== Summary: %d puts in %s (%.0f/s); %d records arrived over OTLP, %d went through the debug exporter\n",
		puts, windowEnd.Sub(windowStart).Round(time.Millisecond), float64(puts)/windowEnd.Sub(windowStart).Seconds(), len(records), debugRecords)
	if exportErrors > 0 {
		fmt.Fprintf(out, "!! the collector logged %d export errors: see %s (run with -keep to keep it)\n", exportErrors, col.LogPath)
	}
	if len(records) == 0 {
		return errors.New("no records arrived at the OTLP backend; run with -v to see the collector's log")
	}
	fmt.Fprintln(out, "\nAll records of etcd while traced (bytes: sum of successful write sizes; latency: entry to exit in the kernel):")
	writeSyscallTable(out, summarize(records))

	if err := errors.Join(vl.Flush(ctx), vm.Flush(ctx)); err != nil {
		return err
	}
	cmp := walComparison{window: windowEnd.Sub(windowStart), etcdCount: countAfter - countBefore}
	if cmp.histogram, err = walSyncHistogram(ctx, vm, windowStart); err != nil {
		return err
	}
	for _, r := range records {
		if r.isWALSync() && r.ts.After(windowStart) && r.ts.Before(windowEnd) {
			cmp.kernel = append(cmp.kernel, r.duration)
		}
	}
	slices.Sort(cmp.kernel)
	if len(bucketsAfter) == 0 {
		cmp.bucketsMissed = true
	} else {
		cmp.etcdBuckets = deltaBuckets(bucketsBefore, bucketsAfter)
	}
	fmt.Fprintf(out, "\nWAL fdatasync during the workload (%s between two reads of etcd's /metrics), kernel vs etcd:\n", cmp.window.Round(time.Millisecond))
	cmp.write(out)
	if leftover > 0 {
		fmt.Fprintf(out, "!! %d BPF objects of the receiver are still loaded after the collector stopped\n", leftover)
	} else {
		fmt.Fprintln(out, "\nAfter the collector stopped, none of the receiver's BPF programs is left in the kernel.")
	}

	if err := writeNextQueries(ctx, out, vl, vm); err != nil {
		return err
	}
	if o.Serve {
		fmt.Fprintf(out, "\nVictoriaLogs (%s/select/vmui) and VictoriaMetrics (%s/vmui) keep running with the data; Ctrl-C stops them.\n", vl.URL, vm.URL)
		<-ctx.Done()
	}
	return nil
}

// workload puts keys from clients loops until d has passed or ctx ends, and
// prints progress every second.
func workload(ctx context.Context, srv *etcdtest.Server, clients int, d time.Duration, out io.Writer, sink *otlpsink.Sink, pr *printer) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var puts atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	value := strings.Repeat("v", 256)
	for c := range clients {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				if _, err := srv.Put(fmt.Sprintf("demo/%d/%d", c, i), value); err != nil {
					if ctx.Err() == nil {
						errOnce.Do(func() { firstErr = fmt.Errorf("put: %w", err) })
						cancel()
					}
					return
				}
				puts.Add(1)
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			if err := context.Cause(ctx); firstErr == nil && err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return puts.Load(), fmt.Errorf("interrupted: %w", err)
			}
			return puts.Load(), firstErr
		case <-tick.C:
			fmt.Fprintf(out, "-- %s/%s: %d puts, %d records received (%d not shown: at most %d lines a second)\n",
				time.Since(start).Round(time.Second), d, puts.Load(), sink.RecordCount(), pr.takeSkipped(), pr.perSecond)
		}
	}
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

// checkPrivileges fails early, with the fix, where the collector could not load BPF.
func checkPrivileges() error {
	if os.Geteuid() == 0 {
		return nil
	}
	const capPerfmon, capBPF = 38, 39
	if caps, err := effectiveCaps(); err == nil && caps&(1<<capBPF) != 0 && caps&(1<<capPerfmon) != 0 {
		return nil
	}
	return errors.New("run with sudo; loading BPF needs root or CAP_BPF+CAP_PERFMON (try: sudo make demo)")
}

func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

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
