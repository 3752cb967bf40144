//go:build linux && (amd64 || arm64)

package victoria

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

// StartForTest builds p into the cache (once), or skips where that is
// impossible, and runs it with its data in a temporary directory until the
// test ends.
func StartForTest(t testing.TB, p Product, extra ...string) *Server {
	t.Helper()
	bin := InstallForTest(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := Start(ctx, p, bin, t.TempDir(), extra...)
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	return srv
}

// StartPrometheusForTest runs Prometheus with config as its configuration
// file (rule files by absolute path: it is written to a temporary directory)
// until the test ends.
func StartPrometheusForTest(t testing.TB, config string) *Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "prometheus.yml")
	require.NoError(t, os.WriteFile(path, []byte(config), 0o600))
	return StartForTest(t, Prometheus, "--config.file="+path)
}

// InstallForTest builds p into the cache (once), or skips where that is
// impossible, and returns its binary's path.
func InstallForTest(t testing.TB, p Product) string {
	t.Helper()
	if os.Geteuid() != 0 && os.Getenv("ETCDEBPF_CACHE") == "" {
		bpftest.SkipOrFail(t, "needs root to write the cache "+DefaultCache+" (or ETCDEBPF_CACHE)")
	}
	// A cold build of Prometheus takes minutes on a busy 2-vCPU machine: stop it
	// in time to report, before go test's own timeout.
	deadline := time.Now().Add(20 * time.Minute)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if end, ok := d.Deadline(); ok && end.Add(-30*time.Second).Before(deadline) {
			deadline = end.Add(-30 * time.Second)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	bin, err := Install(ctx, p, bpftest.Log(t))
	require.NoError(t, err)
	t.Logf("%s %s ready in %s", p.Name, p.Version, time.Since(start).Round(time.Millisecond))
	return bin
}
