//go:build linux && (amd64 || arm64)

package host

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeSys lays out /sys/class/block and /sys/dev/block for a disk sda (8:0) with a
// partition sda1 (8:1), as the kernel links them.
func fakeSys(t *testing.T) {
	root := t.TempDir()
	disk := filepath.Join(root, "devices", "pci0", "block", "sda")
	part := filepath.Join(disk, "sda1")
	require.NoError(t, os.MkdirAll(part, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(disk, "dev"), []byte("8:0\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(part, "dev"), []byte("8:1\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(part, "partition"), []byte("1\n"), 0o644))
	for dir, links := range map[string]map[string]string{
		"class": {"sda": disk, "sda1": part},
		"dev":   {"8:0": disk, "8:1": part},
	} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, dir), 0o755))
		for name, target := range links {
			require.NoError(t, os.Symlink(target, filepath.Join(root, dir, name)))
		}
	}
	replace(t, &sysClassBlock, filepath.Join(root, "class"))
	replace(t, &sysDevBlock, filepath.Join(root, "dev"))
}

func TestResolveDisk(t *testing.T) {
	fakeSys(t)
	sda := Disk{Name: "sda", Dev: 8 << 20}
	for _, tt := range []struct {
		name    string
		want    Disk
		wantErr []string
	}{
		{name: "sda", want: sda},
		{name: "sda1", want: sda},
		{name: "sdb", wantErr: []string{`disk "sdb" is not a block device on this host`, "/sys/block"}},
		{name: "..", wantErr: []string{`disk ".." is not a device name`}},
		{name: "/nonexistent/sda", wantErr: []string{`disk "/nonexistent/sda"`, "no such file"}},
		{name: "/dev/null", wantErr: []string{`disk "/dev/null" is not a block device`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveDisk(tt.name)
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				assert.Equal(t, tt.want, got)
				return
			}
			for _, want := range tt.wantErr {
				assert.ErrorContains(t, err, want)
			}
		})
	}
	assert.Equal(t, "sda", DiskName(8<<20|1), "a partition's disk")
	assert.Equal(t, "8:7", DiskName(8<<20|7), "a device /sys does not list")
}

// replace sets *v to value for the rest of the test.
func replace[T any](t *testing.T, v *T, value T) {
	old := *v
	*v = value
	t.Cleanup(func() { *v = old })
}
