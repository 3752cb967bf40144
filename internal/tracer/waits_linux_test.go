//go:build linux && (amd64 || arm64)

package tracer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/disktest"
)

// rewriteDirect is a child of the tests, a neighbour on their disk: it rewrites
// the same 10 MiB of path with O_DIRECT, 64 KiB a write, until killed.
func rewriteDirect(path string) {
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_WRONLY|unix.O_DIRECT, 0o600)
	if err != nil {
		os.Exit(2)
	}
	buf := alignedBlocks(16)
	for {
		for off := int64(0); off < 10<<20; off += int64(len(buf)) {
			if _, err := unix.Pwrite(fd, buf, off); err != nil {
				os.Exit(3)
			}
		}
	}
}

// dirtyNewFiles is a child of the journal test, a buffered neighbour on its file
// system: it writes new 8 MiB files without syncing them, deleting the oldest, until
// killed. Each needs blocks allocated, so in ext4's data=ordered mode the journal's
// next commit must write them first.
func dirtyNewFiles(dir string) {
	buf := bytes.Repeat([]byte{'n'}, 1<<20)
	for i := 0; ; i++ {
		name := filepath.Join(dir, fmt.Sprintf("neighbour-%d", i%3))
		_ = os.Remove(name)
		f, err := os.Create(name)
		if err != nil {
			os.Exit(2)
		}
		for range 8 {
			if _, err := f.Write(buf); err != nil {
				os.Exit(3)
			}
		}
		f.Close()
	}
}

// syncLoop is a child of the throttle test ("path:n"): once a line arrives on its
// standard input (it has been moved into the throttled cgroup), it writes 4 KiB and
// calls fdatasync n times, as etcd's WAL does, then exits.
func syncLoop(args string) {
	path, count, _ := strings.Cut(args, ":")
	n, err := strconv.Atoi(count)
	if err != nil {
		os.Exit(2)
	}
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		os.Exit(3)
	}
	if err := walLikeSyncs(path, n, false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	os.Exit(0)
}

// walLikeSyncs writes 4 KiB at successive offsets of path and fdatasyncs each, n
// times. preallocated, the file's space is reserved first with fallocate, as etcd's
// WAL segments are: each sync then also converts an unwritten extent, metadata the
// journal commits. Otherwise the file is written and synced once first, so that the
// syncs only overwrite.
func walLikeSyncs(path string, n int, preallocated bool) error {
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	size := int64(n) * 4096
	if preallocated {
		err = unix.Fallocate(fd, 0, 0, size)
	} else {
		_, err = unix.Pwrite(fd, make([]byte, size), 0)
		if err == nil {
			err = unix.Fsync(fd)
		}
	}
	if err != nil {
		return err
	}
	buf := bytes.Repeat([]byte{'w'}, 4096)
	for i := range n {
		if _, err := unix.Pwrite(fd, buf, int64(i)*4096); err != nil {
			return err
		}
		if err := unix.Fdatasync(fd); err != nil {
			return err
		}
	}
	return nil
}

// alignedBlocks is n blocks of 4 KiB aligned to 4 KiB, as O_DIRECT wants.
func alignedBlocks(n int) []byte {
	buf := make([]byte, (n+1)*4096)
	off := (4096 - int(uintptr(unsafe.Pointer(&buf[0]))&4095)) & 4095
	return buf[off : off+n*4096]
}

// childCommand is the test binary as a child of kind with arg.
func childCommand(t *testing.T, kind, arg string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%s", childEnv, kind, arg))
	cmd.Stderr = os.Stderr
	return cmd
}

// traceSyncsOn traces pid's fdatasyncs with the scheduler part and the disks'
// view of d, until the test ends.
func traceSyncsOn(t *testing.T, d disktest.Disk, pid int) *Tracer {
	t.Helper()
	requireSchedInfo(t)
	tr, err := Start(Options{PIDs: []int{pid}, RingBufferSize: 1 << 20, Syscalls: []string{"fdatasync"},
		Block: true, Disks: []string{d.Name}, Scheduler: true})
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	require.Empty(t, tr.Warnings())
	return tr
}

