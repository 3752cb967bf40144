package victoria

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The override touches the alerts' for: and nothing else of the shipped rules.
func TestShortenForChangesOnlyFor(t *testing.T) {
	shipped, err := os.ReadFile(filepath.Join("..", "..", "..", "examples", "prometheus", "etcdebpf-rules.yaml"))
	require.NoError(t, err)
	short, err := ShortenFor(shipped, 2*time.Second)
	require.NoError(t, err)

	type rule map[string]any
	var before, after struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(shipped, &before))
	require.NoError(t, yaml.Unmarshal(short, &after))
	alerts := 0
	for g := range after.Groups {
		for r, got := range after.Groups[g].Rules {
			want := before.Groups[g].Rules[r]
			if _, ok := want["for"]; ok {
				alerts++
				assert.Equal(t, "2s", got["for"], "%v", got["alert"])
				delete(got, "for")
				delete(want, "for")
			}
		}
	}
	assert.Equal(t, before, after)
	assert.Equal(t, 3, alerts, "every alert waits for: 5m as shipped")
}
