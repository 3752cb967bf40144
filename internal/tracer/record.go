//go:build linux && (amd64 || arm64)

package tracer

import (
	"bytes"
	"errors"
	"fmt"
	"unsafe"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

// The values of names.go are the C enums': a constant index out of range, or a
// negative constant converted to an unsigned type, fails to compile.
var (
	_ = [1]struct{}{}[SyscallWrite-Syscall(bpf.MonitorSyscallTypeSYSCALL_WRITE)]
	_ = [1]struct{}{}[SyscallPwrite64-Syscall(bpf.MonitorSyscallTypeSYSCALL_PWRITE64)]
	_ = [1]struct{}{}[SyscallWritev-Syscall(bpf.MonitorSyscallTypeSYSCALL_WRITEV)]
	_ = [1]struct{}{}[SyscallPwritev-Syscall(bpf.MonitorSyscallTypeSYSCALL_PWRITEV)]
	_ = [1]struct{}{}[SyscallFsync-Syscall(bpf.MonitorSyscallTypeSYSCALL_FSYNC)]
	_ = [1]struct{}{}[SyscallFdatasync-Syscall(bpf.MonitorSyscallTypeSYSCALL_FDATASYNC)]
	_ = [1]struct{}{}[SyscallSyncFileRange-Syscall(bpf.MonitorSyscallTypeSYSCALL_SYNC_FILE_RANGE)]
	_ = [1]struct{}{}[FDKindUnknown-FDKind(bpf.MonitorFdKindFD_KIND_UNKNOWN)]
	_ = [1]struct{}{}[FDKindFile-FDKind(bpf.MonitorFdKindFD_KIND_FILE)]
	_ = [1]struct{}{}[FDKindSocket-FDKind(bpf.MonitorFdKindFD_KIND_SOCKET)]
	_ = [1]struct{}{}[FDKindPipe-FDKind(bpf.MonitorFdKindFD_KIND_PIPE)]
	_ = [1]struct{}{}[FDKindEventfd-FDKind(bpf.MonitorFdKindFD_KIND_EVENTFD)]
	_ = [1]struct{}{}[FDKindDirectory-FDKind(bpf.MonitorFdKindFD_KIND_DIRECTORY)]
	_ = [1]struct{}{}[FDKindOther-FDKind(bpf.MonitorFdKindFD_KIND_OTHER)]
	_ = [1]struct{}{}[FileClassNone-FileClass(bpf.MonitorFileClassFILE_CLASS_NONE)]
	_ = [1]struct{}{}[FileClassWAL-FileClass(bpf.MonitorFileClassFILE_CLASS_WAL)]
	_ = [1]struct{}{}[FileClassSnap-FileClass(bpf.MonitorFileClassFILE_CLASS_SNAP)]
	_ = [1]struct{}{}[FileClassDB-FileClass(bpf.MonitorFileClassFILE_CLASS_DB)]
	_ = [1]struct{}{}[FileClassTmp-FileClass(bpf.MonitorFileClassFILE_CLASS_TMP)]
	_ = [1]struct{}{}[FileClassOther-FileClass(bpf.MonitorFileClassFILE_CLASS_OTHER)]
)

// Limits of the BPF object that bound the configuration.
const (
	// CommLen is the size of a task name in the kernel (TASK_COMM_LEN), NUL included.
	CommLen = bpf.CommLen
	// PayloadMax is the most leading bytes of a write a record carries.
	PayloadMax = bpf.PayloadMax
)

// MaxTargetPIDs is how many pids the kernel's pid filter holds: the most a
// receiver can select by pid.
func MaxTargetPIDs() (int, error) { return bpf.MaxTargetPIDs() }

// Comm is a task name as the kernel keeps it: NUL-padded, usable as a map key.
type Comm [CommLen]int8

// ErrMalformedRecord is what ReadRecord's error wraps, with the reason, for a
// record that does not decode. The ring has moved past it: the next ReadRecord
// reads the record after it.
var ErrMalformedRecord = errors.New("malformed record")

// eventSize is the size of the fixed part of every record.
const eventSize = bpf.EventSize

// Record is one ring-buffer record, decoded: a view of the bytes the kernel
// wrote, valid until they are reused (for ReadRecord's, until the next
// ReadRecord). Its fields are read in place, with no copy.
type Record struct {
	ev  *bpf.MonitorEvent
	raw []byte
}

// decodeRecord interprets raw as a record the BPF programs wrote.
func decodeRecord(raw []byte) (Record, error) {
	ev, _, err := decodeEvent(raw)
	if err != nil {
		return Record{}, err
	}
	return Record{ev: ev, raw: raw}, nil
}

// decodeEvent checks raw against the layout etcd_monitor.c writes and returns
// its fixed part and its payload, both aliasing raw.
func decodeEvent(raw []byte) (*bpf.MonitorEvent, []byte, error) {
	if len(raw) < eventSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte event", ErrMalformedRecord, len(raw), eventSize)
	}
	ev := (*bpf.MonitorEvent)(unsafe.Pointer(unsafe.SliceData(raw)))
	if ev.Version != bpf.RecordVersion {
		return nil, nil, fmt.Errorf("%w: record version %d, want %d: the BPF object and the Go code are out of step",
			ErrMalformedRecord, ev.Version, bpf.RecordVersion)
	}
	payload := raw[eventSize:]
	if int(ev.PayloadLen) > len(payload) || int(ev.PayloadLen) > bpf.PayloadMax {
		return nil, nil, fmt.Errorf("%w: it claims %d payload bytes but carries %d", ErrMalformedRecord, ev.PayloadLen, len(payload))
	}
	return ev, payload[:ev.PayloadLen], nil
}

