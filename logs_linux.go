//go:build linux

package etcdebpfreceiver

import (
	"math"
	"strconv"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// Attribute keys: part of the receiver's contract, documented in docs/records.md. The
// Resource of a process's records carries attrProcessPID and attrProcessExecName,
// as the Resource of its metrics does.
const (
	// On every record.
	attrType = "etcd.syscall.type"
	attrRaw  = "etcd.syscall.raw"
	attrTID  = "thread.id"

	// On every record when decode is on.
	attrName       = "etcd.syscall.name"
	attrFD         = "etcd.syscall.fd"
	attrFDKind     = "etcd.syscall.fd_kind"
	attrFileName   = "file.name"
	attrFileInode  = "file.inode"
	attrCount      = "etcd.syscall.count"
	attrOffset     = "etcd.syscall.offset"
	attrRet        = "etcd.syscall.ret"
	attrDurationNs = "etcd.syscall.duration_ns"
	attrPayload    = "etcd.syscall.payload"

	// When decode and scheduler are on: where the call's time went besides a CPU.
	attrBlockedNs  = "etcd.syscall.blocked_ns"
	attrRunnableNs = "etcd.syscall.runnable_ns"

	// When decode and block are on, for a call on a file of a covered disk: what the
	// disk did while the call ran.
	attrDisk            = "system.device"
	attrDiskRequests    = "etcd.syscall.disk.requests"
	attrDiskDeviceNs    = "etcd.syscall.disk.device_ns"
	attrDiskOwnBytes    = "etcd.syscall.disk.own_bytes"
	attrDiskOthersBytes = "etcd.syscall.disk.others_bytes"
)

// logBuilder turns raw ring-buffer records into log records of one plog.Logs,
// grouped into one ResourceLogs per process.
type logBuilder struct {
	decode  bool
	scope   pcommon.InstrumentationScope
	strings stringCache
	inodes  inodeCache
	disks   map[uint32]string // disk names by dev_t: a handful, read once from /sys
	// bootOffset converts the kernel's CLOCK_MONOTONIC to wall-clock time.
	bootOffset int64

	logs      plog.Logs
	capacity  int // records the batch is sized for
	n         int // records in the batch
	processes map[processKey]plog.LogRecordSlice
	last      processKey // the process of the previous record, and its records
	lastRecs  plog.LogRecordSlice
}

// processKey is what identifies a Resource: the process and the task's name.
// A process's threads share its name unless one renames itself; such a thread
// gets a Resource of its own, so that no record is labelled with another name.
type processKey struct {
	pid  uint32
	comm [16]int8
}

func newLogBuilder(decode bool, scopeName, version string, capacity int) *logBuilder {
	b := &logBuilder{decode: decode, scope: pcommon.NewInstrumentationScope(), strings: stringCache{}, inodes: inodeCache{}, disks: map[uint32]string{}}
	b.scope.SetName(scopeName)
	b.scope.SetVersion(version)
	b.reset(capacity)
	return b
}

// reset starts a new batch; the previous plog.Logs now belongs to the consumer.
func (b *logBuilder) reset(capacity int) {
	b.logs = plog.NewLogs()
	b.capacity, b.n = capacity, 0
	b.processes = map[processKey]plog.LogRecordSlice{}
	b.last, b.lastRecs = processKey{}, plog.LogRecordSlice{}
	b.bootOffset = bootOffset()
}

func (b *logBuilder) len() int { return b.n }

// take returns the batch built so far and starts a new one.
func (b *logBuilder) take(capacity int) plog.Logs {
	logs := b.logs
	b.reset(capacity)
	return logs
}

// recordsOf returns the log records of ev's process, adding its ResourceLogs on
// the process's first record in the batch.
func (b *logBuilder) recordsOf(ev *bpf.MonitorEvent) plog.LogRecordSlice {
	key := processKey{pid: ev.Pid, comm: ev.Comm}
	if key == b.last && b.n > 0 {
		return b.lastRecs
	}
	recs, ok := b.processes[key]
	if !ok {
		rl := b.logs.ResourceLogs().AppendEmpty()
		res := rl.Resource().Attributes()
		res.EnsureCapacity(2)
		res.PutInt(attrProcessPID, int64(ev.Pid))
		res.PutStr(attrProcessExecName, b.strings.get(ev.Comm[:]))
		sl := rl.ScopeLogs().AppendEmpty()
		b.scope.CopyTo(sl.Scope())
		recs = sl.LogRecords()
		recs.EnsureCapacity(max(b.capacity-b.n, 1))
		b.processes[key] = recs
	}
	b.last, b.lastRecs = key, recs
	return recs
}

// append adds the record in raw, or returns an error and adds nothing if raw is not a record.
func (b *logBuilder) append(raw []byte, observed pcommon.Timestamp) error {
	ev, payload, err := bpf.Decode(raw)
	if err != nil {
		return err
	}
	lr := b.recordsOf(ev).AppendEmpty()
	b.n++
	typ := bpf.MonitorSyscallType(ev.Type)
	lr.SetTimestamp(monotonicToWall(ev.StartNs, b.bootOffset))
	lr.SetObservedTimestamp(observed)
	lr.Body().SetStr(typ.String())

	attrs := lr.Attributes()
	takesCount := typ != bpf.MonitorSyscallTypeSYSCALL_FSYNC && typ != bpf.MonitorSyscallTypeSYSCALL_FDATASYNC
	sched := ev.Measured&uint32(bpf.MonitorRecordMeasuredMEASURED_SCHED) != 0
	disk := ev.Measured&uint32(bpf.MonitorRecordMeasuredMEASURED_DISK) != 0
	if !b.decode {
		attrs.EnsureCapacity(3)
	} else {
		// Exactly the attributes below: the slice is allocated once, at its size.
		attrs.EnsureCapacity(8 + btoi(ev.FileName[0] != 0) + btoi(ev.Inode != 0) + btoi(takesCount) +
			btoi(ev.Offset >= 0) + btoi(len(payload) > 0) + 2*btoi(sched) + 5*btoi(disk))
	}
	attrs.PutInt(attrType, int64(ev.Type))
	// FromRaw copies (one allocation of exactly the record's size): the ring
	// buffer reader reuses raw for the next record.
	attrs.PutEmptyBytes(attrRaw).FromRaw(raw)
	attrs.PutInt(attrTID, int64(ev.Tid))
	if !b.decode {
		return nil
	}
	attrs.PutStr(attrName, typ.String())
	attrs.PutInt(attrFD, int64(ev.Fd))
	attrs.PutStr(attrFDKind, bpf.MonitorFdKind(ev.FdKind).String())
	if ev.FileName[0] != 0 {
		attrs.PutStr(attrFileName, b.strings.get(ev.FileName[:]))
	}
	if ev.Inode != 0 {
		attrs.PutStr(attrFileInode, b.inodes.get(ev.Inode))
	}
	if takesCount {
		attrs.PutInt(attrCount, int64(ev.Count))
	}
	if ev.Offset >= 0 {
		attrs.PutInt(attrOffset, ev.Offset)
	}
	attrs.PutInt(attrRet, ev.Ret)
	attrs.PutInt(attrDurationNs, int64(ev.DurationNs))
	if sched {
		attrs.PutInt(attrBlockedNs, int64(ev.BlockedNs))
		attrs.PutInt(attrRunnableNs, int64(ev.RunnableNs))
	}
	if disk {
		attrs.PutStr(attrDisk, b.diskName(ev.Disk))
		attrs.PutInt(attrDiskRequests, int64(ev.DiskRequests))
		attrs.PutInt(attrDiskDeviceNs, int64(ev.DiskDeviceNs))
		attrs.PutInt(attrDiskOwnBytes, int64(ev.DiskOwnBytes))
		attrs.PutInt(attrDiskOthersBytes, int64(ev.DiskOthersBytes))
	}
	if len(payload) > 0 {
		attrs.PutEmptyBytes(attrPayload).FromRaw(payload)
	}
	return nil
}

// diskName is the name in /sys/block of the disk dev, as the disk metrics name it.
func (b *logBuilder) diskName(dev uint32) string {
	name, ok := b.disks[dev]
	if !ok {
		if len(b.disks) >= maxCachedStrings {
			clear(b.disks)
		}
		name = tracer.DiskName(dev)
		b.disks[dev] = name
	}
	return name
}

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
type stringCache map[string]string

func (c stringCache) get(name []int8) string {
	b := bpf.CString(name)
	if s, ok := c[string(b)]; ok { // no allocation: the compiler optimizes map lookups by []byte conversion
		return s
	}
	if len(c) >= maxCachedStrings {
		clear(c)
	}
	s := string(b)
	c[s] = s
	return s
}

// inodeCache holds the decimal strings of inode numbers (file.inode is a string
// in the semantic conventions): etcd writes to a handful of files.
type inodeCache map[uint64]string

func (c inodeCache) get(ino uint64) string {
	if s, ok := c[ino]; ok {
		return s
	}
	if len(c) >= maxCachedStrings {
		clear(c)
	}
	s := strconv.FormatUint(ino, 10)
	c[ino] = s
	return s
}
