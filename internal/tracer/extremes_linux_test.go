//go:build linux && (amd64 || arm64)

package tracer

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

// The histograms' Min and Max are the fastest and the slowest call, measured
// against the test's own clock around each call: a write that blocks on a full
// pipe until a reader drains it 300 ms later, and quick writes beside it. It runs
// with the compare-and-exchange this kernel has (5.12+) and with the plain store
// the older kernels get, forced here on any kernel.
func TestHistogramMinAndMax(t *testing.T) {
	bpftest.RequireBPF(t)
	t.Run("as loaded on this kernel", testHistogramMinAndMax)
	t.Run("plain store forced", func(t *testing.T) {
		replace(t, &haveCmpXchg, func() error { return fmt.Errorf("forced by the test: %w", ebpf.ErrNotSupported) })
		testHistogramMinAndMax(t)
	})
}

func testHistogramMinAndMax(t *testing.T) {
	tr, err := Start(Options{
		PIDs: []int{os.Getpid()}, RingBufferSize: 1 << 20,
		Syscalls: []string{"write"}, FDKinds: []string{"socket"}, MinDuration: time.Hour,
		Histograms: true,
	})
	require.NoError(t, err)
	defer tr.Close()

	var p [2]int
	require.NoError(t, unix.Pipe2(p[:], unix.O_CLOEXEC))
	defer unix.Close(p[0])
	defer unix.Close(p[1])

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fastest := time.Hour
	for range 100 {
		begin := time.Now()
		_, err := unix.Write(p[1], []byte{1})
		fastest = min(fastest, time.Since(begin))
		require.NoError(t, err)
	}
	// Fill the pipe without blocking, then block on one more byte until the reader drains it.
	require.NoError(t, unix.SetNonblock(p[1], true))
	for {
		if _, err := unix.Write(p[1], make([]byte, 4096)); err != nil {
			require.ErrorIs(t, err, unix.EAGAIN)
			break
		}
	}
	require.NoError(t, unix.SetNonblock(p[1], false))
	const blocked = 300 * time.Millisecond
	go func() {
		time.Sleep(blocked)
		buf := make([]byte, 1<<20)
		for {
			if _, err := unix.Read(p[0], buf); err != nil {
				return
			}
		}
	}()
	begin := time.Now()
	_, err = unix.Write(p[1], []byte{2})
	slowest := time.Since(begin)
	require.NoError(t, err)
	t.Logf("measured around the calls: fastest %v, slowest %v", fastest, slowest)

	calls, h := histogramOf(t, tr, HistKey{PID: uint32(os.Getpid()), Syscall: SyscallWrite, FDKind: FDKindPipe})
	require.NotZero(t, calls)
	t.Logf("kernel: %d calls, min %v, max %v", calls, time.Duration(h.MinNs), time.Duration(h.MaxNs))
	assert.LessOrEqual(t, time.Duration(h.MaxNs), slowest, "the slowest call lasted at most what the test measured around it")
	assert.Greater(t, time.Duration(h.MaxNs), blocked*9/10, "the blocked write is the slowest")
	assert.LessOrEqual(t, time.Duration(h.MinNs), fastest, "a call at least as fast as the fastest the test measured")
	assert.NotZero(t, h.MinNs)
	assertExtremesHoldTheMean(t, h.HistCounts)
}

// assertExtremesHoldTheMean checks a histogram's Min and Max against its own
// count and sum: Min <= mean <= Max <= sum.
func assertExtremesHoldTheMean(t *testing.T, h HistCounts) {
	t.Helper()
	var count uint64
	for _, n := range h.Buckets {
		count += uint64(n)
	}
	if !assert.NotZero(t, count) {
		return
	}
	assert.LessOrEqual(t, h.MinNs, h.SumNs/count, "min <= mean")
	assert.GreaterOrEqual(t, h.MaxNs, h.SumNs/count, "max >= mean")
	assert.LessOrEqual(t, h.MaxNs, h.SumNs, "max <= sum")
}

// The probe finds compare-and-exchange exactly on the kernels that have it: 5.12
// and later, by uname.
func TestCmpXchgProbeMatchesTheKernelVersion(t *testing.T) {
	bpftest.RequireBPF(t)
	var major, minor int
	_, err := fmt.Sscanf(kernelRelease(), "%d.%d", &major, &minor)
	require.NoError(t, err)
	err = haveCmpXchg()
	if major > 5 || major == 5 && minor >= 12 {
		assert.NoError(t, err, "Linux %d.%d has BPF_CMPXCHG", major, minor)
	} else {
		assert.Error(t, err, "Linux %d.%d has no BPF_CMPXCHG", major, minor)
	}
}

// Each object's compare-and-exchanges become stores in place: the programs keep
// their length, so that no jump moves.
func TestStoreInsteadOfCmpXchg(t *testing.T) {
	xchg := asm.CmpXchg.OpCode(asm.DWord)
	for name, load := range map[string]func() (*ebpf.CollectionSpec, error){"monitor": bpf.LoadMonitor, "block": bpf.LoadBlock} {
		spec, err := load()
		require.NoError(t, err)
		lengths, exchanges := map[string]int{}, 0
		for p, prog := range spec.Programs {
			lengths[p] = len(prog.Instructions)
			for _, ins := range prog.Instructions {
				if ins.OpCode == xchg {
					exchanges++
				}
			}
		}
		assert.NotZero(t, exchanges, "%s: raise_to's exchanges", name)
		storeInsteadOfCmpXchg(spec)
		for p, prog := range spec.Programs {
			assert.Len(t, prog.Instructions, lengths[p], "%s/%s", name, p)
			for _, ins := range prog.Instructions {
				assert.NotEqual(t, xchg, ins.OpCode, "%s/%s: %v", name, p, ins)
			}
		}
	}
}