// Raw is the record's bytes as the kernel wrote them, its payload area included.
func (r Record) Raw() []byte { return r.raw }

func (r Record) Syscall() Syscall { return Syscall(r.ev.Type) }
func (r Record) FDKind() FDKind   { return FDKind(r.ev.FdKind) }
func (r Record) PID() uint32      { return r.ev.Pid }
func (r Record) TID() uint32      { return r.ev.Tid }
func (r Record) FD() int32        { return r.ev.Fd }
func (r Record) Inode() uint64    { return r.ev.Inode }
func (r Record) Count() uint64    { return r.ev.Count }

// Offset is the file offset of a positional call; negative for the others.
func (r Record) Offset() int64 { return r.ev.Offset }
func (r Record) Ret() int64    { return r.ev.Ret }

// StartNs is when the call entered, in CLOCK_MONOTONIC nanoseconds.
func (r Record) StartNs() uint64    { return r.ev.StartNs }
func (r Record) DurationNs() uint64 { return r.ev.DurationNs }
func (r Record) Comm() Comm         { return Comm(r.ev.Comm) }

// Waits is where the call's time off the CPU went, when the scheduler part
// measured the call (false otherwise): a call that never left the CPU has none.
func (r Record) Waits() (Waits, bool) {
	if r.ev.Measured&uint32(bpf.MonitorRecordMeasuredMEASURED_SCHED) == 0 {
		return Waits{}, false
	}
	return Waits{Ns: r.ev.WaitNs, IODeviceNs: r.ev.IoDeviceNs, IODeviceKnown: r.ev.Measured&uint32(bpf.MonitorRecordMeasuredMEASURED_IO_DEVICE) != 0}, true
}

// OtherWaitIP is an address in the kernel function the call's longest unknown
// wait was in (KernelFunction names it); 0 when it had none.
func (r Record) OtherWaitIP() uint64 { return r.ev.OtherWaitIp }

// CommName is the task's name, aliasing the record's bytes.
func (r Record) CommName() []byte { return cString(r.ev.Comm[:]) }

// FileName is the name of the call's file (empty for no file), aliasing the record's bytes.
func (r Record) FileName() []byte { return cString(r.ev.FileName[:]) }

// Payload is the leading bytes of the write the record carries, aliasing the record's bytes.
func (r Record) Payload() []byte { return r.raw[eventSize:][:r.ev.PayloadLen] }

// cString is the NUL-terminated name in name (Comm or FileName) without
// copying: the bytes alias name. A name that fills its field has no NUL.
func cString(name []int8) []byte {
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(name))), len(name))
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}
