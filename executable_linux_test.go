//go:build linux && (amd64 || arm64)

package etcdebpfreceiver

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"

	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// Only processes running the configured file are traced: a copy of the same
// binary under the same name is not. When the file is replaced (an upgrade), the
// new file is traced, and a process still running the old one stays traced.
func TestExecutableFilter(t *testing.T) {
	bpftest.RequireBPF(t)
	const writes = 1000
	exe := bpftest.BuildWriter(t)                 // .../etcd: the configured path
	impostor := bpftest.NamedCopy(t, exe, "etcd") // the same bytes and name, another file
	upgrade := bpftest.NamedCopy(t, exe, "etcd")  // the next version, renamed over exe below

	cfg := createDefaultConfig()
	cfg.Executable = exe
	sink := newCountingConsumer()
	rcv, _, logs := telemetryReceiver(t, cfg, sink)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(t, rcv.Shutdown(context.Background())) }()

	before := bpftest.StartWriter(t, exe, writes, 8) // runs the old file across the upgrade
	fake := bpftest.StartWriter(t, impostor, writes, 8)
	fake.Release(t, time.Minute)

	require.NoError(t, os.Rename(upgrade, exe))
	require.Eventually(t, func() bool { return logs.FilterMessageSnippet("The executable changed").Len() == 1 },
		5*time.Second, 20*time.Millisecond, "the receiver notices the new file")
	after := bpftest.StartWriter(t, exe, writes, 8)
	after.Release(t, time.Minute)
	before.Release(t, time.Minute)

	require.Eventually(t, func() bool { return sink.count(before.PID()) == writes && sink.count(after.PID()) == writes },
		10*time.Second, 20*time.Millisecond, "the old file while it runs, and the new one, are traced: %d and %d of %d",
		sink.count(before.PID()), sink.count(after.PID()), writes)
	time.Sleep(2 * cfg.FlushInterval)
	assert.Zero(t, sink.count(fake.PID()), "a process named etcd running another file is not traced")

	// Nothing runs the old file any more: its inode may be freed and reused by
	// another file, so the filter must stop allowing it.
	tr := rcv.(*etcdReceiver).ctrl.Session().(*tracer.Tracer)
	current, err := host.ExecutableID(exe)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		allowed, err := tr.Executables()
		return err == nil && len(allowed) == 1 && allowed[0] == current
	}, 5*time.Second, 50*time.Millisecond, "only the current file stays allowed once no process runs the old one")
}
