//go:build linux

package examples

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
)

// The distribution itself (the built collector, with contrib's real
// resource_detection processor) accepts every example: `otelcol-etcd validate`
// loads, unmarshals and validates a config without starting it.
func TestDistributionValidatesExamples(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute) // a cold ocb build takes minutes
	defer cancel()
	bin, err := collector.Binary(ctx, "", bpftest.Log(t))
	require.NoError(t, err)
	for _, path := range append(slices.Clone(agentExamples), "kubernetes/gateway.yaml") {
		cmd := exec.CommandContext(ctx, bin, "validate", "--config", path)
		cmd.Env = append(os.Environ(), "OTLP_ENDPOINT=otel-gateway.example:4317")
		out, err := cmd.CombinedOutput()
		assert.NoError(t, err, "%s validate --config %s:\n%s", bin, path, out)
	}
}
