//go:build linux

package scenario

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "needs root to make cgroups and move processes: run the tests with sudo")
	}
}

// gatedDD starts dd making n synchronous 4 KiB writes into dir once the file
// dir/go exists: the test moves it into a cgroup before it writes.
func gatedDD(t *testing.T, dir string, n int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `while [ ! -e go ]; do sleep 0.02; done; exec dd if=/dev/zero of=out bs=4k count=`+
		strconv.Itoa(n)+` oflag=direct,dsync status=none`)
	cmd.Dir = dir
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func release(t *testing.T, dir string) time.Time {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go"), nil, 0o644))
	return time.Now()
}

// The throttle slows a process's synchronous writes to the kernel's pace
// (ThrottleIOPS), the kernel counts them in the group, and removing it leaves
// no cgroup and the process where it was.
func TestThrottle(t *testing.T) {
	requireRoot(t)
	const writes = 6
	// Unthrottled, for comparison: the same writes on the same disk.
	free := t.TempDir()
	cmd := gatedDD(t, free, writes)
	start := release(t, free)
	require.NoError(t, cmd.Wait())
	unthrottled := time.Since(start)

	dir := t.TempDir()
	cmd = gatedDD(t, dir, writes)
	pid := cmd.Process.Pid
	in, err := throttle(pid, dir)
	require.NoError(t, err)
	group, err := cgroupOf(pid, true)
	require.NoError(t, err)
	assert.Contains(t, group, groupPrefix+strconv.Itoa(os.Getpid()))

	start = release(t, dir)
	require.NoError(t, cmd.Wait())
	throttled := time.Since(start)
	t.Logf("%d O_DSYNC writes of 4 KiB: %s unthrottled, %s at %d write IOPS", writes, unthrottled, throttled, ThrottleIOPS)

	hier, err := ioHierarchy()
	require.NoError(t, err)
	groupDir := filepath.Join(hier.root, group)
	if hier.v1 {
		// The kernel's count of the group's write bios: all but the first
		// second's worth (a fresh group's budget) waited for a slot.
		serviced, err := os.ReadFile(filepath.Join(groupDir, "blkio.throttle.io_serviced"))
		require.NoError(t, err)
		m := regexp.MustCompile(`(?m)^\d+:\d+ Write (\d+)$`).FindStringSubmatch(string(serviced))
		require.NotNil(t, m, "no write count in blkio.throttle.io_serviced:\n%s", serviced)
		bios, _ := strconv.Atoi(m[1])
		t.Logf("the kernel counted %d write bios in the group", bios)
		assert.GreaterOrEqual(t, bios, writes)
		assert.Greater(t, throttled, time.Duration(bios-ThrottleIOPS)*time.Second/ThrottleIOPS)
		assert.Less(t, unthrottled, throttled/4)
	}

	require.NoError(t, in.undo())
	assert.NoDirExists(t, groupDir)
}

// A thread started while the process is being moved ends up in the group too,
// and all come back home.
func TestThrottleMovesEveryThread(t *testing.T) {
	requireRoot(t)
	etcd := bpftest.RequireEtcd(t) // a Go program: many threads
	dir := t.TempDir()
	cmd := exec.Command(etcd, "--data-dir", filepath.Join(dir, "data"), "--listen-client-urls", "http://127.0.0.1:0",
		"--advertise-client-urls", "http://127.0.0.1:2379", "--listen-peer-urls", "http://127.0.0.1:0")
	cmd.Stderr, cmd.Stdout = nil, nil
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	time.Sleep(500 * time.Millisecond)
	pid := cmd.Process.Pid
	home, err := cgroupOf(pid, true)
	require.NoError(t, err)

	in, err := throttle(pid, dir)
	require.NoError(t, err)
	tids, err := threads(pid)
	require.NoError(t, err)
	require.Greater(t, len(tids), 1)
	for _, tid := range tids {
		assert.Contains(t, threadCgroup(t, pid, tid), groupPrefix, "thread %d", tid)
	}
	require.NoError(t, in.undo())
	tids, err = threads(pid)
	require.NoError(t, err)
	for _, tid := range tids {
		assert.Equal(t, home, threadCgroup(t, pid, tid), "thread %d is home", tid)
	}
}

