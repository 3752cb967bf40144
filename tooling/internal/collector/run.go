//go:build linux

package collector

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
)

// Pipeline describes a collector configuration: the etcdebpf receiver tracing
// given processes in a logs pipeline, exporting over OTLP/gRPC, OTLP/HTTP and to
// the debug exporter, each optional; and, when CollectionInterval is set, the same
// receiver in a metrics pipeline.
type Pipeline struct {
	Comm          string        // process name; "" keeps the receiver's default (etcd)
	PIDs          []int         // host PIDs to trace
	OTLPEndpoint  string        // host:port of an insecure OTLP/gRPC logs backend; "" for none
	OTLPHTTPLogs  string        // URL of an OTLP/HTTP logs endpoint (the otlp_http exporter's logs_endpoint); "" for none
	Debug         string        // the debug exporter's verbosity (basic, normal, detailed); "" for none
	FlushInterval time.Duration // the receiver's flush_interval; 0 for the default
	PayloadBytes  int           // the receiver's payload_bytes
	MinDuration   time.Duration // the receiver's min_duration: log records only for calls this long; 0 for all
	RingBuffer    int           // the receiver's ring_buffer_size in bytes; 0 for the default
	Compression   string        // the otlp_grpc exporter's compression; "" for its default (gzip)
	Batch         bool          // a batch processor (its defaults) in the logs pipeline
	BatchSize     int           // with Batch, its send_batch_size; 0 for its default (8192)
	// DetectHost adds the examples' resource_detection (env, then system) to
	// every pipeline: host.name and os.type, or OTEL_RESOURCE_ATTRIBUTES, on
	// every Resource, as the agents of a fleet send them (docs/fleet.md).
	DetectHost   bool
	SchedulerOff bool // the receiver's scheduler: false
	BlockOff     bool // the receiver's block: false
	// Executable is the receiver's executable: only processes running this
	// file (absolute path) are traced; "" for any.
	Executable string
	// Budget is the receiver's per-process budget; nil keeps its default.
	Budget *Budget
	// TelemetryPort, when positive, serves the collector's own metrics (level
	// normal: the receiver's otelcol_etcdebpf_* counters among them) in the
	// Prometheus format at TelemetryURL; 0 turns them off.
	TelemetryPort int

	// PprofFile, when set, adds contrib's pprof extension (only in a build that
	// has it: `make collector-pprof`) saving a CPU profile of the collector's
	// whole life to this file at shutdown, with its HTTP endpoint on PprofPort
	// of the loopback (its default port may be another collector's).
	PprofFile string
	PprofPort int

	// CollectionInterval, when positive, adds a metrics pipeline with the
	// receiver's histograms, sent this often.
	CollectionInterval time.Duration
	MetricsOverGRPC    bool   // the metrics pipeline exports to OTLPEndpoint too
	MetricsToDebug     bool   // and to the debug exporter
	OTLPHTTPMetrics    string // URL of an OTLP/HTTP metrics endpoint (metrics_endpoint); "" for none
	// OTLPHTTPMetricsAlso is a second backend's OTLP/HTTP metrics endpoint
	// (the demo's Prometheus beside its VictoriaMetrics); "" for none.
	OTLPHTTPMetricsAlso string
}

// Budget is the receiver's budget: records_per_second (0: none) and burst.
type Budget struct{ RecordsPerSecond, Burst int }

// TelemetryURL is where the collector serves its own metrics, when TelemetryPort is set.
func (p Pipeline) TelemetryURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/metrics", p.TelemetryPort)
}

