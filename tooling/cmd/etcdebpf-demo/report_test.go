package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
)

func TestBucketize(t *testing.T) {
	bounds := etcdtest.Histogram{0.001: 0, 0.002: 0, math.Inf(1): 0}
	ds := []time.Duration{200 * time.Microsecond, 999 * time.Microsecond, 1500 * time.Microsecond, 3 * time.Second}
	assert.Equal(t, etcdtest.Histogram{0.001: 2, 0.002: 3, math.Inf(1): 4}, bucketize(ds, bounds))
}

func TestQuantile(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(i+1) * time.Microsecond
	}
	assert.Equal(t, 50*time.Microsecond, quantile(ds, 0.5))
	assert.Equal(t, 99*time.Microsecond, quantile(ds, 0.99))
	assert.Equal(t, 100*time.Microsecond, quantile(ds, 1))
	assert.Zero(t, quantile(nil, 0.5))
}

func TestFormatting(t *testing.T) {
	assert.Equal(t, "812ns", fmtDur(812))
	assert.Equal(t, "244µs", fmtDur(244*time.Microsecond))
	assert.Equal(t, "2.21ms", fmtDur(2210*time.Microsecond))
	assert.Equal(t, "1.05s", fmtDur(1050*time.Millisecond))
	assert.Equal(t, "1.5 KiB", fmtBytes(1536))

	ts := time.Date(2026, 1, 2, 12, 0, 1, 234e6, time.Local)
	r := record{ts: ts, name: "fdatasync", fdKind: "file", fd: 7, file: "0000000000000000-0000000000000000.wal", duration: 244 * time.Microsecond}
	assert.Equal(t, "12:00:01.234 fdatasync file    0000000000000000-0000000000000000.wal 244µs", r.line())
	w := record{ts: ts, name: "write", fdKind: "socket", fd: 9, ret: -32, duration: time.Microsecond}
	assert.Equal(t, "12:00:01.234 write     socket  fd 9 err=-32 1µs", w.line())
}

func TestSummarize(t *testing.T) {
	rows := summarize([]record{
		{name: "write", fdKind: "file", file: "1.wal", ret: 100, duration: 10 * time.Microsecond},
		{name: "write", fdKind: "file", file: "2.wal", ret: -5, duration: 30 * time.Microsecond},
		{name: "write", fdKind: "socket", file: "TCP", ret: 7, duration: 20 * time.Microsecond},
		{name: "write", fdKind: "file", file: "1.wal", ret: 50, duration: 20 * time.Microsecond},
		{name: "fdatasync", fdKind: "file", file: "db", duration: time.Millisecond},
		{name: "fdatasync", fdKind: "file", file: "1.wal", duration: time.Millisecond},
	})
	require.Len(t, rows, 4)
	assert.Equal(t, "*.wal", rows[0].file)
	assert.Equal(t, "write", rows[0].name)
	assert.Equal(t, "file", rows[0].fdKind)
	assert.Equal(t, 3, rows[0].count)
	assert.EqualValues(t, 150, rows[0].bytes, "only successful writes count")
	assert.Equal(t, []time.Duration{10 * time.Microsecond, 20 * time.Microsecond, 30 * time.Microsecond}, rows[0].durations)

	var buf bytes.Buffer
	writeSyscallTable(&buf, rows)
	assert.Contains(t, buf.String(), "p99")
	assert.Len(t, strings.Split(strings.TrimSpace(buf.String()), "\n"), 5)
}

func TestWALComparison(t *testing.T) {
	c := walComparison{
		kernel:      []time.Duration{300 * time.Microsecond, 400 * time.Microsecond, 1500 * time.Microsecond},
		etcdCount:   3,
		etcdBuckets: etcdtest.Histogram{0.001: 2, 0.002: 3, math.Inf(1): 3},
		histogram:   &histogramFigures{count: 3, p50: 0.0004, p99: 0.0015},
	}
	var buf bytes.Buffer
	c.write(&buf)
	assert.Contains(t, buf.String(), "kernel, receiver's histogram (scale 3)      3  400µs  1.50ms")
	assert.Contains(t, buf.String(), "The counts agree")
	assert.Contains(t, buf.String(), "etcd_disk_wal_fsync_duration_seconds")
}
