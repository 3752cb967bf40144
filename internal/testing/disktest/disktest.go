//go:build linux

// Package disktest gives a test a quiet disk of its own, an ext4 file system that
// nothing else writes to, so that its /sys/block/<disk>/stat deltas are the test's
// own I/O exactly: a virtio drive when the environment names one (the QEMU guests
// of make kernels), else a loop device over an image in the test's temporary
// directory.
package disktest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

// Env names a block device holding an empty ext4 file system for the tests, such
// as /dev/vdb; scripts/kernels.sh gives its guests one.
const Env = "ETCDEBPF_TEST_DISK"

// Disk is a mounted quiet disk.
type Disk struct {
	Name string // in /sys/block, such as loop3 or vdb
	Dev  uint32 // kernel encoding, MAJOR << 20 | MINOR
	Dir  string // where its file system is mounted
}

// Quiet mounts a quiet ext4 disk for the test and unmounts (and detaches) it at cleanup.
func Quiet(t testing.TB) Disk {
	t.Helper()
	bpftest.RequireBPF(t) // root, for mount and losetup
	device := os.Getenv(Env)
	if device == "" {
		device = loopDevice(t)
	}
	dir := t.TempDir()
	if err := unix.Mount(device, dir, "ext4", unix.MS_NOATIME, ""); err != nil {
		t.Fatalf("mounting %s on %s: %v", device, dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	var st unix.Stat_t
	if err := unix.Stat(device, &st); err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(device)
	if _, err := os.Stat(filepath.Join("/sys/block", name)); err != nil {
		t.Fatalf("%s is not a whole disk in /sys/block (%v): the stat comparison needs one", device, err)
	}
	return Disk{Name: name, Dev: unix.Major(st.Rdev)<<20 | unix.Minor(st.Rdev), Dir: dir}
}

// loopDevice makes a 64 MiB ext4 image, fully initialised so that no background
// thread writes to it later, and attaches it to a free loop device.
func loopDevice(t testing.TB) string {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			bpftest.SkipOrFail(t, fmt.Sprintf("%s not found (e2fsprogs, util-linux): the quiet disk needs it", tool))
		}
	}
	image := filepath.Join(t.TempDir(), "disk.img")
	run(t, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", image, "64M")
	device := strings.TrimSpace(run(t, "losetup", "--find", "--show", image))
	t.Cleanup(func() { run(t, "losetup", "--detach", device) })
	return device
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Stat is a disk's /sys/block/<disk>/stat: the kernel's own count of completed I/O.
type Stat struct {
	Reads, Writes, Discards, Flushes uint64
}

// ReadStat reads /sys/block/<name>/stat.
func ReadStat(t testing.TB, name string) Stat {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/sys/block", name, "stat"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data))
	field := func(i int) uint64 { // 1-based, as Documentation/block/stat.rst numbers them
		if i > len(f) {
			return 0 // discards (4.18+) and flushes (5.5+) are missing on older kernels
		}
		n, err := strconv.ParseUint(f[i-1], 10, 64)
		if err != nil {
			t.Fatalf("/sys/block/%s/stat field %d: %v", name, i, err)
		}
		return n
	}
	return Stat{Reads: field(1), Writes: field(5), Discards: field(12), Flushes: field(16)}
}

// Sub is s - o, field by field.
func (s Stat) Sub(o Stat) Stat {
	return Stat{Reads: s.Reads - o.Reads, Writes: s.Writes - o.Writes, Discards: s.Discards - o.Discards, Flushes: s.Flushes - o.Flushes}
}
