//go:build linux && (amd64 || arm64)

package tracer

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

// A reader that reads nothing (a stuck pipeline): the ring fills with whole
// records, RingBytes says so against the ring's size, and the kernel counts what
// found no room.
func TestRingBytesFillWhenNothingReads(t *testing.T) {
	bpftest.RequireBPF(t)
	const ring = 1 << 16
	tr, err := Start(Options{PIDs: []int{os.Getpid()}, RingBufferSize: ring, Syscalls: []string{"write"}})
	require.NoError(t, err)
	defer tr.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	require.NoError(t, err)
	defer f.Close()

	pending, size := tr.RingBytes()
	assert.Equal(t, ring, size)
	assert.Zero(t, pending, "nothing written yet")
	writes := 4 * ring / tr.recordSpace // four rings' worth of records
	buf := make([]byte, 10)
	for range writes {
		_, err := unix.Write(int(f.Fd()), buf)
		require.NoError(t, err)
	}
	pending, _ = tr.RingBytes()
	c, err := tr.Counters()
	require.NoError(t, err)
	t.Logf("pending %d of %d bytes (%d records of %d bytes); lost ringbuf full %d, over budget %d",
		pending, size, pending/tr.recordSpace, tr.recordSpace, c.RingbufFull, c.OverBudget)
	assert.Zero(t, pending%tr.recordSpace, "whole records")
	assert.GreaterOrEqual(t, pending, size/2, "the ring filled")
	assert.LessOrEqual(t, pending, size)
	assert.GreaterOrEqual(t, uint64(pending/tr.recordSpace)+c.RingbufFull+c.OverBudget, uint64(writes),
		"every write is in the ring or counted lost")
}
