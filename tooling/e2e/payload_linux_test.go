//go:build linux

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/otlpsink"
)

// The built collector delivers every write of a process named etcd, with the
// start of its data when payload_bytes asks for it. make kernels runs this on
// each kernel: payload capture is where old verifiers differ.
func TestCollectorDeliversEveryWriteWithPayload(t *testing.T) {
	bpftest.RequireBPF(t)
	bin := collectorBinary(t)
	writer := bpftest.BuildWriter(t)
	const writes, size = 2000, 100
	for _, payloadBytes := range []int{0, 64} {
		t.Run(fmt.Sprintf("payload_bytes %d", payloadBytes), func(t *testing.T) {
			sink, err := otlpsink.Start("127.0.0.1:0")
			require.NoError(t, err)
			t.Cleanup(sink.Stop)
			w := bpftest.StartWriter(t, writer, writes, size)
			col := startCollector(t, bin, collector.Pipeline{
				PIDs:          []int{w.PID()},
				OTLPEndpoint:  sink.Endpoint(),
				FlushInterval: 20 * time.Millisecond,
				PayloadBytes:  payloadBytes,
			})
			w.Release(t, time.Minute)
			// Every record arrives before the collector is stopped: it logs that it
			// is ready before it handles SIGTERM, so an early SIGTERM kills it.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			assert.True(t, sink.WaitFor(ctx, writes), "every record within a minute")
			require.NoError(t, col.Stop(15*time.Second), "collector log:\n%s", col.Tail())

			records := sink.Records()
			require.Len(t, records, writes, "one record per write; collector log:\n%s", readFile(col.LogPath))
			want := bpftest.WriterData(size)[:payloadBytes]
			for _, lr := range records {
				attrs := lr.Attributes()
				require.Equal(t, int64(w.PID()), attr(t, lr.Resource.Attributes(), "process.pid", pcommon.ValueTypeInt).Int())
				require.Equal(t, "write", attr(t, attrs, "etcd.syscall.name", pcommon.ValueTypeStr).Str())
				require.Equal(t, int64(size), attr(t, attrs, "etcd.syscall.ret", pcommon.ValueTypeInt).Int())
				payload, ok := attrs.Get("etcd.syscall.payload")
				if payloadBytes == 0 {
					require.False(t, ok, "no payload attribute at payload_bytes 0")
					continue
				}
				require.True(t, ok, "payload attribute missing")
				require.Equal(t, want, payload.Bytes().AsRaw(), "the first %d bytes of the write", payloadBytes)
			}
			assert.NotContains(t, readFile(col.LogPath), "lost", "nothing reported lost")
		})
	}
}
