//go:build linux

package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/otlpsink"
)

// Options of Start.
type Options struct {
	EtcdBin   string // the etcd server; etcd's benchmark tool must lie beside it
	Collector string // the built collector
	// Dir holds the members' data, the configs and the logs. It must be on a
	// disk (not a tmpfs): the throttle and the neighbour act on that disk.
	Dir string
	// The put load, etcd's benchmark tool: connections and clients (default
	// 4 and 16), 256-byte values, spread over every member.
	Conns, Clients int
	// Rate caps the load's puts a second (0: as fast as the members go).
	Rate int
	// OTLPHTTPLogs and OTLPHTTPMetrics are more backends for the collector
	// (the demo's VictoriaLogs and VictoriaMetrics), beside the in-process sink.
	OTLPHTTPLogs, OTLPHTTPMetrics string
	// OTLPHTTPMetricsAlso is one more metrics backend (the demo's Prometheus).
	OTLPHTTPMetricsAlso string
	// MinDuration: log records only for calls this long (default SlowCall);
	// the histograms count every call.
	MinDuration time.Duration
	Progress    io.Writer // what is started and stopped; nil for none
}

// SlowCall is etcd's guidance for a WAL fsync's p99: the log records the
// scenario's collector sends are the calls at least this long.
const SlowCall = 10 * time.Millisecond

// CollectionInterval is how often the receiver's histograms are sent: the
// time resolution of the per-phase figures and of the picture.
const CollectionInterval = time.Second

// Scenario is a running cluster, its collector and the in-process backend.
type Scenario struct {
	Cluster   *etcdtest.Cluster
	Sink      *otlpsink.Sink
	Collector *collector.Collector
	dir       string
	bench     string
	opts      Options
	progress  io.Writer

	mu      sync.Mutex
	load    *subprocess.Process
	fault   *injected
	stopped bool
	leaders *leaderWatch
}

// Start runs the cluster, the sink and the collector tracing every member.
// On error nothing is left running.
func Start(ctx context.Context, o Options) (_ *Scenario, err error) {
	if o.Conns == 0 {
		o.Conns = 4
	}
	if o.Clients == 0 {
		o.Clients = 16
	}
	if o.MinDuration == 0 {
		o.MinDuration = SlowCall
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	bench := filepath.Join(filepath.Dir(o.EtcdBin), "benchmark")
	if _, err := os.Stat(bench); err != nil {
		return nil, fmt.Errorf("etcd's benchmark tool, the put load: %w (scripts/install-etcd.sh installs it beside etcd)", err)
	}
	if _, err := diskOf(o.Dir); err != nil {
		return nil, err
	}
	s := &Scenario{dir: o.Dir, bench: bench, opts: o, progress: progress}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()
	if s.Cluster, err = etcdtest.StartCluster(o.EtcdBin, filepath.Join(o.Dir, "cluster"), 3); err != nil {
		return nil, fmt.Errorf("starting the cluster: %w", err)
	}
	for _, m := range s.Cluster.Members {
		fmt.Fprintf(progress, "member %s: pid %d, client URL %s, data in %s\n", m.Name, m.PID(), m.ClientURL, m.DataDir)
	}
	if s.Sink, err = otlpsink.Start("127.0.0.1:0"); err != nil {
		return nil, err
	}
	pipeline := collector.Pipeline{
		PIDs:                s.Cluster.PIDs(),
		OTLPEndpoint:        s.Sink.Endpoint(),
		MetricsOverGRPC:     true,
		CollectionInterval:  CollectionInterval,
		MinDuration:         o.MinDuration,
		FlushInterval:       100 * time.Millisecond,
		OTLPHTTPLogs:        o.OTLPHTTPLogs,
		OTLPHTTPMetrics:     o.OTLPHTTPMetrics,
		OTLPHTTPMetricsAlso: o.OTLPHTTPMetricsAlso,
		DetectHost:          true, // host.name, which the demo's queries group by
	}
	colDir := filepath.Join(o.Dir, "collector")
	if err := os.MkdirAll(colDir, 0o755); err != nil {
		return nil, err
	}
	if s.Collector, err = collector.Run(ctx, o.Collector, pipeline, colDir, nil); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "collector: pid %d, one receiver tracing pids %v; config %s\n", s.Collector.PID(), s.Cluster.PIDs(), s.Collector.ConfigPath)
	s.leaders = watchLeaders(s.Cluster)
	return s, nil
}

