//go:build linux && (amd64 || arm64)

package tracer

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/disktest"
)

// submittedBy is the bytes the block programs counted for pid on disk dev.
func submittedBy(t *testing.T, tr *Tracer, dev uint32, pid int) uint64 {
	t.Helper()
	subs, err := tr.Submitters()
	require.NoError(t, err)
	for _, s := range subs {
		if s.Dev == dev && int(s.PID) == pid && !s.Overflow {
			return s.Bytes
		}
	}
	return 0
}

// rewriteDirect is a child of TestCallsCarryTheirDisk, a neighbour on its disk: it
// rewrites the same 10 MiB of path with O_DIRECT, 64 KiB a write, until killed.
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

// alignedBlocks is n blocks of 4 KiB aligned to 4 KiB, as O_DIRECT wants.
func alignedBlocks(n int) []byte {
	buf := make([]byte, (n+1)*4096)
	off := (4096 - int(uintptr(unsafe.Pointer(&buf[0]))&4095)) & 4095
	return buf[off : off+n*4096]
}

// Each fdatasync on a quiet disk carries what its disk did during the call: the
// page the thread wrote before it, submitted by the thread itself (4 KiB and, at
// times, a few sectors of ext4's own; over the calls at most what the block
// programs counted for this process),
// the requests the disk completed and their device time. A neighbour writing with
// O_DIRECT to the same disk meanwhile shows as others' bytes. Over the window the
// calls' requests are at most /sys/block/<disk>/stat's completions, and their own and
// others' bytes at most what the block programs counted for the disk; a write to a
// pipe, on no disk, carries none of it.
func TestCallsCarryTheirDisk(t *testing.T) {
	d := disktest.Quiet(t)
	requireSchedInfo(t)
	tr, err := Start(Options{PIDs: []int{os.Getpid()}, RingBufferSize: 1 << 20, Syscalls: []string{"write", "fdatasync"},
		Block: true, Disks: []string{d.Name}, Scheduler: true})
	require.NoError(t, err)
	defer tr.Close()

	const syncs = 20
	f, err := os.OpenFile(filepath.Join(d.Dir, "wal"), os.O_CREATE|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	defer f.Close()
	// The calls overwrite pages already written and synced, as etcd's WAL fills
	// its preallocated segment: a sync that grows the file or allocates blocks also
	// writes the inode and the bitmaps from the syncing thread (3 KiB more, seen on
	// the first call here), which no longer is "the page written before the sync".
	_, err = f.Write(make([]byte, syncs*4096))
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	_, err = f.Seek(0, 0)
	require.NoError(t, err)
	var pipe [2]int
	require.NoError(t, unix.Pipe2(pipe[:], unix.O_CLOEXEC))
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	disktest.SyncFS(t, d.Dir)

	exe, err := os.Executable()
	require.NoError(t, err)
	neighbour := exec.Command(exe)
	neighbour.Env = append(os.Environ(), childEnv+"=direct:"+filepath.Join(d.Dir, "neighbour"))
	require.NoError(t, neighbour.Start())
	defer func() {
		_ = neighbour.Process.Kill()
		_ = neighbour.Wait()
	}()
	time.Sleep(100 * time.Millisecond) // the neighbour is writing

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	totals0, err := tr.DiskTotals()
	require.NoError(t, err)
	own0 := submittedBy(t, tr, d.Dev, os.Getpid())
	sys0 := disktest.ReadStat(t, d.Name)
	page := make([]byte, 4096)
	for range syncs {
		_, err := unix.Write(int(f.Fd()), page)
		require.NoError(t, err)
		require.NoError(t, unix.Fdatasync(int(f.Fd())))
	}
	_, err = unix.Write(pipe[1], []byte("x"))
	require.NoError(t, err)
	sys1 := disktest.ReadStat(t, d.Name)
	totals1, err := tr.DiskTotals()
	require.NoError(t, err)
	ownGrowth := submittedBy(t, tr, d.Dev, os.Getpid()) - own0

	var requests, own, others uint64
	for _, ev := range drainRecords(t, tr, tid, 2*syncs+1, int(f.Fd()), pipe[1]) {
		typ := bpf.MonitorSyscallType(ev.Type)
		disk := ev.Measured&uint32(bpf.MonitorRecordMeasuredMEASURED_DISK) != 0
		if ev.FdKind == uint8(bpf.MonitorFdKindFD_KIND_PIPE) {
			assert.False(t, disk, "a pipe is on no disk: %+v", ev)
			continue
		}
		require.True(t, disk, "%s on the quiet disk: %+v", typ, ev)
		require.Equal(t, d.Dev, ev.Disk)
		if typ == bpf.MonitorSyscallTypeSYSCALL_FDATASYNC {
			// The page written before the sync, submitted by the syncing thread; ext4 adds a few sectors of its own at times.
			assert.GreaterOrEqual(t, ev.DiskOwnBytes, uint64(4096), "%+v", ev)
			assert.GreaterOrEqual(t, ev.DiskRequests, uint64(1), "the sync waited for its write: %+v", ev)
			assert.NotZero(t, ev.DiskDeviceNs, "%+v", ev)
		} else {
			assert.Zero(t, ev.DiskOwnBytes, "a write to the page cache submits nothing: %+v", ev)
		}
		requests += ev.DiskRequests
		own += ev.DiskOwnBytes
		others += ev.DiskOthersBytes
	}
	stat := sys1.Sub(sys0)
	completed := stat.Reads + stat.Writes + stat.Discards + stat.Flushes
	submitted := totals1[d.Dev].BytesSubmitted - totals0[d.Dev].BytesSubmitted
	t.Logf("%d fdatasyncs on %s beside a neighbour: %d requests over the calls (%d completed in the window), own %d B (this process submitted %d B in the window), others %d B (%d B submitted in the window)",
		syncs, d.Name, requests, completed, own, ownGrowth, others, submitted)
	assert.LessOrEqual(t, own, ownGrowth, "the calls' own bytes are what this process submitted")
	assert.GreaterOrEqual(t, own, uint64(syncs*4096), "every page written")
	assert.NotZero(t, others, "the neighbour's direct writes and the journal's")
	assert.LessOrEqual(t, requests, completed, "the calls' requests are the disk's, and the window holds them")
	assert.LessOrEqual(t, own+others, submitted)
}
