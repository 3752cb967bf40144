//go:build linux && (amd64 || arm64)

package etcdebpfreceiver

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/etcdebpf/etcdebpfreceiver/internal/convert"
	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/logtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// startReceiver runs the receiver with cfg into a sink until the test ends or stop is called.
func startReceiver(t *testing.T, cfg *Config) (sink *consumertest.LogsSink, stop func()) {
	t.Helper()
	sink = new(consumertest.LogsSink)
	rcv, err := NewFactory().CreateLogs(context.Background(), receivertest.NewNopSettings(metadata.Type), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			require.NoError(t, rcv.Shutdown(context.Background()))
		}
	}
	t.Cleanup(stop)
	return sink, stop
}

func startEtcd(t *testing.T) *etcdtest.Server {
	t.Helper()
	srv, err := etcdtest.Start(bpftest.RequireEtcd(t), t.TempDir())
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	return srv
}

func allRecords(sink *consumertest.LogsSink) []logtest.Record {
	var out []logtest.Record
	for _, logs := range sink.AllLogs() {
		out = append(out, logtest.Flatten(logs)...)
	}
	return out
}

func TestEtcdIntegration(t *testing.T) {
	bpftest.RequireBPF(t)
	srv := startEtcd(t)
	cfg := createDefaultConfig()
	cfg.FlushInterval = 20 * time.Millisecond
	sink, stop := startReceiver(t, cfg)

	time.Sleep(200 * time.Millisecond) // let the start-up writes of etcd settle
	decoys := map[int]string{}
	const puts = 200
	window, err := srv.MeasureWALSyncs(func() error {
		for _, name := range []string{"etcdctl", "etcd-backup", "etcd-bench"} {
			decoys[bpftest.RunDecoy(t, name)] = name
		}
		return srv.PutN("key", puts, 256)
	})
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	stop()

	var walSyncs, walSyncsBlocked, dbWrites, dbSyncs, socketWrites int
	inMemory := bpftest.InMemory(t, srv.DataDir)
	for _, lr := range allRecords(sink) {
		pid := int(lr.Int(convert.AttrProcessPID))
		require.NotContains(t, decoys, pid, "record from decoy %s", decoys[pid])
		require.Equal(t, "etcd", lr.Str(convert.AttrProcessExecName), "only processes named exactly etcd are traced")
		if pid != srv.PID() {
			continue // another etcd on this host
		}
		ts := lr.Timestamp().AsTime()
		require.WithinRange(t, ts, window.Start.Add(-10*time.Second), window.End.Add(time.Second), "timestamp is wall-clock entry time")
		name, file := lr.Body().Str(), lr.Str(convert.AttrFileName)
		switch {
		case name == "fdatasync" && strings.HasSuffix(file, ".wal"):
			require.Positive(t, lr.Int(convert.AttrDurationNs))
			require.Zero(t, lr.Int(convert.AttrRet))
			raw, _ := lr.Attributes().Get(convert.AttrRaw)
			rec, err := tracer.ParseRecord(raw.Bytes().AsRaw())
			require.NoError(t, err)
			require.NotZero(t, rec.Dev, "the file's device is recorded")
			var parts int64
			for p := range tracer.PartCount {
				parts += lr.Int(convert.AttrTimeNs(p))
			}
			require.Equal(t, lr.Int(convert.AttrDurationNs), parts, "the parts of the call's time add up to it")
			if window.Contains(ts) {
				walSyncs++
				if lr.Int(convert.AttrTimeNs(tracer.PartCPU)) < lr.Int(convert.AttrDurationNs) {
					walSyncsBlocked++
				}
			}
		case name == "pwrite64" && file == "db":
			dbWrites++
			require.Equal(t, lr.Int(convert.AttrCount), lr.Int(convert.AttrRet), "bbolt writes whole pages")
		case name == "fdatasync" && file == "db":
			dbSyncs++
		case (name == "write" || name == "writev") && lr.Str(convert.AttrFDKind) == "socket":
			socketWrites++
		}
	}
	etcdSyncs := window.Syncs
	t.Logf("WAL fdatasync: %d seen by the receiver, %d counted by etcd; bbolt: %d pwrite64, %d fdatasync; %d socket writes",
		walSyncs, etcdSyncs, dbWrites, dbSyncs, socketWrites)
	require.GreaterOrEqual(t, etcdSyncs, puts/2, "each put is a raft entry that etcd syncs")
	assert.InDelta(t, etcdSyncs, walSyncs, max(2, 0.03*float64(etcdSyncs)), "WAL fdatasync records vs etcd_disk_wal_fsync_duration_seconds_count")
	assert.Positive(t, dbWrites, "bbolt commits write pages with pwrite64")
	assert.Positive(t, dbSyncs, "bbolt commits end in fdatasync")
	assert.Positive(t, socketWrites, "responses are written to sockets")
	// The default scheduler part: most WAL syncs wait for their disk, where there is one.
	if !inMemory {
		assert.Greater(t, walSyncsBlocked, walSyncs/2, "WAL syncs blocked for the disk")
	}
}

