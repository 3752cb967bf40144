//go:build linux

package victoria

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
)

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// install builds p into the cache (once), or skips where that is impossible.
func install(t *testing.T, p Product) string {
	t.Helper()
	if os.Geteuid() != 0 && os.Getenv("ETCDEBPF_CACHE") == "" {
		if os.Getenv("ETCDEBPF_REQUIRE_ALL") == "1" {
			t.Fatal("needs root to write the cache " + DefaultCache + " (or ETCDEBPF_CACHE)")
		}
		t.Skip("needs root to write the cache " + DefaultCache + " (or ETCDEBPF_CACHE)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := Install(ctx, p, testLog{t})
	require.NoError(t, err)
	return bin
}

// What goes in over OTLP/HTTP comes back from LogsQL, with every type of
// attribute value as VictoriaLogs spells it.
func TestLogsRoundTrip(t *testing.T) {
	bin := install(t, Logs)
	ctx := context.Background()
	srv, err := Start(ctx, Logs, bin, t.TempDir())
	require.NoError(t, err)
	t.Cleanup(srv.Stop)

	logs := plog.NewLogs()
	rl := logs.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutInt("process.pid", 4242)
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	now := time.Now()
	lr.SetTimestamp(pcommon.NewTimestampFromTime(now))
	lr.Body().SetStr("fdatasync")
	lr.Attributes().PutStr("file.name", "0000000000000000-0000000000000000.wal")
	lr.Attributes().PutInt("etcd.syscall.duration_ns", -12345678901)
	lr.Attributes().PutEmptyBytes("etcd.syscall.raw").FromRaw([]byte{0, 1, 2, 0xff})
	body, err := plogotlp.NewExportRequestFromLogs(logs).MarshalProto()
	require.NoError(t, err)
	resp, err := http.Post(srv.OTLPLogsEndpoint(), "application/x-protobuf", bytes.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, srv.Flush(ctx))

	rows, err := srv.LogsQL(ctx, `process.pid:=4242 | fields _time, _msg, file.name, etcd.syscall.duration_ns, etcd.syscall.raw`)
	require.NoError(t, err)
	require.Len(t, rows, 1)
	row := rows[0]
	assert.Equal(t, "fdatasync", row["_msg"])
	assert.Equal(t, "0000000000000000-0000000000000000.wal", row["file.name"])
	assert.Equal(t, "-12345678901", row["etcd.syscall.duration_ns"])
	assert.Equal(t, base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 0xff}), row["etcd.syscall.raw"])
	ts, err := time.Parse(time.RFC3339Nano, row["_time"])
	require.NoError(t, err)
	assert.True(t, ts.Equal(now), "nanosecond timestamps: %s vs %s", ts, now)

	rows, err = srv.LogsQL(ctx, `* | stats count() n`)
	require.NoError(t, err)
	assert.Equal(t, []map[string]string{{"n": "1"}}, rows)
}
