//go:build linux && (amd64 || arm64)

package convert

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/metrictest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

func TestDiskCollectorTopAndRest(t *testing.T) {
	const dev = 8 << 20
	c := NewDisks("test", "0", 1)
	c.name = func(uint32) string { return "sda" }
	exited := map[uint32]bool{}
	gone := func(pid uint32) bool { return exited[pid] }

	// topSubmitters+2 processes; process i has submitted i KiB so far.
	counts := map[uint32]uint64{}
	subs := func() []tracer.Submitter {
		var out []tracer.Submitter
		for pid, kib := range counts {
			out = append(out, tracer.Submitter{Dev: dev, PID: pid, Comm: fmt.Sprint("p", pid), Bytes: kib << 10, Bios: kib})
		}
		return append(out, tracer.Submitter{Dev: dev, Overflow: true, Bytes: 3 << 10, Bios: 3})
	}
	for pid := uint32(1); pid <= topSubmitters+2; pid++ {
		counts[pid] = uint64(pid)
	}
	md, forgotten := c.Collect(nil, subs(), 2, gone)
	require.Empty(t, forgotten)
	got := metrictest.SubmittedBytes(md, "sda")
	assert.Len(t, got, topSubmitters+1, "the top and the rest")
	assert.NotContains(t, got, int64(1), "the smallest two are in the rest")
	assert.NotContains(t, got, int64(2))
	assert.Equal(t, int64((1+2+3)<<10), got[-1], "the rest: the two smallest and the kernel's overflow entry")
	total := func(m map[int64]int64) (n int64) {
		for _, v := range m {
			n += v
		}
		return n
	}
	assert.Equal(t, int64((topSubmitters+2)*(topSubmitters+3)/2+3)<<10, total(got), "every byte in exactly one series")

	// Process 1 floods and joins the top; 3, the quietest with a series, gives it
	// its place; the others keep theirs while idle; 5 exits.
	counts[1] += 1000
	exited[5] = true
	md, forgotten = c.Collect(nil, subs(), 3, gone)
	assert.Equal(t, []tracer.SubmitterKey{{Dev: dev, PID: 5}}, forgotten)
	got2 := metrictest.SubmittedBytes(md, "sda")
	assert.Equal(t, int64(1000<<10), got2[1], "a new top series counts from its joining")
	assert.NotContains(t, got2, int64(3))
	for pid := int64(4); pid <= topSubmitters+2; pid++ {
		assert.Equal(t, got[pid], got2[pid], "pid %d keeps its series while idle", pid)
	}
	assert.Equal(t, got[-1], got2[-1], "nothing new outside the top: the rest stands")
	for _, p := range metrictest.Points(md, MetricDiskSubmittedBytes) {
		if p.Attrs[AttrProcessPID] == int64(1) {
			assert.Equal(t, pcommon.Timestamp(2), p.Start, "and starts at the previous collection")
		}
	}
	delete(counts, 5)

	// 3 submits again, but outside the top: its bytes go to the rest. A pid
	// reused by a new process (its kernel count below the last) starts over.
	counts[3] += 2
	counts[7] = 1
	md, _ = c.Collect(nil, subs(), 4, gone)
	got3 := metrictest.SubmittedBytes(md, "sda")
	assert.Equal(t, int64(1<<10), got3[7])
	if _, own := got3[3]; !own {
		assert.Equal(t, got2[-1]+2<<10, got3[-1], "3's new bytes in the rest")
	}
	for _, p := range metrictest.Points(md, MetricDiskSubmittedBytes) {
		if p.Attrs[AttrProcessPID] == int64(7) {
			assert.Equal(t, pcommon.Timestamp(3), p.Start, "the new process's series starts over")
		}
	}
}
