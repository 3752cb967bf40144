//go:build !linux || !(amd64 || arm64)

package etcdebpfreceiver

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
)

// Where the BPF side does not build, creating the receiver fails with the platform
// and where it runs: never a receiver that starts and traces nothing.
func TestReceiverRefusesThisPlatform(t *testing.T) {
	_, err := newReceiver(receivertest.NewNopSettings(metadata.Type), createDefaultConfig())
	require.Error(t, err)
	assert.Contains(t, err.Error(), runtime.GOOS+"/"+runtime.GOARCH)
	assert.Contains(t, err.Error(), "amd64 or arm64")
}
