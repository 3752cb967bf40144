//go:build linux && (amd64 || arm64)

package examples

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/victoria"
)

// The shipped rules are valid, and their unit tests (Prometheus's own
// convention: promtool test rules, synthetic series, every alert firing and
// not firing) pass with the pinned Prometheus's promtool.
func TestPromtoolRules(t *testing.T) {
	promtool := victoria.ToolPath(victoria.InstallForTest(t, victoria.Prometheus), "promtool")
	tests, err := filepath.Glob("prometheus/tests/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, tests)
	for _, args := range [][]string{
		{"check", "rules", "prometheus/etcdebpf-rules.yaml"},
		append([]string{"test", "rules"}, tests...),
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		t.Logf("promtool %v:\n%s", args, out)
		assert.NoError(t, err, "promtool %v", args)
	}
}
