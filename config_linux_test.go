//go:build linux && (amd64 || arm64)

package etcdebpfreceiver

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

func TestValidatePIDsUpToTheTargetPIDsMap(t *testing.T) {
	maxPIDs, err := tracer.MaxTargetPIDs()
	require.NoError(t, err)
	cfg := createDefaultConfig()
	for pid := 1; pid <= maxPIDs; pid++ {
		cfg.PIDs = append(cfg.PIDs, pid)
	}
	require.NoError(t, cfg.Validate(), "as many pids as the map holds")
	cfg.PIDs = append(cfg.PIDs, maxPIDs+1)
	assert.ErrorContains(t, cfg.Validate(), fmt.Sprintf("pids: %d entries, at most %d are supported", maxPIDs+1, maxPIDs))
}

// The disk under the test's own files, by name and by path, is one disk.
func TestResolveDisksOfThisHost(t *testing.T) {
	var st unix.Stat_t
	require.NoError(t, unix.Stat(t.TempDir(), &st))
	if unix.Major(st.Dev) == 0 {
		t.Skipf("the test's directory is on a file system without a block device (%d:%d)", unix.Major(st.Dev), unix.Minor(st.Dev))
	}
	dev := unix.Major(st.Dev)<<20 | unix.Minor(st.Dev)
	disk, err := host.ResolveDisk(host.DiskName(dev))
	require.NoError(t, err)
	cfg := createDefaultConfig()
	cfg.Disks = []string{disk.Name, "/dev/" + disk.Name}
	require.NoError(t, cfg.Validate())
	devs, err := cfg.resolveDisks()
	require.NoError(t, err)
	assert.Equal(t, []uint32{disk.Dev}, devs, "one disk, named twice")
}
