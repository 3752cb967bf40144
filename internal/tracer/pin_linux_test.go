//go:build linux && (amd64 || arm64)

package tracer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpfobjects"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter"
)

// testPinDir is a directory of this test's own under the BPF file system, gone
// when the test ends whatever it left there.
func testPinDir(t *testing.T) string {
	t.Helper()
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	dir := filepath.Join(bpffsRoot, fmt.Sprintf("etcdebpf-test-%d-%s", os.Getpid(), name))
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// pinnedOf is what pins keep of the objects a Start loaded: the links, which hold
// their programs, and the maps. A program loaded and not attached (sched_switch's
// without the scheduler part) goes with its agent.
func pinnedOf(objs bpfobjects.Held) bpfobjects.Held {
	return bpfobjects.Held{Maps: objs.Maps, Links: objs.Links}
}

// requirePinnableLinks skips a test of pinned sessions on a kernel whose
// tracepoint links cannot be pinned: TestPinnedSessionWhereLinksCannotBePinned
// covers those.
func requirePinnableLinks(t *testing.T) {
	t.Helper()
	if !bpftest.KernelAtLeast(t, 5, 15) {
		t.Skip("tracepoints attach through BPF links, which pins keep, from Linux 5.15")
	}
}

// monotonicNow is bpf_ktime_get_ns's clock: the records' StartNs.
func monotonicNow(t *testing.T) uint64 {
	var ts unix.Timespec
	require.NoError(t, unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts))
	return uint64(ts.Nano())
}

// recordsOf reads records until the deadline (or, flushed, until what was
// pending is read) and returns the start times of pid's.
func recordsOf(t *testing.T, tr *Tracer, pid int, deadline time.Time) []uint64 {
	t.Helper()
	tr.SetReadDeadline(deadline)
	var starts []uint64
	for {
		rec, err := tr.ReadRecord()
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrFlushed) {
			return starts
		}
		require.NoError(t, err)
		if int(rec.PID()) == pid {
			starts = append(starts, rec.StartNs())
		}
	}
}

// callsCounted is how many calls of syscall by pid tr's histograms counted.
func callsCounted(t *testing.T, tr *Tracer, pid int, syscall Syscall) uint64 {
	t.Helper()
	hists, err := tr.Histograms()
	require.NoError(t, err)
	var n uint64
	for _, h := range hists {
		if !h.Overflow && int(h.Key.PID) == pid && h.Key.Syscall == syscall {
			for _, b := range h.Buckets {
				n += uint64(b)
			}
		}
	}
	return n
}

