//go:build linux

package victoria

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/checkout"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
)

// Product is a backend that `go install` builds from the module proxy.
type Product struct {
	Name    string // the binary's name
	Package string // the main package
	Version string // the module version, pinned here
	// BuildTime is what a cold build takes on a 2-vCPU machine, for the progress line.
	BuildTime string
	// Tools are more main packages of the same module, built beside it (ToolPath).
	Tools []string
	// ListenFlag and DataFlag are the flags that take the loopback address and
	// the data directory; HealthPath answers 200 once the backend is ready.
	ListenFlag, DataFlag, HealthPath string
	// OTLPMetricsPath is where it takes OTLP/HTTP metrics; "" for none.
	OTLPMetricsPath string
	// Args are flags Start passes besides the listen address and data path.
	Args []string
}

// The backends and their versions: the one place they are pinned.
var (
	// Logs is VictoriaLogs (Apache-2.0), single node.
	Logs = Product{
		Name:       "victoria-logs",
		Package:    "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs",
		Version:    "v1.52.1",
		BuildTime:  "about a minute",
		ListenFlag: "-httpListenAddr", DataFlag: "-storageDataPath", HealthPath: "/health",
		Args: []string{"-loggerLevel=WARN"},
	}
	// Metrics is VictoriaMetrics (Apache-2.0), single node.
	Metrics = Product{
		Name:       "victoria-metrics",
		Package:    "github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics",
		Version:    "v1.151.0",
		BuildTime:  "about 2 minutes",
		ListenFlag: "-httpListenAddr", DataFlag: "-storageDataPath", HealthPath: "/health",
		OTLPMetricsPath: "/opentelemetry/v1/metrics",
		Args: []string{
			"-loggerLevel=WARN",
			// OTLP names as Prometheus spells them: etcd.syscall.duration in seconds
			// becomes etcd_syscall_duration_seconds_bucket/_count/_sum.
			"-opentelemetry.usePrometheusNaming",
			// Answer queries about the last seconds too (the default hides the last 30 s).
			"-search.latencyOffset=0s",
		},
	}
	// Prometheus (Apache-2.0) with its OTLP receiver, which stores OTLP
	// exponential histograms as native histograms; promtool checks and unit-tests
	// rule files. Its configuration file is the caller's (StartPrometheus).
	Prometheus = Product{
		Name:       "prometheus",
		Package:    "github.com/prometheus/prometheus/cmd/prometheus",
		Version:    "v0.316.0",
		Tools:      []string{"github.com/prometheus/prometheus/cmd/promtool"},
		BuildTime:  "about 5 minutes",
		ListenFlag: "--web.listen-address", DataFlag: "--storage.tsdb.path", HealthPath: "/-/ready",
		OTLPMetricsPath: "/api/v1/otlp/v1/metrics",
		Args: []string{
			"--web.enable-otlp-receiver",
			// A series' first OTLP point holds what it counted since its start
			// timestamp (a disk submitter's series starts when the process joins
			// the top). Without a zero stored at that start, rate() and increase()
			// skip that first point: a process whose bytes all fall in one
			// collection has one point and no rate at all (docs/backends.md).
			"--enable-feature=created-timestamp-zero-ingestion",
			"--log.level=warn",
		},
	}
)

// DefaultCache is the cache root shared with scripts/install-etcd.sh; the
// environment variable ETCDEBPF_CACHE overrides it.
const DefaultCache = "/var/cache/etcdebpf"

func cacheRoot() string {
	if dir := os.Getenv("ETCDEBPF_CACHE"); dir != "" {
		return dir
	}
	return DefaultCache
}

// binaryPath is where Install puts p's binary.
func (p Product) binaryPath() string {
	return filepath.Join(cacheRoot(), p.Name+"-"+p.Version, "bin", p.Name)
}

// Install returns the path of p's binary, building it with `go install` from
// the Go module proxy first when the cache lacks it. Progress lines go to
// progress; ctx bounds the build. Concurrent callers take turns on a lock file.
func Install(ctx context.Context, p Product, progress io.Writer) (string, error) {
	bin := p.binaryPath()
	if p.installed(bin) {
		return bin, nil
	}
	installDir := filepath.Dir(filepath.Dir(bin))
	cache := filepath.Dir(installDir)
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("creating the cache %s: %w (run as root, or set ETCDEBPF_CACHE to a writable directory)", cache, err)
	}
	unlock, err := subprocess.Lock(filepath.Join(cache, "."+p.Name+"-"+p.Version+".lock"), progress,
		fmt.Sprintf("==> waiting for another build of %s %s to finish", p.Name, p.Version))
	if err != nil {
		return "", err
	}
	defer unlock()
	if p.installed(bin) {
		return bin, nil
	}

	// Build into a scratch directory beside the final one, then rename: a build cut
	// short leaves nothing that looks installed.
	work, err := os.MkdirTemp(cache, ".tmp-"+p.Name+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	fmt.Fprintf(progress, "==> building %s %s from the Go module proxy into %s (%s, once)\n", p.Name, p.Version, installDir, p.BuildTime)
	start := time.Now()
	args := []string{"install", "-trimpath", p.Package + "@" + p.Version}
	for _, tool := range p.Tools {
		args = append(args, tool+"@"+p.Version)
	}
	cmd := exec.CommandContext(ctx, checkout.GoTool(), args...)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "GOBIN="+filepath.Join(work, "bin"), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOWORK=off")
	if err := subprocess.RunLong(ctx, cmd, progress, p.Name+" "); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("building %s %s: %w", p.Name, p.Version, err)
		}
		return "", fmt.Errorf("go install %s@%s failed: %w (its output is above; check that the Go module proxy is reachable: go env GOPROXY)", p.Package, p.Version, err)
	}
	if err := os.RemoveAll(installDir); err != nil {
		return "", err
	}
	if err := os.Rename(work, installDir); err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "==> built %s in %s\n", p.Name, time.Since(start).Round(time.Second))
	return bin, nil
}

// ToolPath is the path of the tool named name (the last element of one of
// p.Tools) beside bin, the path Install returned.
func ToolPath(bin, name string) string { return filepath.Join(filepath.Dir(bin), name) }

// installed reports whether bin and every tool beside it are there.
func (p Product) installed(bin string) bool {
	if !isExecutable(bin) {
		return false
	}
	for _, tool := range p.Tools {
		if !isExecutable(ToolPath(bin, path.Base(tool))) {
			return false
		}
	}
	return true
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}
