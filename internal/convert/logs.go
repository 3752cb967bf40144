//go:build linux && (amd64 || arm64)

package convert

import (
	"math"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// LogBuilder turns the tracer's records into log records of one plog.Logs,
// grouped into one ResourceLogs per process.
type LogBuilder struct {
	decode  bool
	scope   pcommon.InstrumentationScope
	strings stringCache
	inodes  inodeCache
	// bootOffset converts the kernel's CLOCK_MONOTONIC to wall-clock time.
	bootOffset int64
	// refreshEvery is how often a new batch re-reads bootOffset and sweeps the
	// processes gone (0: every batch); refreshed is when it last did.
	refreshEvery time.Duration
	refreshed    time.Time

	logs      plog.Logs
	capacity  int // records the batch is sized for
	n         int // records in the batch
	processes map[processKey]plog.LogRecordSlice
	last      processKey // the process of the previous record, and its records
	lastRecs  plog.LogRecordSlice
	registry  Processes // nil: no command lines nor containers
}

// processKey is what identifies a Resource: the process and the task's name.
// A process's threads share its name unless one renames itself; such a thread
// gets a Resource of its own, so that no record is labelled with another name.
type processKey struct {
	pid  uint32
	comm tracer.Comm
}

func NewLogBuilder(decode bool, scopeName, version string, capacity int) *LogBuilder {
	b := &LogBuilder{decode: decode, scope: pcommon.NewInstrumentationScope()}
	b.scope.SetName(scopeName)
	b.scope.SetVersion(version)
	b.reset(capacity)
	return b
}

// WithProcesses puts process.command_args, container.id and k8s.pod.uid on each
// process's Resource, as processes describes the process running as its pid.
// A new batch checks the processes: one gone, or whose pid another process
// has, is described afresh.
func (b *LogBuilder) WithProcesses(processes Processes) *LogBuilder {
	b.registry = processes
	return b
}

// WithRefreshEvery makes a new batch re-read the boot offset and check the
// processes (WithProcesses) at most once per d, rather than at
// every batch. Both cost system calls (fifteen clock reads, and a read of
// /proc/PID/stat per process): at every batch of a busy receiver, hundreds of
// times a second, they took about 0.15 µs a record of the collector's CPU. An
// idle receiver's batch already spans up to the flush interval; with d the
// flush interval, a reused pid or a stepped wall clock is noticed at most that
// much later than before, as an idle receiver always did.
func (b *LogBuilder) WithRefreshEvery(d time.Duration) *LogBuilder {
	b.refreshEvery = d
	return b
}

// reset starts a new batch; the previous plog.Logs now belongs to the consumer.
func (b *LogBuilder) reset(capacity int) {
	b.logs = plog.NewLogs()
	b.capacity, b.n = capacity, 0
	clear(b.processes) // the slices in it belong to the consumer too; the map's room is reused
	if b.processes == nil {
		b.processes = map[processKey]plog.LogRecordSlice{}
	}
	b.last, b.lastRecs = processKey{}, plog.LogRecordSlice{}
	if now := time.Now(); b.refreshEvery <= 0 || now.Sub(b.refreshed) >= b.refreshEvery {
		b.bootOffset = bootOffset()
		if b.registry != nil {
			b.registry.Check()
		}
		b.refreshed = now
	}
}

// Len is how many records the batch holds.
func (b *LogBuilder) Len() int { return b.n }

// Take returns the batch built so far and starts a new one.
func (b *LogBuilder) Take(capacity int) plog.Logs {
	logs := b.logs
	b.reset(capacity)
	return logs
}

// recordsOf returns the log records of rec's process, adding its ResourceLogs on
// the process's first record in the batch.
func (b *LogBuilder) recordsOf(rec tracer.Record) plog.LogRecordSlice {
	key := processKey{pid: rec.PID(), comm: rec.Comm()}
	if key == b.last && b.n > 0 {
		return b.lastRecs
	}
	recs, ok := b.processes[key]
	if !ok {
		rl := b.logs.ResourceLogs().AppendEmpty()
		res := rl.Resource().Attributes()
		res.EnsureCapacity(3)
		res.PutInt(AttrProcessPID, int64(rec.PID()))
		res.PutStr(AttrProcessExecName, b.strings.get(rec.CommName()))
		if b.registry != nil {
			if p, ok := b.registry.Lookup(int(rec.PID())); ok {
				putDescription(res, b.registry.Describe(p))
			}
		}
		sl := rl.ScopeLogs().AppendEmpty()
		b.scope.CopyTo(sl.Scope())
		recs = sl.LogRecords()
		recs.EnsureCapacity(max(b.capacity-b.n, 1))
		b.processes[key] = recs
	}
	b.last, b.lastRecs = key, recs
	return recs
}

// Append adds rec's log record under its process's Resource. It copies what it
// keeps of rec's bytes: they are the ring's, reused once the next record is read.
func (b *LogBuilder) Append(rec tracer.Record, observed pcommon.Timestamp) {
	lr := b.recordsOf(rec).AppendEmpty()
	b.n++
	syscall := rec.Syscall()
	lr.SetTimestamp(monotonicToWall(rec.StartNs(), b.bootOffset))
	lr.SetObservedTimestamp(observed)
	lr.Body().SetStr(syscall.String())

	attrs := lr.Attributes()
	fileName, payload := rec.FileName(), rec.Payload()
	takesCount := syscall.TakesCount()
	waits, sched := rec.Waits()
	var parts tracer.Parts
	timeAttrs := 0
	if sched && b.decode {
		parts = waits.Split(rec.DurationNs())
		timeAttrs = 2 + btoi(parts[tracer.PartOther] > 0 && rec.OtherWaitIP() != 0) // the cause and cpu_ns
		for p := tracer.PartRunnable; p < tracer.PartCount; p++ {
			timeAttrs += btoi(parts[p] > 0)
		}
		for _, w := range ownIOWaits {
			timeAttrs += btoi(waits.Ns[w.wait] > 0)
		}
	}
	if !b.decode {
		attrs.EnsureCapacity(3)
	} else {
		// Exactly the attributes below: the slice is allocated once, at its size.
		attrs.EnsureCapacity(8 + btoi(len(fileName) > 0) + btoi(rec.Inode() != 0) + btoi(takesCount) +
			btoi(rec.Offset() >= 0) + btoi(len(payload) > 0) + timeAttrs)
	}
	attrs.PutInt(AttrType, int64(syscall))
	// FromRaw copies: one allocation of exactly the record's size.
	attrs.PutEmptyBytes(AttrRaw).FromRaw(rec.Raw())
	attrs.PutInt(AttrTID, int64(rec.TID()))
	if !b.decode {
		return
	}
	attrs.PutStr(AttrName, syscall.String())
	attrs.PutInt(AttrFD, int64(rec.FD()))
	attrs.PutStr(AttrFDKind, rec.FDKind().String())
	if len(fileName) > 0 {
		attrs.PutStr(AttrFileName, b.strings.get(fileName))
	}
	if rec.Inode() != 0 {
		attrs.PutStr(AttrFileInode, b.inodes.get(rec.Inode()))
	}
	if takesCount {
		attrs.PutInt(AttrCount, int64(rec.Count()))
	}
	if rec.Offset() >= 0 {
		attrs.PutInt(AttrOffset, rec.Offset())
	}
	attrs.PutInt(AttrRet, rec.Ret())
	attrs.PutInt(AttrDurationNs, int64(rec.DurationNs()))
	if sched {
		putTimeParts(attrs, &parts, &waits, rec.OtherWaitIP())
	}
	if len(payload) > 0 {
		attrs.PutEmptyBytes(AttrPayload).FromRaw(payload)
	}
}

// ownIOWaits are the waits for a call's own I/O, and their attributes.
var ownIOWaits = [...]struct {
	wait tracer.Wait
	attr string
}{{tracer.WaitFlush, AttrIOFlushNs}, {tracer.WaitWriteback, AttrIOWritebackNs}, {tracer.WaitMetadata, AttrIOMetadataNs}}

// putTimeParts puts where a call's time went: the parts that took any time (and
// the time on a CPU, always), the largest part's name, what its own I/O waits were
// for, and the function of its longest unknown wait.
func putTimeParts(attrs pcommon.Map, parts *tracer.Parts, waits *tracer.Waits, otherIP uint64) {
	attrs.PutInt(AttrTimeNs(tracer.PartCPU), int64(parts[tracer.PartCPU]))
	for p := tracer.PartRunnable; p < tracer.PartCount; p++ {
		if parts[p] > 0 {
			attrs.PutInt(AttrTimeNs(p), int64(parts[p]))
		}
	}
	attrs.PutStr(AttrCause, parts.Dominant().String())
	for _, w := range ownIOWaits {
		if ns := waits.Ns[w.wait]; ns > 0 {
			attrs.PutInt(w.attr, int64(ns))
		}
	}
	if parts[tracer.PartOther] > 0 && otherIP != 0 {
		attrs.PutStr(AttrWaitFunction, tracer.KernelFunction(otherIP))
	}
}

// AttrTimeNs is the log record attribute of a part of a call's time:
// etcd.syscall.time.<part>_ns.
func AttrTimeNs(p tracer.Part) string { return timeAttrs[p] }

var timeAttrs = func() (keys [tracer.PartCount]string) {
	for p := range tracer.PartCount {
		keys[p] = "etcd.syscall.time." + p.String() + "_ns"
	}
	return keys
}()

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// bootOffset is wall-clock time minus CLOCK_MONOTONIC, read now: monotonic
// stamps plus this offset line up with the timestamps in etcd's own logs.
// The wall clock is read between two monotonic reads, and the narrowest of a
// few brackets is kept: a preemption between two plain reads (milliseconds on
// a busy or emulated CPU) would shift every record's timestamp by its length,
// some past the moment the record was observed.
func bootOffset() int64 {
	var offset, narrowest int64 = 0, math.MaxInt64
	for range 5 {
		var before, wall, after unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &before)
		_ = unix.ClockGettime(unix.CLOCK_REALTIME, &wall)
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &after)
		if width := after.Nano() - before.Nano(); width < narrowest {
			offset, narrowest = wall.Nano()-(before.Nano()+width/2), width
		}
	}
	return offset
}

