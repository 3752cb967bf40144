package victoria

import (
	"bytes"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// ShortenFor returns a Prometheus rules file (or a PrometheusRule's spec) with
// every rule's `for:` set to d and nothing else changed: the one override the
// live tests make to the shipped rules, so that an alert fires within a test's
// minutes instead of after the 5 minutes it waits for in production.
func ShortenFor(rules []byte, d time.Duration) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(rules, &doc); err != nil {
		return nil, err
	}
	n := 0
	var walk func(*yaml.Node)
	walk = func(node *yaml.Node) {
		if node.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(node.Content); i += 2 {
				if node.Content[i].Value == "for" && node.Content[i+1].Kind == yaml.ScalarNode {
					node.Content[i+1].Value = d.String()
					n++
				}
			}
		}
		for _, c := range node.Content {
			walk(c)
		}
	}
	walk(&doc)
	if n == 0 {
		return nil, fmt.Errorf("no rule with a for: duration")
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	return out.Bytes(), enc.Close()
}
