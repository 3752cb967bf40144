//go:build linux && (amd64 || arm64)

package host

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FileID names a file as the kernel's BPF side sees it: the inode number and the
// s_dev of the file system holding it (MAJOR << 20 | MINOR).
type FileID struct {
	Dev uint32
	Ino uint64
}

// ExecutableID resolves path, following symlinks, to the FileID a process running
// it has as its executable.
//
// The device comes from the mount table, not from stat: stat's st_dev is what the
// file system reports (btrfs reports a device per subvolume), while the kernel's
// task->mm->exe_file carries its super block's s_dev, which /proc/self/mountinfo shows.
func ExecutableID(path string) (FileID, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_TYPE|unix.STATX_INO|unix.STATX_MNT_ID, &st); err != nil {
		return FileID{}, fmt.Errorf("executable %q: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return FileID{}, fmt.Errorf("executable %q is not a regular file; give the path of the etcd binary", path)
	}
	id := FileID{Ino: st.Ino, Dev: kernelDev(st.Dev_major, st.Dev_minor)}
	if st.Mask&unix.STATX_MNT_ID == 0 { // before Linux 5.8: stat's device is the best there is
		return id, nil
	}
	major, minor, err := mountDevice("/proc/self/mountinfo", st.Mnt_id)
	if err != nil {
		return FileID{}, fmt.Errorf("executable %q: %w", path, err)
	}
	id.Dev = kernelDev(major, minor)
	return id, nil
}

// kernelDev encodes a device number the way the kernel keeps it in s_dev.
func kernelDev(major, minor uint32) uint32 { return major<<20 | minor }

// mountDevice finds the device (field 3, "major:minor") of mount id in a mountinfo file.
func mountDevice(mountinfo string, id uint64) (major, minor uint32, err error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	want := strconv.FormatUint(id, 10)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[0] != want {
			continue
		}
		ma, mi, ok := strings.Cut(fields[2], ":")
		maj, err1 := strconv.ParseUint(ma, 10, 12)
		mnr, err2 := strconv.ParseUint(mi, 10, 20)
		if !ok || err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("%s: mount %s has device %q, not major:minor", mountinfo, want, fields[2])
		}
		return uint32(maj), uint32(mnr), nil
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("reading %s: %w", mountinfo, err)
	}
	return 0, 0, fmt.Errorf("mount %s not found in %s", want, mountinfo)
}

// RunningExecutables reports which of ids some process on the host runs.
func (fs Procfs) RunningExecutables(ids []FileID) map[FileID]bool {
	running := map[FileID]bool{}
	entries, err := os.ReadDir(fs.root)
	if err != nil {
		return running
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe := fs.path(pid, "exe")
		var st unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, exe, 0, unix.STATX_INO, &st); err != nil {
			continue // exited, or a kernel thread
		}
		for _, id := range ids {
			if st.Ino != id.Ino {
				continue
			}
			// A process whose mount this namespace cannot see counts as running it:
			// better an old file allowed a little longer than an etcd untraced.
			full, err := ExecutableID(exe)
			if full == id || err != nil && !errors.Is(err, os.ErrNotExist) {
				running[id] = true
			}
		}
	}
	return running
}