func monotonicToWall(monoNs uint64, offset int64) pcommon.Timestamp {
	return pcommon.Timestamp(int64(monoNs) + offset)
}

// maxCachedStrings bounds each cache: past it, the cache starts over.
const maxCachedStrings = 4096

// stringCache interns the NUL-terminated names of records: the same few process
// and file names repeat in every record, and the cache saves an allocation each.
// The name last returned is compared first: a run of one file's writes costs a
// comparison rather than hashing the name.
type stringCache struct {
	m    map[string]string
	last string
}

func (c *stringCache) get(b []byte) string {
	if string(b) == c.last { // no allocation: a comparison with a converted []byte does not copy it
		return c.last
	}
	s, ok := c.m[string(b)] // no allocation: the compiler optimizes map lookups by []byte conversion
	if !ok {
		if c.m == nil {
			c.m = map[string]string{}
		}
		if len(c.m) >= maxCachedStrings {
			clear(c.m)
		}
		s = string(b)
		c.m[s] = s
	}
	c.last = s
	return s
}

// inodeCache holds the decimal strings of inode numbers (file.inode is a string
// in the semantic conventions): etcd writes to a handful of files, and the one
// last returned is checked before the map, as in stringCache.
type inodeCache struct {
	m       map[uint64]string
	lastIno uint64
	last    string
}

func (c *inodeCache) get(ino uint64) string {
	if ino == c.lastIno && c.last != "" {
		return c.last
	}
	s, ok := c.m[ino]
	if !ok {
		if c.m == nil {
			c.m = map[uint64]string{}
		}
		if len(c.m) >= maxCachedStrings {
			clear(c.m)
		}
		s = strconv.FormatUint(ino, 10)
		c.m[ino] = s
	}
	c.lastIno, c.last = ino, s
	return s
}
