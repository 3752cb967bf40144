//go:build linux

package collector

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
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

	// CollectionInterval, when positive, adds a metrics pipeline with the
	// receiver's histograms, sent this often.
	CollectionInterval time.Duration
	MetricsOverGRPC    bool   // the metrics pipeline exports to OTLPEndpoint too
	OTLPHTTPMetrics    string // URL of an OTLP/HTTP metrics endpoint (metrics_endpoint); "" for none
}

// YAML is the collector configuration for p. The collector's own telemetry is
// reduced to its logs, so that several collectors can run side by side
// (nothing listens on :8888).
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
	if p.CollectionInterval > 0 {
		fmt.Fprintf(&b, "    collection_interval: %s\n", p.CollectionInterval)
	}
	var logs, metrics []string
	b.WriteString("exporters:\n")
	if p.Debug != "" {
		// Its own logger: the collector's samples repeated messages away.
		fmt.Fprintf(&b, "  debug:\n    verbosity: %s\n    use_internal_logger: false\n", p.Debug)
		logs = append(logs, "debug")
	}
	if p.OTLPEndpoint != "" {
		fmt.Fprintf(&b, "  otlp_grpc:\n    endpoint: %q\n    tls:\n      insecure: true\n    retry_on_failure:\n      max_elapsed_time: 30s\n", p.OTLPEndpoint)
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
	b.WriteString("service:\n  telemetry:\n    metrics:\n      level: none\n")
	fmt.Fprintf(&b, "  pipelines:\n    logs:\n      receivers: [etcdebpf]\n      exporters: [%s]\n", strings.Join(logs, ", "))
	if p.CollectionInterval > 0 {
		fmt.Fprintf(&b, "    metrics:\n      receivers: [etcdebpf]\n      exporters: [%s]\n", strings.Join(metrics, ", "))
	}
	return b.String()
}

// readyLine is what the collector logs once every component has started.
const readyLine = "Everything is ready"

// Collector is a running collector subprocess in its own process group.
type Collector struct {
	cmd     *exec.Cmd
	LogPath string

	ready    chan struct{}
	exited   chan struct{}
	waitErr  error
	mu       sync.Mutex
	tail     []string // last lines of its output
	stopOnce sync.Once
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

// Start starts the collector. It is killed if this process dies (Pdeathsig),
// and Stop ends it and anything it started (its process group).
func Start(opts Options) (*Collector, error) {
	logFile, err := os.Create(opts.LogPath)
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	cmd := exec.Command(opts.Binary, append([]string{"--config", opts.ConfigPath}, opts.Args...)...)
	cmd.Env = append(os.Environ(), opts.Env...)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("starting the collector %s: %w", opts.Binary, err)
	}
	pw.Close()
	c := &Collector{cmd: cmd, LogPath: opts.LogPath, ready: make(chan struct{}), exited: make(chan struct{})}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		defer logFile.Close()
		defer pr.Close()
		var readyOnce sync.Once
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			if opts.Echo != nil {
				fmt.Fprintln(opts.Echo, "collector | "+line)
			}
			c.mu.Lock()
			c.tail = append(c.tail, line)
			if len(c.tail) > 20 {
				c.tail = c.tail[len(c.tail)-20:]
			}
			c.mu.Unlock()
			if strings.Contains(line, readyLine) {
				readyOnce.Do(func() { close(c.ready) })
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		err := cmd.Wait()
		<-copied
		c.waitErr = err
		close(c.exited)
	}()
	return c, nil
}

// PID is the collector's process id.
func (c *Collector) PID() int { return c.cmd.Process.Pid }

// Exited is closed when the collector has exited.
func (c *Collector) Exited() <-chan struct{} { return c.exited }

// Tail is the last lines the collector wrote.
func (c *Collector) Tail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.tail, "\n")
}

// WaitReady waits until the collector reports that its pipelines run.
func (c *Collector) WaitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-c.exited:
		return fmt.Errorf("the collector exited during start-up (%v); its last lines:\n%s", c.waitErr, c.Tail())
	case <-ctx.Done():
		return fmt.Errorf("the collector did not become ready (%w); its last lines:\n%s", ctx.Err(), c.Tail())
	}
}

// Stop asks the collector to shut down (SIGTERM: the receiver detaches its BPF
// programs and flushes, the exporters drain) and waits at most timeout before
// killing its process group. It returns the collector's exit error, if any.
func (c *Collector) Stop(timeout time.Duration) error {
	c.stopOnce.Do(func() {
		pgid := c.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(timeout):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-c.exited
			c.waitErr = errors.Join(c.waitErr, fmt.Errorf("the collector did not stop within %v of SIGTERM and was killed", timeout))
		}
	})
	<-c.exited
	return c.waitErr
}