func threadCgroup(t *testing.T, pid, tid int) string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid) + "/cgroup")
	require.NoError(t, err)
	for line := range strings.Lines(string(data)) {
		if parts := strings.SplitN(strings.TrimSpace(line), ":", 3); len(parts) == 3 && parts[1] == "blkio" {
			return parts[2]
		}
	}
	t.Fatalf("no blkio line in %s", data)
	return ""
}

// A group whose maker is gone (killed with SIGKILL) is removed by the next
// throttle; a live maker's is not.
func TestStaleGroupsRemoved(t *testing.T) {
	requireRoot(t)
	hier, err := ioHierarchy()
	require.NoError(t, err)
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	stale := filepath.Join(hier.root, groupPrefix+strconv.Itoa(dead.Process.Pid)+"-1")
	live := filepath.Join(hier.root, groupPrefix+"1-1") // pid 1 lives
	require.NoError(t, os.Mkdir(stale, 0o755))
	require.NoError(t, os.Mkdir(live, 0o755))
	t.Cleanup(func() { _ = syscall.Rmdir(stale); _ = syscall.Rmdir(live) })

	cmd := exec.Command("sleep", "30")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	in, err := throttle(cmd.Process.Pid, t.TempDir())
	require.NoError(t, err)
	require.NoError(t, in.undo())
	assert.NoDirExists(t, stale)
	assert.DirExists(t, live)
}

// CPU contention pins the process to one CPU with busy hogs there; undoing it
// stops the hogs and gives the process its CPUs back.
func TestContend(t *testing.T) {
	requireRoot(t)
	cmd := exec.Command("sleep", "30")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	var before unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(pid, &before))

	in, err := contend(pid, t.TempDir())
	require.NoError(t, err)
	var during unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(pid, &during))
	assert.Equal(t, 1, during.Count())
	require.Len(t, in.pids, CPUHogs)
	for _, hog := range in.pids {
		var set unix.CPUSet
		require.NoError(t, unix.SchedGetaffinity(hog, &set))
		assert.Equal(t, during, set, "hog %d shares the member's CPU", hog)
		// On a busy machine a hog may wait a while for its share of the CPU.
		assert.Eventually(t, func() bool { return cpuTicks(t, hog) > 0 }, 10*time.Second, 50*time.Millisecond, "hog %d burns CPU", hog)
	}

	require.NoError(t, in.undo())
	var after unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(pid, &after))
	assert.Equal(t, before, after)
	for _, hog := range in.pids {
		assert.ErrorIs(t, syscall.Kill(hog, 0), syscall.ESRCH, "hog %d stopped", hog)
	}
}

// cpuTicks is utime+stime of pid from /proc/pid/stat.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	require.NoError(t, err)
	_, rest, _ := strings.Cut(string(data), ") ")
	f := strings.Fields(rest) // field 3 (state) is f[0]; utime is field 14, stime 15
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// The neighbour writes to the disk until undone, which stops it and removes
// its file.
func TestNeighbour(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	in, err := neighbour(dir)
	require.NoError(t, err)
	require.Len(t, in.pids, 1)
	time.Sleep(time.Second)
	st, err := os.Stat(filepath.Join(dir, "neighbour.data"))
	require.NoError(t, err)
	assert.Greater(t, st.Size(), int64(64<<10), "it wrote")
	require.NoError(t, in.undo())
	assert.NoFileExists(t, filepath.Join(dir, "neighbour.data"))
	assert.ErrorIs(t, syscall.Kill(in.pids[0], 0), syscall.ESRCH)
}