func TestRawMatchesDecodedAttributes(t *testing.T) {
	bpftest.RequireBPF(t)
	srv := startEtcd(t)
	cfg := createDefaultConfig()
	cfg.PIDs = []int{srv.PID()}
	cfg.PayloadBytes = 64
	sink, stop := startReceiver(t, cfg)
	for i := range 20 {
		_, err := srv.Put(fmt.Sprintf("raw-%d", i), "payload-marker")
		require.NoError(t, err)
	}
	time.Sleep(200 * time.Millisecond)
	stop()

	records := allRecords(sink)
	require.NotEmpty(t, records)
	sawMarker := false
	for _, lr := range records {
		raw, ok := lr.Attributes().Get(convert.AttrRaw)
		require.True(t, ok)
		rec, err := tracer.ParseRecord(raw.Bytes().AsRaw())
		require.NoError(t, err)
		assert.Len(t, tracer.EncodeRecord(tracer.RecordFields{PayloadArea: 64}), raw.Bytes().Len(), "the fixed part and a 64-byte payload area")
		assert.EqualValues(t, rec.Syscall, lr.Int(convert.AttrType))
		assert.EqualValues(t, rec.PID, lr.Int(convert.AttrProcessPID))
		assert.EqualValues(t, rec.TID, lr.Int(convert.AttrTID))
		assert.EqualValues(t, rec.FD, lr.Int(convert.AttrFD))
		assert.EqualValues(t, rec.Ret, lr.Int(convert.AttrRet))
		assert.EqualValues(t, rec.DurationNs, lr.Int(convert.AttrDurationNs))
		assert.Equal(t, rec.Syscall.String(), lr.Body().Str())
		payload := rec.Payload
		assert.LessOrEqual(t, len(payload), 64)
		if p, ok := lr.Attributes().Get(convert.AttrPayload); ok {
			assert.Equal(t, payload, p.Bytes().AsRaw())
			assert.LessOrEqual(t, int64(len(payload)), max(lr.Int(convert.AttrRet), 0), "never more than was written")
			sawMarker = sawMarker || strings.Contains(string(payload), "payload-marker")
		}
	}
	assert.True(t, sawMarker, "the WAL writes carry the values put")
}

func TestPIDsFilterExcludesOtherEtcd(t *testing.T) {
	bpftest.RequireBPF(t)
	srv := startEtcd(t)
	cfg := createDefaultConfig()
	cfg.PIDs = []int{srv.PID()}
	sink, stop := startReceiver(t, cfg)

	impostor := bpftest.RunDecoy(t, "etcd") // same name, other PID
	require.NoError(t, srv.PutN("pid", 20, 1))
	time.Sleep(200 * time.Millisecond)
	stop()

	records := allRecords(sink)
	require.NotEmpty(t, records)
	for _, lr := range records {
		require.EqualValues(t, srv.PID(), lr.Int(convert.AttrProcessPID), "impostor pid is %d", impostor)
	}
}