// Members names the members and their pids, in member order.
func (s *Scenario) Members() []Member {
	out := make([]Member, len(s.Cluster.Members))
	for i, m := range s.Cluster.Members {
		out[i] = Member{Name: m.Name, PID: m.PID()}
	}
	return out
}

// StartLoad starts etcd's benchmark tool putting keys through every member
// until StopLoad.
func (s *Scenario) StartLoad() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load != nil {
		return errors.New("the load is already running")
	}
	endpoints := make([]string, len(s.Cluster.Members))
	for i, m := range s.Cluster.Members {
		endpoints[i] = strings.TrimPrefix(m.ClientURL, "http://")
	}
	p, err := subprocess.Start(subprocess.Options{
		Name: "the put load (etcd's benchmark)",
		Path: s.bench,
		Args: []string{"--endpoints=" + strings.Join(endpoints, ","),
			fmt.Sprintf("--conns=%d", s.opts.Conns), fmt.Sprintf("--clients=%d", s.opts.Clients),
			"put", "--key-size=8", "--val-size=256", "--total=1000000000", fmt.Sprintf("--rate=%d", s.opts.Rate)},
		LogPath:    filepath.Join(s.dir, "benchmark.log"),
		StopSignal: syscall.SIGINT,
	})
	if err != nil {
		return err
	}
	s.load = p
	fmt.Fprintf(s.progress, "load: etcd's benchmark put, %d connections, %d clients, 256-byte values, %s, pid %d\n", s.opts.Conns, s.opts.Clients, rateText(s.opts.Rate), p.PID())
	return nil
}

// StopLoad stops the put load.
func (s *Scenario) StopLoad() {
	s.mu.Lock()
	p := s.load
	s.load = nil
	s.mu.Unlock()
	if p != nil {
		_ = p.Stop(5 * time.Second) // interrupted by design: its exit status says so
	}
}

// Stop undoes a fault in place and stops the load, the collector, the cluster
// and the sink, in that order: nothing is left running and no cgroup is left.
// It is safe to call more than once; the first call's error is returned.
func (s *Scenario) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	fault := s.fault
	s.fault = nil
	s.mu.Unlock()
	var errs []error
	if fault != nil {
		errs = append(errs, fault.undo())
	}
	s.StopLoad()
	if s.leaders != nil {
		s.leaders.stop()
	}
	if s.Collector != nil {
		if err := s.Collector.Stop(15 * time.Second); err != nil {
			errs = append(errs, fmt.Errorf("the collector: %w", err))
		}
	}
	if s.Cluster != nil {
		s.Cluster.Stop()
	}
	if s.Sink != nil {
		s.Sink.Stop()
	}
	return errors.Join(errs...)
}

// StopCollector stops the collector (SIGTERM: the receiver's last
// collection is sent, the exporters drain), so that the sink holds
// everything; Stop does it too.
func (s *Scenario) StopCollector() error {
	if err := s.Collector.Stop(15 * time.Second); err != nil {
		return fmt.Errorf("the collector did not stop cleanly: %w; its last lines:\n%s", err, s.Collector.Tail())
	}
	return nil
}

// MkdirOnDisk makes a temporary directory for Options.Dir on a disk: in the
// system's temporary directory when that is on one, else in /var/tmp (a tmpfs
// /tmp is no disk to throttle).
func MkdirOnDisk(prefix string) (string, error) {
	var errs []error
	for _, parent := range []string{os.TempDir(), "/var/tmp"} {
		if _, err := diskOf(parent); err != nil {
			errs = append(errs, err)
			continue
		}
		return os.MkdirTemp(parent, prefix)
	}
	return "", errors.Join(errs...)
}

// rateText describes the load's cap on puts a second.
func rateText(rate int) string {
	if rate <= 0 {
		return "uncapped"
	}
	return fmt.Sprintf("at most %d puts a second", rate)
}