// syncParts sums the parts of pid's fdatasync records.
func syncParts(t *testing.T, records []bpf.MonitorEvent, pid int) (sum Parts, syncs int, causes map[Part]int) {
	t.Helper()
	causes = map[Part]int{}
	for _, ev := range records {
		if int(ev.Pid) != pid || ev.Type != uint16(bpf.MonitorSyscallTypeSYSCALL_FDATASYNC) {
			continue
		}
		rec := Record{ev: &ev}
		w, ok := rec.Waits()
		require.True(t, ok, "the scheduler part measured the call: %+v", ev)
		require.LessOrEqual(t, offCPU(ev), ev.DurationNs, "the parts fit in the call: %+v", ev)
		parts := w.Split(ev.DurationNs)
		var total uint64
		for p, ns := range parts {
			sum[p] += ns
			total += ns
		}
		require.Equal(t, ev.DurationNs, total, "the parts add up to the call: %+v", parts)
		causes[parts.Dominant()]++
		syncs++
	}
	return sum, syncs, causes
}

func share(p Parts, parts ...Part) float64 {
	var all, of uint64
	for _, ns := range p {
		all += ns
	}
	for _, part := range parts {
		of += p[part]
	}
	if all == 0 {
		return 0
	}
	return float64(of) / float64(all)
}

func logParts(t *testing.T, what string, p Parts, syncs int, causes map[Part]int) {
	t.Helper()
	var b strings.Builder
	for part, ns := range p {
		if ns > 0 {
			fmt.Fprintf(&b, " %s %.1f%%", Part(part), 100*share(p, Part(part)))
		}
	}
	t.Logf("%s: %d syncs, %v in all:%s; dominant parts %v", what, syncs, time.Duration(p[PartCPU]+sumOff(p)), b.String(), causes)
}

func sumOff(p Parts) uint64 {
	var off uint64
	for part, ns := range p {
		if Part(part) != PartCPU {
			off += ns
		}
	}
	return off
}

// Syncs that overwrite a file on a quiet disk wait for their own I/O only: the
// writeback of their page and the device's cache flush. Their own I/O's time on the
// device is at most what /sys/block/<disk>/stat says the disk spent writing and
// flushing over the window, the kernel's own account, and most of it.
func TestWaitsOfSyncsOnAQuietDisk(t *testing.T) {
	d := disktest.Quiet(t)
	tr := traceSyncsOn(t, d, os.Getpid())

	n := 200
	if testing.Short() {
		n = 50
	}
	path := filepath.Join(d.Dir, "wal")
	before := readDiskTimes(t, d.Name)
	runtime.LockOSThread()
	require.NoError(t, walLikeSyncs(path, n, false))
	runtime.UnlockOSThread()
	after := readDiskTimes(t, d.Name)

	sum, syncs, causes := syncParts(t, drainAll(t, tr), os.Getpid())
	logParts(t, "overwrites on "+d.Name, sum, syncs, causes)
	require.Equal(t, n, syncs)
	assert.Greater(t, share(sum, PartIOQueue, PartIODevice), 0.6*share(sum, PartIOQueue, PartIODevice, PartJournal, PartLock, PartThrottle, PartOther),
		"the syncs' blocked time was mostly their own I/O")
	// Every wait of such a sync is one the table names, found within the frames read.
	assert.Less(t, share(sum, PartOther), 0.05, "no wait left unnamed")
	diskMs := after.sub(before)
	t.Logf("own I/O on the device %v; /sys/block/%s: writing %d ms, flushing %d ms", time.Duration(sum[PartIODevice]), d.Name, diskMs.writing, diskMs.flushing)
	// The kernel's account is in whole milliseconds per request: allow one per sync.
	assert.LessOrEqual(t, sum[PartIODevice], uint64(time.Duration(diskMs.writing+diskMs.flushing+uint64(n))*time.Millisecond),
		"the device time is at most the disk's")
	assert.Greater(t, sum[PartIODevice], sum[PartIOQueue], "an idle disk serves a sync's I/O at once: on the device, not queued")
}