// An agent killed while a process named etcd writes and syncs, and the next one
// started a second later: the second takes the first's programs over without
// loading any, its histograms count every call the process made, before, during
// and after the gap, under the first's StartTime, and each call the process made
// is a record one of them read or a loss counted in the kernel. Released, the
// second leaves nothing pinned nor loaded.
func TestPinnedSessionCountsOnAcrossAgents(t *testing.T) {
	bpftest.RequireBPF(t)
	requirePinnableLinks(t)
	dir := testPinDir(t)
	const calls = 3000 // a write and an fdatasync each, 1000 a second
	w := bpftest.StartWriterWith(t, bpftest.BuildWriter(t), etcdwriter.Options{
		Calls: calls, Size: 512, Path: filepath.Join(t.TempDir(), "wal"), Rate: 1000, Fdatasync: true,
	})
	// A 64 KiB ring holds about 250 records: the gap's 2000 overflow it.
	opts := Options{Comm: "etcd", PIDs: []int{w.PID()}, RingBufferSize: 64 << 10, Histograms: true, Pin: Pin{Path: dir}}

	var first *Tracer
	var err error
	firstObjs := bpftest.Started(t, func() { first, err = Start(opts) })
	require.NoError(t, err)
	report, ok := first.Pinned()
	require.True(t, ok, "pinned: %v", first.Warnings())
	assert.False(t, report.TookOver)
	assert.Empty(t, report.Replaced, "nothing was pinned before")
	t.Logf("the pinned maps hold %d bytes of kernel memory (memlock); %d links are pinned", report.MapBytes, len(firstObjs.Links))
	assert.NotZero(t, report.MapBytes)

	w.Begin(t)
	recordsFirst := len(recordsOf(t, first, w.PID(), time.Now().Add(time.Second)))
	syncsAtKill := callsCounted(t, first, w.PID(), SyscallFdatasync)
	// As at SIGKILL: the agent's fds close, nothing is unpinned.
	require.NoError(t, first.Close())
	gapStart := monotonicNow(t)
	bpftest.RequireAlive(t, pinnedOf(firstObjs)) // the programs stay attached, the maps stay
	// The gap lasts a second, and until the ring is full: read through its pin,
	// the kernel's counters say when a record first found no room.
	counters, err := ebpf.LoadPinnedMap(filepath.Join(dir, pinMonitorDir, "counters"), nil)
	require.NoError(t, err)
	time.Sleep(time.Second)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := bpf.ReadCounters(counters)
		require.NoError(t, err)
		if c.RingbufFull > 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the writer filled no ring in 30 s: %+v", c)
	}
	require.NoError(t, counters.Close())

	var second *Tracer
	secondObjs := bpftest.Started(t, func() {
		second, err = Start(Options{
			Comm: "etcd", PIDs: []int{w.PID()}, RingBufferSize: 64 << 10, Histograms: true, Pin: Pin{Path: dir, Release: true},
		})
	})
	require.NoError(t, err)
	gapEnd := monotonicNow(t)
	defer second.Close()
	report, ok = second.Pinned()
	require.True(t, ok)
	assert.True(t, report.TookOver, "the second agent takes the first's programs over")
	assert.Empty(t, report.Replaced)
	// A link's fdinfo names its program: the second holds the first's, and no other.
	assert.Subset(t, firstObjs.Programs, secondObjs.Programs, "taking over loads no program")
	assert.ElementsMatch(t, firstObjs.Links, secondObjs.Links, "the first agent's links, taken over")
	assert.True(t, first.StartTime().Equal(second.StartTime()), "the histograms continue under the first StartTime: %v, then %v",
		first.StartTime(), second.StartTime())
	syncsAtTakeover := callsCounted(t, second, w.PID(), SyscallFdatasync)
	assert.Greater(t, syncsAtTakeover, syncsAtKill, "the calls of the gap are counted")

	// What the ring held over the gap is read now, the rest as it comes.
	starts := recordsOf(t, second, w.PID(), time.Now().Add(500*time.Millisecond))
	w.Wait(t, time.Minute)
	require.NoError(t, second.FlushRecords())
	starts = append(starts, recordsOf(t, second, w.PID(), time.Now().Add(10*time.Second))...)
	// held: made before the takeover, left in the ring for the next agent. Made in the
	// gap only where the first agent had kept up before its kill: on a slow guest the
	// ring is already full of its unread records when the gap begins.
	held, inGap := 0, 0
	for _, ns := range starts {
		if ns < gapEnd {
			held++
			if ns > gapStart {
				inGap++
			}
		}
	}
	losses, err := second.Losses()
	require.NoError(t, err)
	lost := losses[w.PID()].RingbufFull
	writes, syncs := callsCounted(t, second, w.PID(), SyscallWrite), callsCounted(t, second, w.PID(), SyscallFdatasync)
	t.Logf("made %d writes and %d fdatasyncs; counted %d and %d (%d syncs by the first agent, %d more by the takeover); "+
		"records: %d read by the first agent, %d by the second (%d of them held by the ring at the takeover, %d made in the gap), %d lost to the full ring",
		calls, calls, writes, syncs, syncsAtKill, syncsAtTakeover-syncsAtKill, recordsFirst, len(starts), held, inGap, lost)
	assert.EqualValues(t, calls, writes, "every write, across the gap")
	assert.EqualValues(t, calls, syncs, "every fdatasync, across the gap")
	assert.Positive(t, held, "the records the ring held over the gap are read")
	assert.Positive(t, lost, "the gap overflows the ring: what it could not hold is counted")
	assert.EqualValues(t, 2*calls, uint64(recordsFirst+len(starts))+lost, "each call is a record read or a loss counted")

	// Released, as at an uninstall: nothing is pinned, nothing stays loaded.
	require.NoError(t, second.Close())
	_, err = os.Stat(dir)
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing is left pinned")
	bpftest.RequireGone(t, firstObjs)
}

