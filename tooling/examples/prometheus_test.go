package examples

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The PrometheusRule for the Prometheus Operator holds the rules file's groups,
// so that the two cannot drift apart.
func TestPrometheusRuleHoldsTheRulesFile(t *testing.T) {
	var rules struct {
		Groups []any `yaml:"groups"`
	}
	var manifest struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Spec       struct {
			Groups []any `yaml:"groups"`
		} `yaml:"spec"`
	}
	for path, into := range map[string]any{"prometheus/etcdebpf-rules.yaml": &rules, "prometheus/prometheusrule.yaml": &manifest} {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		require.NoError(t, yaml.Unmarshal(data, into), "%s", path)
	}
	assert.Equal(t, "monitoring.coreos.com/v1", manifest.APIVersion)
	assert.Equal(t, "PrometheusRule", manifest.Kind)
	require.NotEmpty(t, rules.Groups)
	assert.Equal(t, rules.Groups, manifest.Spec.Groups, "prometheusrule.yaml's spec.groups vs etcdebpf-rules.yaml's groups")
}