// Syncs on a device that is itself slow (make kernels' guests: a drive QEMU
// serves at 25 requests a second) wait for their own I/O on the device: their
// time is mostly io_device, within what /sys/block says the disk spent.
func TestWaitsNameASlowDevice(t *testing.T) {
	d := disktest.Slow(t)
	tr := traceSyncsOn(t, d, os.Getpid())

	const n = 15
	path := filepath.Join(d.Dir, "wal")
	runtime.LockOSThread()
	require.NoError(t, walLikeSyncs(path, 1, false)) // the file's blocks, before the window
	before := readDiskTimes(t, d.Name)
	require.NoError(t, walLikeSyncs(path, n, false))
	after := readDiskTimes(t, d.Name)
	runtime.UnlockOSThread()

	sum, syncs, causes := syncParts(t, drainAll(t, tr), os.Getpid())
	logParts(t, "on a slow device", sum, syncs, causes)
	require.GreaterOrEqual(t, syncs, n)
	diskMs := after.sub(before)
	t.Logf("own I/O on the device %v; /sys/block/%s: writing %d ms, flushing %d ms", time.Duration(sum[PartIODevice]), d.Name, diskMs.writing, diskMs.flushing)
	assert.Greater(t, share(sum, PartIODevice), 0.5, "the syncs waited for the device")
	assert.Greater(t, sum[PartIODevice], 4*sum[PartIOQueue], "not in the kernel before it")
	assert.LessOrEqual(t, sum[PartIODevice], uint64(time.Duration(diskMs.writing+diskMs.flushing+uint64(2*syncs))*time.Millisecond),
		"the device time is at most the disk's")
}

// diskTimes are the milliseconds a disk spent writing and flushing (/sys/block/<disk>/stat fields 8 and 17).
type diskTimes struct{ writing, flushing uint64 }

func readDiskTimes(t *testing.T, name string) diskTimes {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/sys/block", name, "stat"))
	require.NoError(t, err)
	f := strings.Fields(string(data))
	field := func(i int) uint64 {
		if i > len(f) {
			return 0
		}
		n, err := strconv.ParseUint(f[i-1], 10, 64)
		require.NoError(t, err)
		return n
	}
	return diskTimes{writing: field(8), flushing: field(17)}
}

func (a diskTimes) sub(b diskTimes) diskTimes {
	return diskTimes{writing: a.writing - b.writing, flushing: a.flushing - b.flushing}
}

// A writer in a cgroup limited to 20 write IOPS: its syncs wait for their own I/O,
// which the throttle holds before the device, so their time is mostly io_queue, and
// what they spent on the device is a small part of it.
func TestWaitsNameTheThrottle(t *testing.T) {
	d := disktest.Quiet(t)
	join := disktest.Throttle(t, d.Dev, 20)
	n := 30
	if testing.Short() {
		n = 15
	}
	child := childCommand(t, "syncs", fmt.Sprintf("%s:%d", filepath.Join(d.Dir, "throttled"), n))
	stdin, err := child.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, child.Start())
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	tr := traceSyncsOn(t, d, child.Process.Pid)
	join(child.Process.Pid)
	_, err = stdin.Write([]byte("go\n"))
	require.NoError(t, err)
	require.NoError(t, child.Wait())

	sum, syncs, causes := syncParts(t, drainAll(t, tr), child.Process.Pid)
	logParts(t, "throttled to 20 write IOPS", sum, syncs, causes)
	require.Equal(t, n, syncs)
	assert.Greater(t, share(sum, PartIOQueue), 0.5, "the throttle held the syncs' own I/O before the device")
	assert.Greater(t, sum[PartIOQueue], 4*sum[PartIODevice], "the device served it quickly")
	assert.Greater(t, causes[PartIOQueue], syncs/2, "most syncs name the queue")
}