// YAML is the collector configuration for p. The collector's own telemetry is
// reduced to its logs unless TelemetryPort is set, so that several collectors
// can run side by side (nothing listens on :8888).
func (p Pipeline) YAML() string {
	var b strings.Builder
	b.WriteString("receivers:\n  etcdebpf:\n")
	if p.Comm != "" {
		fmt.Fprintf(&b, "    comm: %q\n", p.Comm)
	}
	if len(p.PIDs) > 0 {
		pids := make([]string, len(p.PIDs))
		for i, pid := range p.PIDs {
			pids[i] = fmt.Sprint(pid)
		}
		fmt.Fprintf(&b, "    pids: [%s]\n", strings.Join(pids, ", "))
	}
	if p.FlushInterval > 0 {
		fmt.Fprintf(&b, "    flush_interval: %s\n", p.FlushInterval)
	}
	if p.PayloadBytes > 0 {
		fmt.Fprintf(&b, "    payload_bytes: %d\n", p.PayloadBytes)
	}
	if p.MinDuration > 0 {
		fmt.Fprintf(&b, "    min_duration: %s\n", p.MinDuration)
	}
	if p.CollectionInterval > 0 {
		fmt.Fprintf(&b, "    collection_interval: %s\n", p.CollectionInterval)
	}
	if p.RingBuffer > 0 {
		fmt.Fprintf(&b, "    ring_buffer_size: %d\n", p.RingBuffer)
	}
	if p.SchedulerOff {
		b.WriteString("    scheduler: false\n")
	}
	if p.BlockOff {
		b.WriteString("    block: false\n")
	}
	if p.Executable != "" {
		fmt.Fprintf(&b, "    executable: %q\n", p.Executable)
	}
	if p.Budget != nil {
		fmt.Fprintf(&b, "    budget:\n      records_per_second: %d\n      burst: %d\n", p.Budget.RecordsPerSecond, p.Budget.Burst)
	}
	var logsProcessors, metricsProcessors []string
	if p.DetectHost || p.Batch {
		b.WriteString("processors:\n")
	}
	if p.DetectHost {
		b.WriteString("  resource_detection:\n    detectors: [env, system]\n    system:\n      hostname_sources: [os]\n")
		logsProcessors = append(logsProcessors, "resource_detection")
		metricsProcessors = append(metricsProcessors, "resource_detection")
	}
	if p.Batch {
		b.WriteString("  batch:\n")
		if p.BatchSize > 0 {
			fmt.Fprintf(&b, "    send_batch_size: %d\n", p.BatchSize)
		}
		logsProcessors = append(logsProcessors, "batch")
	}
	var logs, metrics []string
	b.WriteString("exporters:\n")
	if p.Debug != "" {
		// Its own logger: the collector's samples repeated messages away.
		fmt.Fprintf(&b, "  debug:\n    verbosity: %s\n    use_internal_logger: false\n", p.Debug)
		logs = append(logs, "debug")
		if p.MetricsToDebug {
			metrics = append(metrics, "debug")
		}
	}
	if p.OTLPEndpoint != "" {
		fmt.Fprintf(&b, "  otlp_grpc:\n    endpoint: %q\n    tls:\n      insecure: true\n    retry_on_failure:\n      max_elapsed_time: 30s\n", p.OTLPEndpoint)
		if p.Compression != "" {
			fmt.Fprintf(&b, "    compression: %s\n", p.Compression)
		}
		logs = append(logs, "otlp_grpc")
		if p.MetricsOverGRPC {
			metrics = append(metrics, "otlp_grpc")
		}
	}
	if p.OTLPHTTPLogs != "" || p.OTLPHTTPMetrics != "" {
		// One exporter: each signal goes to its own endpoint.
		b.WriteString("  otlp_http:\n")
		if p.OTLPHTTPLogs != "" {
			fmt.Fprintf(&b, "    logs_endpoint: %q\n", p.OTLPHTTPLogs)
			logs = append(logs, "otlp_http")
		}
		if p.OTLPHTTPMetrics != "" {
			fmt.Fprintf(&b, "    metrics_endpoint: %q\n", p.OTLPHTTPMetrics)
			metrics = append(metrics, "otlp_http")
		}
		b.WriteString("    retry_on_failure:\n      max_elapsed_time: 30s\n")
	}
	if p.OTLPHTTPMetricsAlso != "" {
		fmt.Fprintf(&b, "  otlp_http/also:\n    metrics_endpoint: %q\n    retry_on_failure:\n      max_elapsed_time: 30s\n", p.OTLPHTTPMetricsAlso)
		metrics = append(metrics, "otlp_http/also")
	}
	if p.PprofFile != "" {
		fmt.Fprintf(&b, "extensions:\n  pprof:\n    endpoint: 127.0.0.1:%d\n    save_to_file: %q\n", p.PprofPort, p.PprofFile)
	}
	if p.TelemetryPort > 0 {
		fmt.Fprintf(&b, "service:\n  telemetry:\n    metrics:\n      level: normal\n      readers:\n        - pull:\n            exporter:\n              prometheus:\n                host: 127.0.0.1\n                port: %d\n", p.TelemetryPort)
	} else {
		b.WriteString("service:\n  telemetry:\n    metrics:\n      level: none\n")
	}
	if p.PprofFile != "" {
		b.WriteString("  extensions: [pprof]\n")
	}
	fmt.Fprintf(&b, "  pipelines:\n    logs:\n      receivers: [etcdebpf]\n%s      exporters: [%s]\n", processorsLine(logsProcessors), strings.Join(logs, ", "))
	if p.CollectionInterval > 0 {
		fmt.Fprintf(&b, "    metrics:\n      receivers: [etcdebpf]\n%s      exporters: [%s]\n", processorsLine(metricsProcessors), strings.Join(metrics, ", "))
	}
	return b.String()
}

