//go:build linux && (amd64 || arm64)

package tracer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/disktest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter"
)

// startBlock starts a tracer with the disks' view over the given disks and no process traced.
func startBlock(t *testing.T, disks ...string) *Tracer {
	t.Helper()
	tr, err := Start(Options{Comm: "no-such-process", RingBufferSize: 1 << 20, Block: true, Disks: disks})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close()) })
	return tr
}

// kernelStat is the block programs' completion counts of one disk, shaped like its /sys/block stat.
func kernelStat(t *testing.T, tr *Tracer, dev uint32) disktest.Stat {
	t.Helper()
	ops, err := tr.DiskOps()
	require.NoError(t, err)
	var s disktest.Stat
	for _, op := range ops {
		if op.Dev != dev {
			continue
		}
		switch op.Op {
		case DiskRead:
			s.Reads += op.Completed
		case DiskWrite:
			s.Writes += op.Completed
		case DiskDiscard:
			s.Discards += op.Completed
		case DiskFlush:
			s.Flushes += op.Completed
		}
	}
	return s
}

// quietSnapshot reads /sys/block's stat and the programs' counts at one instant: the
// stat read before and after the kernel's counts must agree, or the disk was busy.
func quietSnapshot(t *testing.T, tr *Tracer, d disktest.Disk) (sys, kernel disktest.Stat) {
	t.Helper()
	for range 50 {
		before := disktest.ReadStat(t, d.Name)
		kernel = kernelStat(t, tr, d.Dev)
		if after := disktest.ReadStat(t, d.Name); after == before {
			return before, kernel
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never stood still for a snapshot", d.Name)
	return
}

// TestDiskCountsMatchSysBlock: over a window of writes with O_DSYNC, fdatasyncs,
// O_DIRECT reads and a discard on a quiet disk, the programs' completed requests
// per operation equal /sys/block/<disk>/stat's deltas exactly.
func TestDiskCountsMatchSysBlock(t *testing.T) {
	d := disktest.Quiet(t)
	tr := startBlock(t, d.Name)
	covered, err := tr.CoveredDisks()
	require.NoError(t, err)
	require.Equal(t, []uint32{d.Dev}, covered)

	path := filepath.Join(d.Dir, "data")
	require.NoError(t, os.WriteFile(path, make([]byte, 1<<20), 0o600))
	disktest.SyncFS(t, d.Dir)

	sys0, k0 := quietSnapshot(t, tr, d)
	workload(t, d.Dir, path)
	sys1, k1 := quietSnapshot(t, tr, d)

	want, got := sys1.Sub(sys0), k1.Sub(k0)
	t.Logf("%s: /sys/block stat delta %+v, programs %+v", d.Name, want, got)
	assert.Equal(t, want, got)
	assert.NotZero(t, want.Writes)
	assert.NotZero(t, want.Flushes)
	assert.NotZero(t, want.Reads)

	ops, err := tr.DiskOps()
	require.NoError(t, err)
	for _, op := range ops {
		if op.Dev == d.Dev && op.Op == DiskWrite {
			assert.NotZero(t, op.Service.SumNs, "write service time")
			assert.NotZero(t, op.Queue.SumNs, "write queue time")
			assertExtremesHoldTheMean(t, op.Service)
			assertExtremesHoldTheMean(t, op.Queue)
		}
	}
	totals, err := tr.DiskTotals()
	require.NoError(t, err)
	total := totals[d.Dev]
	assert.Equal(t, k1.Reads+k1.Writes+k1.Discards+k1.Flushes, total.RequestsCompleted)
	assert.NotZero(t, total.DeviceNs)
	assert.GreaterOrEqual(t, total.BytesSubmitted, uint64(50*4096))
	c, err := tr.BlockCounters()
	require.NoError(t, err)
	assert.Zero(t, c.Untimed)
	assert.Zero(t, c.DisksFull)
}

// workload makes every kind of request the stat counts.
func workload(t *testing.T, dir, path string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "dsync"), os.O_CREATE|os.O_WRONLY|unix.O_DSYNC, 0o600)
	require.NoError(t, err)
	block := make([]byte, 4096)
	for range 50 {
		_, err := f.Write(block)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())

	g, err := os.OpenFile(filepath.Join(dir, "synced"), os.O_CREATE|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	for range 10 {
		_, err := g.Write(block)
		require.NoError(t, err)
		require.NoError(t, unix.Fdatasync(int(g.Fd())))
	}
	require.NoError(t, g.Close())

	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT, 0)
	require.NoError(t, err)
	buf := alignedBlock()
	for i := range 20 {
		_, err := unix.Pread(fd, buf, int64(i)*8192)
		require.NoError(t, err)
	}
	require.NoError(t, unix.Close(fd))

	require.NoError(t, os.Remove(filepath.Join(dir, "dsync")))
	disktest.SyncFS(t, dir)
	trim(t, dir)
	disktest.SyncFS(t, dir)
}

