package logtest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/plog"
)

func TestAbsentAttributes(t *testing.T) {
	logs := plog.NewLogs()
	rl := logs.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutInt("process.pid", 7)
	rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Attributes().PutStr("file.name", "x.wal")
	r := Flatten(logs)[0]
	assert.Equal(t, "x.wal", r.Str("file.name"))
	assert.EqualValues(t, 7, r.Int("process.pid"), "from the Resource")
	assert.Equal(t, "", r.Str("system.device"), "absent: empty, no panic")
	assert.Zero(t, r.Int("etcd.syscall.disk.device_ns"), "absent: 0, no panic")
}