// processorsLine is a pipeline's processors entry, or nothing for none.
func processorsLine(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return "      processors: [" + strings.Join(names, ", ") + "]\n"
}

// Collector is a running collector subprocess in its own process group.
type Collector struct {
	*subprocess.Process
	ConfigPath string
}

// Options of Start.
type Options struct {
	Binary     string
	ConfigPath string
	LogPath    string    // the collector's stdout and stderr are written here
	Echo       io.Writer // if set, every output line is copied here too, prefixed "collector | "
	Env        []string  // added to this process's environment (for ${env:...} in the config)
	Args       []string  // more command-line arguments, such as a second --config merged over the first
}

// Start starts the collector. It gets SIGTERM if this process dies, and Stop
// ends it and anything it started (its process group): SIGTERM makes the
// receiver detach its BPF programs and flush, and the exporters drain.
// WaitReady waits for the log line that says every component has started.
func Start(opts Options) (*Collector, error) {
	p, err := subprocess.Start(subprocess.Options{
		Name:       "the collector",
		Path:       opts.Binary,
		Args:       append([]string{"--config", opts.ConfigPath}, opts.Args...),
		Env:        opts.Env,
		LogPath:    opts.LogPath,
		Echo:       opts.Echo,
		EchoPrefix: "collector | ",
		Ready:      "Everything is ready",
	})
	if err != nil {
		return nil, err
	}
	return &Collector{Process: p, ConfigPath: opts.ConfigPath}, nil
}

// Run writes p's configuration into dir, starts bin with it and waits until it
// is ready; the collector's log goes to dir too. On error nothing is left running.
func Run(ctx context.Context, bin string, p Pipeline, dir string, echo io.Writer) (*Collector, error) {
	cfgPath := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(cfgPath, []byte(p.YAML()), 0o600); err != nil {
		return nil, err
	}
	col, err := Start(Options{Binary: bin, ConfigPath: cfgPath, LogPath: filepath.Join(dir, "collector.log"), Echo: echo})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := col.WaitReady(ctx); err != nil {
		_ = col.Stop(10 * time.Second)
		return nil, fmt.Errorf("%w; config %s:\n%s", err, cfgPath, p.YAML())
	}
	return col, nil
}
