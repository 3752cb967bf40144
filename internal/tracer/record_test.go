//go:build linux && (amd64 || arm64)

package tracer

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/recordtest"
)

// A record's names end at their NUL; a name that fills its field has none.
func TestRecordNames(t *testing.T) {
	ev := bpf.MonitorEvent{Version: bpf.RecordVersion, Type: uint16(SyscallWrite)}
	copy(ev.Comm[:], recordtest.Chars("etcd", len(ev.Comm)))
	for i := range ev.FileName {
		ev.FileName[i] = 'a'
	}
	rec, err := DecodeRecord(recordtest.Encode(ev, nil))
	require.NoError(t, err)
	assert.Equal(t, "etcd", string(rec.CommName()))
	assert.Len(t, rec.FileName(), len(ev.FileName), "a full field has no NUL")
	assert.Equal(t, SyscallWrite, rec.Syscall())
}

// The domain names are the kernel's: every syscall and fd kind parses back.
func TestDomainNamesRoundTrip(t *testing.T) {
	for s := SyscallWrite; s <= SyscallSyncFileRange; s++ {
		got, ok := ParseSyscall(s.String())
		assert.True(t, ok, s.String())
		assert.Equal(t, s, got)
		assert.Equal(t, s <= SyscallPwritev, s.Writes(), s.String())
	}
	for k := FDKindUnknown; k <= FDKindOther; k++ {
		got, ok := ParseFDKind(k.String())
		assert.True(t, ok, k.String())
		assert.Equal(t, k, got)
	}
}
