//go:build linux && (amd64 || arm64)

package convert

import (
	"cmp"
	"slices"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// topSubmitters is how many processes per disk get a series of their own in each
// collection: those that submitted the most bytes since the last one.
const topSubmitters = 10

var diskOpNames = map[tracer.DiskOp]string{
	tracer.DiskRead: "read", tracer.DiskWrite: "write", tracer.DiskFlush: "flush", tracer.DiskDiscard: "discard",
}

type diskOpKey struct {
	dev uint32
	op  tracer.DiskOp
}

type diskOpSeries struct {
	service, queue series
	completed      uint64
}

// submitterState is what the converter remembers of one process on one disk.
type submitterState struct {
	bytes, bios         uint64 // the kernel's counts at the last collection
	comm                string
	cgroupID            uint64
	own                 bool              // it had a series of its own in the last collection
	baseBytes, baseBios uint64            // the counts its current own series starts from
	since               pcommon.Timestamp // when its current own series started
}

// diskRest is one disk's series for every process without one of its own: the
// counts they submitted while not among the top, the exited ones', and the kernel's overflow entry.
type diskRest struct{ bytes, bios uint64 }

// Disks turns the disks' view into cumulative OTLP metrics: one Resource, the
// host's disks, with a data point per disk and operation, and per disk the top
// submitters and the rest.
type Disks struct {
	scope    pcommon.InstrumentationScope
	start    pcommon.Timestamp
	last     pcommon.Timestamp // the previous collection
	ops      map[diskOpKey]*diskOpSeries
	subs     map[tracer.SubmitterKey]*submitterState
	rest     map[uint32]*diskRest
	overflow map[uint32]diskRest // the kernel's overflow entries as last read
	names    map[uint32]string
	name     func(dev uint32) string // the disk's name in /sys/block; a variable for tests
}

// NewDisks returns the converter of one session's disks' view.
func NewDisks(scopeName, version string, start pcommon.Timestamp) *Disks {
	c := &Disks{
		scope: pcommon.NewInstrumentationScope(), start: start, last: start,
		ops:      map[diskOpKey]*diskOpSeries{},
		subs:     map[tracer.SubmitterKey]*submitterState{},
		rest:     map[uint32]*diskRest{},
		overflow: map[uint32]diskRest{},
		names:    map[uint32]string{},
		name:     host.DiskName,
	}
	c.scope.SetName(scopeName)
	c.scope.SetVersion(version)
	return c
}

// Collect adds the kernel's current counts and returns every series as of now,
// and the (disk, process) entries of the processes that exited says are gone:
// reported for the last time, they can be deleted from the kernel.
func (c *Disks) Collect(ops []tracer.DiskOpStats, subs []tracer.Submitter, now pcommon.Timestamp, exited func(pid uint32) bool) (pmetric.Metrics, []tracer.SubmitterKey) {
	md := pmetric.NewMetrics()
	if len(ops) == 0 && len(subs) == 0 {
		return md, nil
	}
	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	c.scope.CopyTo(sm.Scope())
	c.appendOps(sm.Metrics(), ops, now)
	gone := c.appendSubmitters(sm.Metrics(), subs, now, exited)
	c.last = now
	return md, gone
}

func (c *Disks) appendOps(ms pmetric.MetricSlice, ops []tracer.DiskOpStats, now pcommon.Timestamp) {
	for i := range ops {
		op := &ops[i]
		s := c.ops[diskOpKey{op.Dev, op.Op}]
		if s == nil {
			s = &diskOpSeries{}
			c.ops[diskOpKey{op.Dev, op.Op}] = s
		}
		s.service.update(&op.Service, tracer.Waits{})
		s.queue.update(&op.Queue, tracer.Waits{})
		s.completed = op.Completed
	}
	keys := sortedKeys(c.ops, func(a, b diskOpKey) int { return cmp.Or(cmp.Compare(a.dev, b.dev), cmp.Compare(a.op, b.op)) })

	service := newExpHistogram(ms, MetricDiskServiceTime, "s",
		"Time the device took to serve a request, from its issue to the driver to its completion, per disk and operation.")
	queue := newExpHistogram(ms, MetricDiskQueueTime, "s",
		"Time the kernel held a request before issuing it to the device (plugging, the I/O scheduler, a full device queue), from the request's creation from its first bio.")
	completed := newSum(ms, MetricDiskOperations, "{operation}",
		"Requests completed, per disk and operation, as /sys/block/<disk>/stat counts them.")
	for _, key := range keys {
		s := c.ops[key]
		if n := bucketCount(&s.service); n > 0 {
			dp := service.DataPoints().AppendEmpty()
			c.putOpAttributes(dp.Attributes(), key)
			fillHistogram(dp, &s.service, c.start, now)
		}
		if n := bucketCount(&s.queue); n > 0 {
			dp := queue.DataPoints().AppendEmpty()
			c.putOpAttributes(dp.Attributes(), key)
			fillHistogram(dp, &s.queue, c.start, now)
		}
		dp := completed.DataPoints().AppendEmpty()
		c.putOpAttributes(dp.Attributes(), key)
		dp.SetStartTimestamp(c.start)
		dp.SetTimestamp(now)
		dp.SetIntValue(int64(s.completed))
	}
}

func (c *Disks) putOpAttributes(attrs pcommon.Map, key diskOpKey) {
	attrs.PutStr(AttrDisk, c.diskName(key.dev))
	attrs.PutStr(AttrDiskOperation, diskOpNames[key.op])
	if key.op == tracer.DiskRead || key.op == tracer.DiskWrite {
		attrs.PutStr(AttrDiskDirection, diskOpNames[key.op])
	}
}

// appendSubmitters picks, per disk, the processes that submitted the most bytes
// since the last collection for series of their own; every other byte goes to the
// disk's rest. Each series only grows: a process that joins the top starts a
// series from the counts it has then, and what it submits outside the top is the rest's.
func (c *Disks) appendSubmitters(ms pmetric.MetricSlice, subs []tracer.Submitter, now pcommon.Timestamp, exited func(pid uint32) bool) []tracer.SubmitterKey {
	type delta struct {
		key         tracer.SubmitterKey
		bytes, bios uint64
		state       *submitterState
		exited      bool
	}
	byDisk := map[uint32][]delta{}
	for _, s := range subs {
		if s.Overflow {
			prev := c.overflow[s.Dev]
			c.restOf(s.Dev).add(s.Bytes-prev.bytes, s.Bios-prev.bios)
			c.overflow[s.Dev] = diskRest{s.Bytes, s.Bios}
			continue
		}
		key := tracer.SubmitterKey{Dev: s.Dev, PID: s.PID}
		st := c.subs[key]
		if st == nil || s.Bytes < st.bytes { // new, or a reused pid whose entry started over
			st = &submitterState{comm: s.Comm, cgroupID: s.CgroupID}
			c.subs[key] = st
		}
		d := delta{key: key, bytes: s.Bytes - st.bytes, bios: s.Bios - st.bios, state: st, exited: exited(s.PID)}
		st.bytes, st.bios = s.Bytes, s.Bios
		byDisk[s.Dev] = append(byDisk[s.Dev], d)
	}

	bytes := newSum(ms, MetricDiskSubmittedBytes, "By",
		"Bytes of data submitted to the disk (bios queued; a discard moves none), by the submitting process: the top processes of each collection, the rest in the series marked otel.metric.overflow.")
	bios := newSum(ms, MetricDiskSubmittedBios, "{bio}",
		"Bios submitted to the disk by the submitting process, in the series of metric "+MetricDiskSubmittedBytes+".")
	var gone []tracer.SubmitterKey
	for _, dev := range sortedKeys(byDisk, cmp.Compare[uint32]) {
		c.restOf(dev) // every disk has its rest series, at 0 while the top holds everything
		ds := byDisk[dev]
		// The most bytes since the last collection first; at equal counts (idle ones) a
		// process keeps the series it has, so that a pause does not cut it.
		slices.SortFunc(ds, func(a, b delta) int {
			return cmp.Or(cmp.Compare(b.bytes, a.bytes), compareBool(b.state.own, a.state.own),
				cmp.Compare(b.state.bytes, a.state.bytes), cmp.Compare(a.key.PID, b.key.PID))
		})
		for i, d := range ds {
			st := d.state
			if i < topSubmitters && (d.bytes > 0 || st.own) {
				if !st.own {
					st.own, st.since = true, c.last
					st.baseBytes, st.baseBios = st.bytes-d.bytes, st.bios-d.bios
				}
				c.appendSubmitterPoint(bytes, bios, dev, d.key.PID, st, now)
			} else {
				st.own = false
				c.restOf(dev).add(d.bytes, d.bios)
			}
			if d.exited {
				gone = append(gone, d.key)
				delete(c.subs, d.key)
			}
		}
	}
	for _, dev := range sortedKeys(c.rest, cmp.Compare[uint32]) {
		r := c.rest[dev]
		for _, m := range []struct {
			sum   pmetric.Sum
			value uint64
		}{{bytes, r.bytes}, {bios, r.bios}} {
			dp := m.sum.DataPoints().AppendEmpty()
			dp.Attributes().PutStr(AttrDisk, c.diskName(dev))
			dp.Attributes().PutBool(AttrOverflow, true)
			dp.SetStartTimestamp(c.start)
			dp.SetTimestamp(now)
			dp.SetIntValue(int64(m.value))
		}
	}
	return gone
}

func (c *Disks) appendSubmitterPoint(bytes, bios pmetric.Sum, dev, pid uint32, st *submitterState, now pcommon.Timestamp) {
	for _, m := range []struct {
		sum   pmetric.Sum
		value uint64
	}{{bytes, st.bytes - st.baseBytes}, {bios, st.bios - st.baseBios}} {
		dp := m.sum.DataPoints().AppendEmpty()
		attrs := dp.Attributes()
		attrs.PutStr(AttrDisk, c.diskName(dev))
		attrs.PutInt(AttrProcessPID, int64(pid))
		attrs.PutStr(AttrProcessExecName, st.comm)
		attrs.PutInt(AttrCgroupID, int64(st.cgroupID))
		dp.SetStartTimestamp(st.since)
		dp.SetTimestamp(now)
		dp.SetIntValue(int64(m.value))
	}
}

func (c *Disks) restOf(dev uint32) *diskRest {
	r := c.rest[dev]
	if r == nil {
		r = &diskRest{}
		c.rest[dev] = r
	}
	return r
}

func (r *diskRest) add(bytes, bios uint64) { r.bytes, r.bios = r.bytes+bytes, r.bios+bios }

// diskName is the disk's name in /sys/block, read once.
func (c *Disks) diskName(dev uint32) string {
	name, ok := c.names[dev]
	if !ok {
		name = c.name(dev)
		c.names[dev] = name
	}
	return name
}

func newExpHistogram(ms pmetric.MetricSlice, name, unit, description string) pmetric.ExponentialHistogram {
	m := ms.AppendEmpty()
	m.SetName(name)
	m.SetUnit(unit)
	m.SetDescription(description)
	h := m.SetEmptyExponentialHistogram()
	h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	return h
}

func newSum(ms pmetric.MetricSlice, name, unit, description string) pmetric.Sum {
	m := ms.AppendEmpty()
	m.SetName(name)
	m.SetUnit(unit)
	m.SetDescription(description)
	s := m.SetEmptySum()
	s.SetIsMonotonic(true)
	s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	return s
}

func bucketCount(s *series) uint64 {
	var n uint64
	for _, b := range s.buckets {
		n += b
	}
	return n
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func sortedKeys[K comparable, V any](m map[K]V, compare func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compare)
	return keys
}
