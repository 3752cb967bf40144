//go:build linux && (amd64 || arm64)

package host

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMountDevice(t *testing.T) {
	mountinfo := filepath.Join(t.TempDir(), "mountinfo")
	require.NoError(t, os.WriteFile(mountinfo, []byte(
		"22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"+
			"35 22 0:31 /@home /home rw shared:2 - btrfs /dev/vdb rw\n"+
			"36 22 bad / /bad rw - tmpfs tmpfs rw\n"), 0o644))
	tests := []struct {
		id           uint64
		major, minor uint32
		wantErr      string
	}{
		{id: 22, major: 254, minor: 1},
		{id: 35, major: 0, minor: 31},
		{id: 36, wantErr: `device "bad"`},
		{id: 99, wantErr: "mount 99 not found"},
	}
	for _, tt := range tests {
		major, minor, err := mountDevice(mountinfo, tt.id)
		if tt.wantErr != "" {
			assert.ErrorContains(t, err, tt.wantErr)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, [2]uint32{tt.major, tt.minor}, [2]uint32{major, minor}, "mount %d", tt.id)
	}
}

func TestKernelDev(t *testing.T) {
	// The kernel's MKDEV: 20 bits of minor, unlike userspace's dev_t encoding.
	assert.Equal(t, uint32(254<<20|1), kernelDev(254, 1))
	assert.Equal(t, uint32(0x100123), kernelDev(1, 0x123))
}

func TestExecutableIDRejects(t *testing.T) {
	dir := t.TempDir()
	_, err := ExecutableID(filepath.Join(dir, "missing"))
	assert.ErrorContains(t, err, "missing")
	_, err = ExecutableID(dir)
	assert.ErrorContains(t, err, "not a regular file")
	self, err := ExecutableID("/proc/self/exe")
	require.NoError(t, err)
	assert.NotZero(t, self.Ino)
}
