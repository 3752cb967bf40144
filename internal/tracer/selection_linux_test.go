//go:build linux && (amd64 || arm64)

package tracer

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

// histogramOf sums the buckets of the histogram under key, or 0 if there is none.
func histogramOf(t *testing.T, tr *Tracer, key HistKey) (calls uint64, h Histogram) {
	t.Helper()
	hists, err := tr.Histograms()
	require.NoError(t, err)
	for _, got := range hists {
		if !got.Overflow && got.Key == key {
			for _, n := range got.Buckets {
				calls += uint64(n)
			}
			return calls, got
		}
	}
	return 0, h
}

// With histograms on and a selection that keeps no call, every call is counted in
// the kernel's histogram and none reaches the ring buffer. The test traces its own
// process and tells its calls apart by their key: writes to a file named *.wal and
// fsyncs of a directory named wal, which nothing else in this process makes. It runs
// with each way of pairing enters and exits: task storage (5.11+) and the inflight
// hash that older kernels use, forced here on any kernel.
func TestHistogramsCountCallsTheSelectionDrops(t *testing.T) {
	bpftest.RequireBPF(t)
	t.Run("pairing this kernel gets", testHistogramsCountCallsTheSelectionDrops)
	t.Run("inflight hash", func(t *testing.T) {
		replace(t, &haveTaskStorage, func() error { return fmt.Errorf("forced by the test: %w", ebpf.ErrNotSupported) })
		testHistogramsCountCallsTheSelectionDrops(t)
	})
}

func testHistogramsCountCallsTheSelectionDrops(t *testing.T) {
	tr, err := Start(Options{
		PIDs: []int{os.Getpid()}, RingBufferSize: 1 << 20,
		Syscalls:    []string{"write", "fsync"},
		FDKinds:     []string{"socket"},
		MinDuration: time.Hour,
		Histograms:  true,
	})
	require.NoError(t, err)
	defer tr.Close()

	dir := filepath.Join(t.TempDir(), "wal")
	require.NoError(t, os.Mkdir(dir, 0o755))
	f, err := os.Create(filepath.Join(dir, "0000000000000000-0000000000000000.wal"))
	require.NoError(t, err)
	defer f.Close()
	d, err := os.Open(dir)
	require.NoError(t, err)
	defer d.Close()

	const writes, size, syncs = 1000, 100, 3
	before, err := tr.Counters()
	require.NoError(t, err)
	buf := make([]byte, size)
	for range writes {
		_, err := unix.Write(int(f.Fd()), buf)
		require.NoError(t, err)
	}
	for range syncs {
		require.NoError(t, unix.Fsync(int(d.Fd())))
		require.NoError(t, unix.Fdatasync(int(f.Fd()))) // not attached: must not be counted
	}
	after, err := tr.Counters()
	require.NoError(t, err)

	pid := uint32(os.Getpid())
	write := HistKey{PID: pid, Syscall: SyscallWrite, FDKind: FDKindFile, FileClass: FileClassWAL}
	calls, h := histogramOf(t, tr, write)
	assert.EqualValues(t, writes, calls, "writes counted")
	assert.EqualValues(t, writes*size, h.Bytes, "bytes written")
	assert.NotZero(t, h.SumNs)

	fsync := HistKey{PID: pid, Syscall: SyscallFsync, FDKind: FDKindDirectory, FileClass: FileClassWAL}
	calls, h = histogramOf(t, tr, fsync)
	assert.EqualValues(t, syncs, calls, "directory fsyncs counted")
	assert.Zero(t, h.Bytes)

	fdatasync := write
	fdatasync.Syscall = SyscallFdatasync
	calls, _ = histogramOf(t, tr, fdatasync)
	assert.Zero(t, calls, "fdatasync is not attached")

	assert.GreaterOrEqual(t, after.Calls-before.Calls, uint64(writes+syncs), "calls seen")
	assert.Zero(t, tr.reader.AvailableBytes(), "no record passed min_duration")
	assert.Zero(t, after.RingbufFull)
}

// The file classes the kernel derives from a base name.
func TestFileClasses(t *testing.T) {
	bpftest.RequireBPF(t)
	tr, err := Start(Options{PIDs: []int{os.Getpid()}, RingBufferSize: 1 << 20, Syscalls: []string{"pwrite64"},
		MinDuration: time.Hour, Histograms: true})
	require.NoError(t, err)
	defer tr.Close()

	dir := t.TempDir()
	classes := map[string]FileClass{
		"db":                                     FileClassDB,
		"0000000000000001-000000000000002a.wal":  FileClassWAL,
		"0.tmp":                                  FileClassTmp,
		"000000000000002a-0000000000000003.snap": FileClassSnap,
		"000000000000002a.snap.db":               FileClassDB,
		"x.wal.broken":                           FileClassOther,
		"dbx":                                    FileClassOther,
		"a":                                      FileClassOther,
		"wal":                                    FileClassOther, // a file, not the WAL directory
	}
	// One pwrite64 per class, repeated per name so that the count tells names apart.
	names := make([]string, 0, len(classes))
	for name := range classes {
		names = append(names, name)
	}
	want := map[FileClass]uint64{}
	for i, name := range names {
		f, err := os.Create(filepath.Join(dir, name))
		require.NoError(t, err)
		for range i + 1 {
			_, err := unix.Pwrite(int(f.Fd()), []byte("x"), 0)
			require.NoError(t, err)
		}
		f.Close()
		want[classes[name]] += uint64(i + 1)
	}
	for class, n := range want {
		key := HistKey{PID: uint32(os.Getpid()), Syscall: SyscallPwrite64, FDKind: FDKindFile, FileClass: class}
		calls, _ := histogramOf(t, tr, key)
		assert.Equal(t, n, calls, "class %s", class)
	}
}
