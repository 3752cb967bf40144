//go:build linux && (amd64 || arm64)

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
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

// Env names a block device holding an empty ext4 file system for the tests, such
// as /dev/vdb; scripts/kernels.sh gives its guests one.
const Env = "ETCDEBPF_TEST_DISK"

// SlowEnv names a block device that serves its requests slowly, holding an empty
// ext4 file system; scripts/kernels.sh gives its guests one (QEMU's throttled drive).
const SlowEnv = "ETCDEBPF_TEST_SLOW_DISK"

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
	return mount(t, device)
}

// Slow mounts the slow disk SlowEnv names, as Quiet does; without one the test is
// skipped: a device slow in its own hardware cannot be made on the host (a
// throttle in the kernel would sit before the device), and make kernels' guests,
// which CI runs, have one.
func Slow(t testing.TB) Disk {
	t.Helper()
	bpftest.RequireBPF(t)
	device := os.Getenv(SlowEnv)
	if device == "" {
		t.Skipf("no slow device (%s): make kernels' guests have one, a drive QEMU throttles", SlowEnv)
	}
	return mount(t, device)
}

// mount mounts device's ext4 file system for the test and unmounts it at cleanup.
func mount(t testing.TB, device string) Disk {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount(device, dir, "ext4", unix.MS_NOATIME, ""); err != nil {
		t.Fatalf("mounting %s on %s: %v", device, dir, err)
	}
	t.Cleanup(func() {
		// The next test mounts the same disk (the guests have one): leave it empty.
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "lost+found" {
				if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
					t.Errorf("emptying the quiet disk: %v", err)
				}
			}
		}
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

// Throttle makes a cgroup that limits writes to dev (kernel encoding) to iops a
// second, with the cgroup v1 blkio controller (blkio.throttle.write_iops_device)
// where it is mounted or mountable, else cgroup v2's io.max, and returns the
// function that moves a process into it. The cgroup (and any mount made for it)
// is removed at cleanup; the process must have exited by then.
func Throttle(t testing.TB, dev uint32, iops int) (join func(pid int)) {
	t.Helper()
	rule := fmt.Sprintf("%d:%d", dev>>20, dev&(1<<20-1))
	if root := blkioV1(t); root != "" {
		dir := makeCgroup(t, root)
		write(t, filepath.Join(dir, "blkio.throttle.write_iops_device"), fmt.Sprintf("%s %d", rule, iops))
		return func(pid int) { write(t, filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)) }
	}
	if root := ioV2(); root != "" {
		write(t, filepath.Join(root, "cgroup.subtree_control"), "+io")
		dir := makeCgroup(t, root)
		write(t, filepath.Join(dir, "io.max"), fmt.Sprintf("%s wiops=%d", rule, iops))
		return func(pid int) { write(t, filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)) }
	}
	bpftest.SkipOrFail(t, "neither cgroup v1's blkio controller nor cgroup v2's io controller is available: the kernel needs CONFIG_BLK_DEV_THROTTLING")
	return nil
}

// blkioV1 is where the cgroup v1 blkio hierarchy is mounted; it mounts one for
// the test where none is and the controller is free.
func blkioV1(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		_, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(post)
		if ok && len(f) >= 3 && f[0] == "cgroup" && slices.Contains(strings.Split(f[2], ","), "blkio") {
			return strings.Fields(line)[4]
		}
	}
	dir := t.TempDir()
	if err := unix.Mount("cgroup", dir, "cgroup", 0, "blkio"); err != nil {
		t.Logf("mounting cgroup v1 blkio: %v (bound to cgroup v2, or not built)", err)
		return ""
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting the blkio hierarchy at %s: %v", dir, err)
		}
	})
	return dir
}

// ioV2 is the cgroup v2 root when its io controller is available.
func ioV2() string {
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err == nil && slices.Contains(strings.Fields(string(data)), "io") {
			return root
		}
	}
	return ""
}

func makeCgroup(t testing.TB, root string) string {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprintf("etcdebpf-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("removing the test's cgroup: %v", err)
		}
	})
	return dir
}

func write(t testing.TB, path, value string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		t.Fatalf("writing %q to %s: %v", value, path, err)
	}
}

// SyncFS writes back the file system under dir (syncfs(2)): afterwards it is quiet.
func SyncFS(t testing.TB, dir string) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		t.Fatalf("syncfs %s: %v", dir, err)
	}
}