// alignedBlock is 4 KiB aligned to 4 KiB, as O_DIRECT wants.
func alignedBlock() []byte {
	buf := make([]byte, 8192)
	off := (4096 - int(uintptr(unsafe.Pointer(&buf[0]))&4095)) & 4095
	return buf[off : off+4096]
}

// trim discards the file system's free space (FITRIM), as fstrim does.
func trim(t *testing.T, dir string) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	r := struct{ start, len, minlen uint64 }{0, ^uint64(0), 0}
	const fitrim = 0xc0185879 // _IOWR('X', 121, struct fstrim_range)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fitrim, uintptr(unsafe.Pointer(&r))); errno != 0 {
		t.Logf("FITRIM on %s: %v (the disk takes no discards; the comparison goes on without them)", dir, errno)
	}
}

// runWriter runs the test writer under name with o, and returns its pid and the
// time its writes took. beforeStart, when not nil, gets the pid before the first write.
func runWriter(t *testing.T, name string, o etcdwriter.Options, beforeStart func(pid int)) (pid int, elapsed time.Duration) {
	t.Helper()
	bin, err := etcdwriter.Build(t.TempDir(), name)
	require.NoError(t, err)
	w := bpftest.StartWriterWith(t, bin, o)
	if beforeStart != nil {
		beforeStart(w.PID())
	}
	start := time.Now()
	w.Release(t, time.Minute)
	return w.PID(), time.Since(start)
}

// submitted is what pid submitted to dev, as the programs counted it.
func submitted(t *testing.T, tr *Tracer, dev uint32, pid int) Submitter {
	t.Helper()
	subs, err := tr.Submitters()
	require.NoError(t, err)
	for _, s := range subs {
		if s.Dev == dev && int(s.PID) == pid && !s.Overflow {
			return s
		}
	}
	return Submitter{}
}

// prefill writes a file of size bytes and syncs it, so that later O_DIRECT writes
// overwrite allocated blocks: data bios only, no allocation.
func prefill(t *testing.T, dir, name string, size int) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, make([]byte, size), 0o600))
	disktest.SyncFS(t, dir)
	return path
}

// TestNeighbourBytesUnderItsPID: a process that writes a known number of bytes
// with O_DIRECT to the disk is counted with exactly those bytes, under its pid and name.
func TestNeighbourBytesUnderItsPID(t *testing.T) {
	d := disktest.Quiet(t)
	tr := startBlock(t, d.Name)
	const calls, size = 64, 64 << 10
	path := prefill(t, d.Dir, "neighbour.dat", calls*size)

	pid, _ := runWriter(t, "neighbour", etcdwriter.Options{Calls: calls, Size: size, Path: path, Direct: true}, nil)
	got := submitted(t, tr, d.Dev, pid)
	t.Logf("pid %d on %s: %+v", pid, d.Name, got)
	assert.Equal(t, uint64(calls*size), got.Bytes, "bytes under the neighbour's pid")
	assert.Equal(t, "neighbour", got.Comm)
	assert.GreaterOrEqual(t, got.Bios, uint64(calls))
	cg, err := os.ReadFile("/proc/self/cgroup")
	require.NoError(t, err)
	if strings.Contains(string(cg), "0::") {
		assert.NotZero(t, got.CgroupID, "the cgroup v2 id of the neighbour")
	}
}

