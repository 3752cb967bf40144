//go:build linux

package etcdebpfreceiver

import (
	"unsafe"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

// Attribute keys: part of the receiver's contract, documented in the README.
const (
	attrType       = "etcd.syscall.type"
	attrRaw        = "etcd.syscall.raw"
	attrPID        = "process.pid"
	attrTID        = "thread.id"
	attrThreadName = "thread.name"

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
)

// logBuilder turns raw ring-buffer records into log records of one plog.Logs.
type logBuilder struct {
	decode  bool
	scope   pcommon.InstrumentationScope
	strings stringCache
	// bootOffset converts the kernel's CLOCK_MONOTONIC to wall-clock time.
	bootOffset int64

	logs    plog.Logs
	records plog.LogRecordSlice
}

func newLogBuilder(decode bool, scopeName, version string, capacity int) *logBuilder {
	b := &logBuilder{decode: decode, scope: pcommon.NewInstrumentationScope(), strings: stringCache{}}
	b.scope.SetName(scopeName)
	b.scope.SetVersion(version)
	b.reset(capacity)
	return b
}

// reset starts a new batch; the previous plog.Logs now belongs to the consumer.
func (b *logBuilder) reset(capacity int) {
	b.logs = plog.NewLogs()
	sl := b.logs.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	b.scope.CopyTo(sl.Scope())
	b.records = sl.LogRecords()
	b.records.EnsureCapacity(capacity)
	b.bootOffset = bootOffset()
}

func (b *logBuilder) len() int { return b.records.Len() }

// take returns the batch built so far and starts a new one.
func (b *logBuilder) take(capacity int) plog.Logs {
	logs := b.logs
	b.reset(capacity)
	return logs
}

// append adds the record in raw, or returns an error and adds nothing if raw is not a record.
func (b *logBuilder) append(raw []byte, observed pcommon.Timestamp) error {
	ev, payload, err := bpf.Decode(raw)
	if err != nil {
		return err
	}
	lr := b.records.AppendEmpty()
	lr.SetTimestamp(monotonicToWall(ev.StartNs, b.bootOffset))
	lr.SetObservedTimestamp(observed)

	attrs := lr.Attributes()
	if b.decode {
		attrs.EnsureCapacity(15)
	} else {
		attrs.EnsureCapacity(5)
	}
	attrs.PutInt(attrType, int64(ev.Type))
	attrs.PutEmptyBytes(attrRaw).Append(raw...)
	attrs.PutInt(attrPID, int64(ev.Pid))
	attrs.PutInt(attrTID, int64(ev.Tid))
	attrs.PutStr(attrThreadName, b.strings.get(ev.Comm[:]))
	if !b.decode {
		return nil
	}
	attrs.PutStr(attrName, bpf.MonitorSyscallType(ev.Type).String())
	attrs.PutInt(attrFD, int64(ev.Fd))
	attrs.PutStr(attrFDKind, bpf.MonitorFdKind(ev.FdKind).String())
	if ev.FileName[0] != 0 {
		attrs.PutStr(attrFileName, b.strings.get(ev.FileName[:]))
	}
	if ev.Inode != 0 {
		attrs.PutInt(attrFileInode, int64(ev.Inode))
	}
	attrs.PutInt(attrCount, int64(ev.Count))
	if ev.Offset >= 0 {
		attrs.PutInt(attrOffset, ev.Offset)
	}
	attrs.PutInt(attrRet, ev.Ret)
	attrs.PutInt(attrDurationNs, int64(ev.DurationNs))
	if len(payload) > 0 {
		attrs.PutEmptyBytes(attrPayload).Append(payload...)
	}
	return nil
}

// bootOffset is wall-clock time minus CLOCK_MONOTONIC, read now: monotonic
// stamps plus this offset line up with the timestamps in etcd's own logs.
func bootOffset() int64 {
	var mono, wall unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &wall)
	return wall.Nano() - mono.Nano()
}

func monotonicToWall(monoNs uint64, offset int64) pcommon.Timestamp {
	return pcommon.Timestamp(int64(monoNs) + offset)
}

// stringCache interns the NUL-terminated names of records: the same few process
// and file names repeat in every record, and the cache saves an allocation each.
type stringCache map[string]string

const maxCachedStrings = 4096

func (c stringCache) get(name []int8) string {
	b := cString(name)
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

func cString(name []int8) []byte {
	b := unsafeBytes(name)
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

func unsafeBytes(s []int8) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s))
}