// A WAL-like writer on an ext4 with a journal, beside a neighbour that dirties new
// files on the same file system: each sync commits the journal, which in
// data=ordered mode first writes the neighbour's data, so the syncs name the
// journal. bpftrace, watching the same thread in the same run, sums the time it was
// blocked (from leaving the CPU to its wake-up) with jbd2_log_wait_commit on its
// kernel stack: the receiver's journal time is within 20% of it.
func TestWaitsNameTheJournal(t *testing.T) {
	d := disktest.Quiet(t)
	tr := traceSyncsOn(t, d, os.Getpid())

	n := 100
	if testing.Short() {
		n = 30
	}
	neighbour := childCommand(t, "dirty", d.Dir)
	require.NoError(t, neighbour.Start())
	t.Cleanup(func() { _ = neighbour.Process.Kill(); _ = neighbour.Wait() })
	time.Sleep(200 * time.Millisecond) // the neighbour has dirtied pages

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	var watcher *offCPUWatcher
	if !testing.Short() {
		watcher = watchOffCPU(t, tid)
	}
	require.NoError(t, walLikeSyncs(filepath.Join(d.Dir, "wal"), n, true))
	var stacks map[string]uint64
	if watcher != nil {
		stacks = watcher.stop(t)
	}
	_ = neighbour.Process.Kill()

	sum, syncs, causes := syncParts(t, drainAll(t, tr), os.Getpid())
	logParts(t, "beside a buffered neighbour on a journalled ext4", sum, syncs, causes)
	require.Equal(t, n, syncs)
	assert.Greater(t, share(sum, PartJournal), share(sum, PartIOQueue, PartIODevice, PartLock, PartThrottle, PartOther, PartRunnable),
		"the journal took more of the syncs' time than any other wait")
	if watcher == nil {
		t.Log("short mode: the comparison with bpftrace is not made")
		return
	}
	var journal uint64
	for stack, ns := range stacks {
		if strings.Contains(stack, "jbd2_log_wait_commit") {
			journal += ns
		}
	}
	t.Logf("journal: the receiver %v, bpftrace %v", time.Duration(sum[PartJournal]), time.Duration(journal))
	require.NotZero(t, journal, "bpftrace saw the thread wait for the journal")
	assert.InEpsilon(t, float64(journal), float64(sum[PartJournal]), 0.2, "the receiver's journal time and bpftrace's")
}

// offCPUWatcher is bpftrace summing a thread's blocked time by its kernel stack.
type offCPUWatcher struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	cancel context.CancelFunc
}

