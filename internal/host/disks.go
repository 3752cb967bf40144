//go:build linux && (amd64 || arm64)

package host

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Where the kernel lists block devices by dev_t and by name: variables for tests.
var (
	sysDevBlock   = "/sys/dev/block"
	sysClassBlock = "/sys/class/block"
)

// Disk is a whole disk as the block programs name it.
type Disk struct {
	Name string // as in /sys/block, such as vda
	Dev  uint32 // kernel encoding, MAJOR << 20 | MINOR
}

// ResolveDisk finds the whole disk a name stands for: a device name such as vda or
// vda1, or a device path such as /dev/vda; a partition maps to its disk.
func ResolveDisk(name string) (Disk, error) {
	var major, minor uint32
	if strings.HasPrefix(name, "/") {
		var st unix.Stat_t
		if err := unix.Stat(name, &st); err != nil {
			return Disk{}, fmt.Errorf("disk %q: %w; give a block device such as /dev/vda, or its name (vda)", name, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFBLK {
			return Disk{}, fmt.Errorf("disk %q is not a block device; give a block device such as /dev/vda, or its name (vda)", name)
		}
		major, minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	} else {
		if name == "" || strings.ContainsAny(name, "/") || name == "." || name == ".." {
			return Disk{}, fmt.Errorf("disk %q is not a device name; give a name from /sys/block such as vda, or a path such as /dev/vda", name)
		}
		data, err := os.ReadFile(filepath.Join(sysClassBlock, name, "dev"))
		if err != nil {
			return Disk{}, fmt.Errorf("disk %q is not a block device on this host (%w); see lsblk or /sys/block for the names", name, err)
		}
		if _, err := fmt.Sscanf(strings.TrimSpace(string(data)), "%d:%d", &major, &minor); err != nil {
			return Disk{}, fmt.Errorf("disk %q: reading its device number: %w", name, err)
		}
	}
	return wholeDisk(major, minor)
}

// wholeDisk maps a block device, a partition or not, to its whole disk through /sys.
func wholeDisk(major, minor uint32) (Disk, error) {
	dir, err := filepath.EvalSymlinks(filepath.Join(sysDevBlock, fmt.Sprintf("%d:%d", major, minor)))
	if err != nil {
		return Disk{}, fmt.Errorf("block device %d:%d is not in %s: %w", major, minor, sysDevBlock, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
		dir = filepath.Dir(dir)
	}
	data, err := os.ReadFile(filepath.Join(dir, "dev"))
	if err != nil {
		return Disk{}, fmt.Errorf("block device %d:%d: reading its disk's device number: %w", major, minor, err)
	}
	if _, err := fmt.Sscanf(strings.TrimSpace(string(data)), "%d:%d", &major, &minor); err != nil {
		return Disk{}, fmt.Errorf("block device %s: reading its device number: %w", dir, err)
	}
	return Disk{Name: filepath.Base(dir), Dev: major<<20 | minor}, nil
}

// DiskName is the name of the whole disk dev (kernel encoding) in /sys/block, or
// MAJOR:MINOR when /sys does not list it.
func DiskName(dev uint32) string {
	d, err := wholeDisk(dev>>20, dev&(1<<20-1))
	if err != nil {
		return fmt.Sprintf("%d:%d", dev>>20, dev&(1<<20-1))
	}
	return d.Name
}
