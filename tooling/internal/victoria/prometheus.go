package victoria

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// PrometheusConfig is a Prometheus configuration with the OTLP settings
// docs/backends.md gives and the rules file at rulesPath evaluated every
// second; more (scrape_configs) is appended.
func PrometheusConfig(rulesPath, more string) string {
	return fmt.Sprintf(`global:
  evaluation_interval: 1s
otlp:
  promote_resource_attributes: [host.name, process.pid, process.command_args, container.id]
rule_files: [%q]
`, rulesPath) + more
}

// WriteShortRules writes into dir a copy of the shipped rules
// (examples/prometheus/etcdebpf-rules.yaml under the checkout root) whose
// for: durations are d (ShortenFor), and returns its path: alerts that fire
// within a run of minutes.
func WriteShortRules(root, dir string, d time.Duration) (string, error) {
	shipped, err := os.ReadFile(filepath.Join(root, "examples", "prometheus", "etcdebpf-rules.yaml"))
	if err != nil {
		return "", err
	}
	rules, err := ShortenFor(shipped, d)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "etcdebpf-rules.yaml")
	return path, os.WriteFile(path, rules, 0o600)
}