// watchOffCPU starts bpftrace on tid: from its switch out blocked (sched_switch with
// a prev_state other than running) to its wake-up (sched_wakeup), by the stack it left with.
func watchOffCPU(t *testing.T, tid int) *offCPUWatcher {
	t.Helper()
	path, err := exec.LookPath("bpftrace")
	if err != nil {
		bpftest.SkipOrFail(t, "bpftrace not found (apt-get install bpftrace): it is the independent measurement")
	}
	script := fmt.Sprintf(`
tracepoint:sched:sched_switch /args->prev_pid == %[1]d && args->prev_state != 0/ { @out = nsecs; @stack = kstack; }
tracepoint:sched:sched_wakeup /args->pid == %[1]d && @out != 0/ { @blocked[@stack] = sum(nsecs - @out); @out = 0; }
BEGIN { printf("attached\n"); }
END { clear(@out); clear(@stack); }`, tid)
	ctx, cancel := context.WithCancel(context.Background())
	w := &offCPUWatcher{cmd: exec.CommandContext(ctx, path, "-e", script), cancel: cancel}
	w.cmd.Cancel = func() error { return w.cmd.Process.Signal(syscall.SIGINT) }
	w.cmd.WaitDelay = 10 * time.Second
	w.cmd.Stdout = &w.out
	w.cmd.Stderr = os.Stderr
	require.NoError(t, w.cmd.Start())
	t.Cleanup(func() { cancel(); _ = w.cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(w.outString(), "attached") {
		require.True(t, time.Now().Before(deadline), "bpftrace did not attach: %s", w.outString())
		time.Sleep(50 * time.Millisecond)
	}
	return w
}

func (w *offCPUWatcher) outString() string { return w.out.String() }

// stop ends bpftrace and parses what it printed: "@blocked[\n\tframe\n...]: ns".
func (w *offCPUWatcher) stop(t *testing.T) map[string]uint64 {
	t.Helper()
	w.cancel()
	_ = w.cmd.Wait()
	stacks := map[string]uint64{}
	re := regexp.MustCompile(`(?s)@blocked\[(.*?)\]: (\d+)`)
	for _, m := range re.FindAllStringSubmatch(w.out.String(), -1) {
		ns, err := strconv.ParseUint(m[2], 10, 64)
		require.NoError(t, err)
		stacks[m[1]] += ns
	}
	return stacks
}

// Where /proc/kallsyms shows no addresses (no CAP_SYSLOG), Start still succeeds,
// says what is missing and how to get it, and a call's blocked time is all "other",
// with no function named: nothing is attributed to a wait it was not.
func TestWaitsWithoutKernelAddresses(t *testing.T) {
	bpftest.RequireBPF(t)
	requireSchedInfo(t)
	zeros := filepath.Join(t.TempDir(), "kallsyms")
	var b strings.Builder
	for name := range waitFunctions {
		fmt.Fprintf(&b, "0000000000000000 T %s\n", name)
	}
	require.NoError(t, os.WriteFile(zeros, []byte(b.String()), 0o600))
	replace(t, &kallsymsPath, zeros)
	tr, err := Start(Options{PIDs: []int{os.Getpid()}, RingBufferSize: 1 << 20, Syscalls: []string{"write"}, Scheduler: true})
	require.NoError(t, err)
	defer tr.Close()
	require.Len(t, tr.Warnings(), 1)
	assert.Contains(t, tr.Warnings()[0].Error(), "CAP_SYSLOG")

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var pipe [2]int
	require.NoError(t, unix.Pipe2(pipe[:], unix.O_CLOEXEC))
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	size, err := unix.FcntlInt(uintptr(pipe[1]), unix.F_GETPIPE_SZ, 0)
	require.NoError(t, err)
	_, err = unix.Write(pipe[1], make([]byte, size))
	require.NoError(t, err)
	go func() { // drains the full pipe after a pause, so that the next write blocks
		time.Sleep(50 * time.Millisecond)
		_, _ = unix.Read(pipe[0], make([]byte, size+1))
	}()
	_, err = unix.Write(pipe[1], []byte{1})
	require.NoError(t, err)
	// A signal (the Go runtime's preemption, SIGURG) can interrupt the blocked write:
	// it then returns -ERESTARTSYS and the kernel makes it again, two records for one
	// write. The blocked time is the sum over the records of the one-byte write.
	tid := unix.Gettid()
	var blocked []bpf.MonitorEvent
	for len(blocked) == 0 || blocked[len(blocked)-1].Ret != 1 {
		ev := drainRecords(t, tr, tid, 1, pipe[1])[0]
		if ev.Count == 1 {
			blocked = append(blocked, ev)
		}
	}
	var other uint64
	for _, ev := range blocked {
		other += ev.WaitNs[WaitOther]
		assert.Zero(t, ev.OtherWaitIp, "no function is named")
		for w, ns := range ev.WaitNs {
			if Wait(w) != WaitOther && Wait(w) != WaitRunnable {
				assert.Zero(t, ns, "no named wait: %+v", ev)
			}
		}
	}
	assert.Greater(t, other, uint64(20*time.Millisecond), "the blocked write's wait is other: %+v", blocked)
}