// An agent of another configuration (or build) removes what is pinned, loads
// its own under a new StartTime, and says why; the old programs are gone.
func TestPinnedSessionReplacedWhenConfigurationDiffers(t *testing.T) {
	bpftest.RequireBPF(t)
	requirePinnableLinks(t)
	dir := testPinDir(t)
	var first *Tracer
	var err error
	firstObjs := bpftest.Started(t, func() {
		first, err = Start(Options{Comm: "etcd", RingBufferSize: 64 << 10, Histograms: true, Pin: Pin{Path: dir}})
	})
	require.NoError(t, err)
	require.NoError(t, first.Close())
	bpftest.RequireAlive(t, pinnedOf(firstObjs))

	var second *Tracer
	secondObjs := bpftest.Started(t, func() {
		second, err = Start(Options{Comm: "etcd", RingBufferSize: 64 << 10, Histograms: true, MinDuration: time.Millisecond,
			Pin: Pin{Path: dir, Release: true}})
	})
	require.NoError(t, err)
	defer second.Close()
	report, ok := second.Pinned()
	require.True(t, ok)
	assert.False(t, report.TookOver)
	assert.Contains(t, report.Replaced, "another configuration")
	assert.Empty(t, intersect(firstObjs.Programs, secondObjs.Programs), "its own programs are loaded")
	assert.True(t, second.StartTime().After(first.StartTime()), "a new StartTime: its histograms start from zero")
	bpftest.RequireGone(t, firstObjs)
	require.NoError(t, second.Close())
	bpftest.RequireGone(t, secondObjs)
}

// Two agents never share one pinned state: the second is refused, naming the fix.
func TestPinnedSessionRefusesASecondAgent(t *testing.T) {
	bpftest.RequireBPF(t)
	requirePinnableLinks(t)
	replace(t, &pinLockWait, 0)
	dir := testPinDir(t)
	opts := Options{Comm: "etcd", RingBufferSize: 64 << 10, Pin: Pin{Path: dir, Release: true}}
	first, err := Start(opts)
	require.NoError(t, err)
	defer first.Close()
	second, err := Start(opts)
	if second != nil {
		second.Close()
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), "another agent holds the kernel state pinned at "+dir)
	assert.Contains(t, err.Error(), "stop the other agent")
}

// Where the kernel cannot pin a tracepoint's link (perf-event attachments before
// 5.15; stood in for on newer kernels), Start says so and runs as unpinned: the
// session's objects go with it, and nothing stays pinned.
func TestPinnedSessionWhereLinksCannotBePinned(t *testing.T) {
	bpftest.RequireBPF(t)
	if bpftest.KernelAtLeast(t, 5, 15) {
		replace(t, &pinLinkAt, func(l link.Link, path string) error {
			if strings.HasPrefix(filepath.Base(path), "sys_") {
				return fmt.Errorf("perf event ioctl pin: %w", link.ErrNotSupported)
			}
			return l.Pin(path)
		})
	}
	dir := testPinDir(t)
	var tr *Tracer
	var err error
	objs := bpftest.Started(t, func() {
		tr, err = Start(Options{Comm: "etcd", RingBufferSize: 64 << 10, Histograms: true, Pin: Pin{Path: dir}})
	})
	require.NoError(t, err)
	defer tr.Close()
	_, pinned := tr.Pinned()
	assert.False(t, pinned)
	require.Len(t, tr.Warnings(), 1, "%v", tr.Warnings())
	assert.Contains(t, tr.Warnings()[0].Error(), "cannot pin the link of sys_exit_write")
	assert.Contains(t, tr.Warnings()[0].Error(), "as without pin_path")
	_, err = os.Stat(dir)
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing pinned")
	_, err = tr.Counters()
	require.NoError(t, err, "the session runs")
	require.NoError(t, tr.Close())
	bpftest.RequireGone(t, objs)
}

// A pin path off the BPF file system is refused with the fix; Start mounts none there.
func TestPinPathNotOnBPFFS(t *testing.T) {
	bpftest.RequireBPF(t)
	dir := filepath.Join(t.TempDir(), "etcdebpf")
	before := bpftest.OpenFDs(t)
	tr, err := Start(Options{Comm: "etcd", RingBufferSize: 64 << 10, Pin: Pin{Path: dir}})
	if tr != nil {
		tr.Close()
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), dir+" is not on a BPF file system")
	assert.Contains(t, err.Error(), "mount -t bpf bpf")
	bpftest.RequireNoNewFDs(t, before)
}

func intersect[T comparable](a, b []T) []T {
	var both []T
	for _, x := range a {
		if slices.Contains(b, x) {
			both = append(both, x)
		}
	}
	return both
}
