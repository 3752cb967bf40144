//go:build linux && (amd64 || arm64)

package victoria

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

// StartForTest builds p into the cache (once), or skips where that is
// impossible, and runs it with its data in a temporary directory until the
// test ends.
func StartForTest(t testing.TB, p Product) *Server {
	t.Helper()
	if os.Geteuid() != 0 && os.Getenv("ETCDEBPF_CACHE") == "" {
		bpftest.SkipOrFail(t, "needs root to write the cache "+DefaultCache+" (or ETCDEBPF_CACHE)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	bin, err := Install(ctx, p, bpftest.Log(t))
	require.NoError(t, err)
	t.Logf("%s %s ready in %s", p.Name, p.Version, time.Since(start).Round(time.Millisecond))
	srv, err := Start(ctx, p, bin, t.TempDir())
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	return srv
}