// TestDiscardCountsNoBytes: a discard's size is the range it frees, not data moved:
// the process that trims the disk (this one, with FITRIM, as fstrim does) is
// counted with the discard bios /sys/block/<disk>/stat completed, and none of
// the freed space as bytes. On a disk mounted with -o discard, an unlink of a
// large file would otherwise make its unlinker the disk's top "writer".
func TestDiscardCountsNoBytes(t *testing.T) {
	d := disktest.Quiet(t)
	require.NoError(t, os.Remove(prefill(t, d.Dir, "freed.dat", 8<<20)))
	disktest.SyncFS(t, d.Dir)
	tr := startBlock(t, d.Name)

	before, stat := submitted(t, tr, d.Dev, os.Getpid()), disktest.ReadStat(t, d.Name)
	trim(t, d.Dir)
	discards := disktest.ReadStat(t, d.Name).Sub(stat).Discards
	got := submitted(t, tr, d.Dev, os.Getpid())
	t.Logf("FITRIM on %s: %d discards completed (/sys/block), this process's bios %d -> %d, bytes %d -> %d",
		d.Name, discards, before.Bios, got.Bios, before.Bytes, got.Bytes)
	if discards == 0 {
		bpftest.SkipOrFail(t, fmt.Sprintf("%s completed no discard for FITRIM: the disk does not take discards (/sys/block/%s/queue/discard_max_bytes)", d.Name, d.Name))
	}
	assert.Greater(t, got.Bios, before.Bios, "the trim's discard bios, under this process")
	assert.Equal(t, before.Bytes, got.Bytes, "and none of their range as bytes")
}

// TestThrottleShowsShortDeviceTime: a writer limited to 10 write IOPS by a cgroup
// takes seconds for its O_DSYNC writes while the device serves each request in
// a small part of that: the time is the kernel's, not the device's.
func TestThrottleShowsShortDeviceTime(t *testing.T) {
	d := disktest.Quiet(t)
	tr := startBlock(t, d.Name)
	join := disktest.Throttle(t, d.Dev, 10)
	path := prefill(t, d.Dir, "throttled.dat", 1<<20)

	service := func() (ns, requests uint64) {
		ops, err := tr.DiskOps()
		require.NoError(t, err)
		for _, op := range ops {
			if op.Dev == d.Dev {
				ns += op.Service.SumNs
				for _, n := range op.Service.Buckets {
					requests += uint64(n)
				}
			}
		}
		return ns, requests
	}
	ns0, n0 := service()
	const calls = 10
	pid, elapsed := runWriter(t, "throttled", etcdwriter.Options{Calls: calls, Size: 4096, Path: path, DSync: true}, join)
	disktest.SyncFS(t, d.Dir)
	ns1, n1 := service()
	device := time.Duration(ns1 - ns0)
	own := submitted(t, tr, d.Dev, pid)
	t.Logf("%d O_DSYNC writes took %v; the device served %d requests in %v; the writer itself submitted %d bytes of %d (the throttle's worker queues the bios it held)",
		calls, elapsed, n1-n0, device, own.Bytes, calls*4096)
	require.Greater(t, elapsed, 500*time.Millisecond, "the throttle held the writes")
	// Half, not less: under emulation (make kernels' TCG guests, several side by
	// side) the device's own time swells, 707 ms of 2.5 s on one of them, while
	// the throttle's share stays most of the time.
	assert.Less(t, device, elapsed/2, "the device's share of the writes' time")
	assert.NotZero(t, n1-n0)
}
