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
	"go.opentelemetry.io/collector/component"
	"go.yaml.in/yaml/v3"

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

// The components these tests load the examples with (factories, stand-ins
// included) are the distribution's: `otelcol-etcd components` lists the same
// names, so that an example cannot pass here with a component the built
// collector lacks, nor builder-config.yaml gain one these tests do not know.
func TestDistributionHasTheExamplesComponents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bin, err := collector.Binary(ctx, "", bpftest.Log(t))
	require.NoError(t, err)
	out, err := exec.CommandContext(ctx, bin, "components").Output()
	require.NoError(t, err)
	type named []struct {
		Name string `yaml:"name"`
	}
	var listed struct {
		Receivers  named `yaml:"receivers"`
		Processors named `yaml:"processors"`
		Exporters  named `yaml:"exporters"`
		Extensions named `yaml:"extensions"`
	}
	require.NoError(t, yaml.Unmarshal(out, &listed))
	byKind := map[string]named{"receivers": listed.Receivers, "processors": listed.Processors, "exporters": listed.Exporters, "extensions": listed.Extensions}
	names := func(kind string) []string {
		var n []string
		for _, c := range byKind[kind] {
			n = append(n, c.Name)
		}
		return n
	}
	f := factories(t)
	for kind, types := range map[string][]component.Type{
		"receivers":  keys(f.Receivers),
		"processors": keys(f.Processors),
		"exporters":  keys(f.Exporters),
		"extensions": keys(f.Extensions),
	} {
		want := make([]string, len(types))
		for i, typ := range types {
			want[i] = typ.String()
		}
		assert.ElementsMatch(t, want, names(kind), "%s: the tests' factories vs `otelcol-etcd components`", kind)
	}
}

// keys are the types of m's factories, without the aliases MakeFactoryMap adds
// (otlp for otlp_grpc).
func keys[F interface{ Type() component.Type }](m map[component.Type]F) []component.Type {
	var k []component.Type
	for typ, f := range m {
		if f.Type() == typ {
			k = append(k, typ)
		}
	}
	return k
}
