//go:build linux

package etcdebpfreceiver

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

func TestValidatePIDsUpToTheTargetPIDsMap(t *testing.T) {
	maxPIDs, err := bpf.MaxTargetPIDs()
	require.NoError(t, err)
	cfg := createDefaultConfig()
	for pid := 1; pid <= maxPIDs; pid++ {
		cfg.PIDs = append(cfg.PIDs, pid)
	}
	require.NoError(t, cfg.Validate(), "as many pids as the map holds")
	cfg.PIDs = append(cfg.PIDs, maxPIDs+1)
	assert.ErrorContains(t, cfg.Validate(), fmt.Sprintf("pids: %d entries, at most %d are supported", maxPIDs+1, maxPIDs))
}

// Validate's names are the kernel side's names.
func TestConfigNamesMatchTheKernel(t *testing.T) {
	for _, name := range syscallNames {
		_, ok := bpf.ParseSyscallType(name)
		assert.True(t, ok, "syscall %q", name)
	}
	for _, name := range fdKindNames {
		_, ok := bpf.ParseFdKind(name)
		assert.True(t, ok, "fd kind %q", name)
	}
	assert.Len(t, syscallNames, int(bpf.MonitorSyscallTypeSYSCALL_SYNC_FILE_RANGE))
	assert.Len(t, fdKindNames, int(bpf.MonitorFdKindFD_KIND_OTHER)+1)
}
