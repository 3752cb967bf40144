//go:build linux && (amd64 || arm64)

package tracer

import (
	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

// Syscall is a traced syscall, as records and histogram keys name it.
type Syscall uint16

// The traced syscalls.
const (
	SyscallWrite         = Syscall(bpf.MonitorSyscallTypeSYSCALL_WRITE)
	SyscallPwrite64      = Syscall(bpf.MonitorSyscallTypeSYSCALL_PWRITE64)
	SyscallWritev        = Syscall(bpf.MonitorSyscallTypeSYSCALL_WRITEV)
	SyscallPwritev       = Syscall(bpf.MonitorSyscallTypeSYSCALL_PWRITEV)
	SyscallFsync         = Syscall(bpf.MonitorSyscallTypeSYSCALL_FSYNC)
	SyscallFdatasync     = Syscall(bpf.MonitorSyscallTypeSYSCALL_FDATASYNC)
	SyscallSyncFileRange = Syscall(bpf.MonitorSyscallTypeSYSCALL_SYNC_FILE_RANGE)
)

// String is the syscall's name, or "unknown".
func (s Syscall) String() string { return bpf.MonitorSyscallType(s).String() }

// Writes reports whether the syscall writes data (its return value is bytes written).
func (s Syscall) Writes() bool { return s >= SyscallWrite && s <= SyscallPwritev }

// TakesCount reports whether the syscall has a byte count argument: all but fsync and fdatasync.
func (s Syscall) TakesCount() bool { return s != SyscallFsync && s != SyscallFdatasync }

// ParseSyscall is the syscall of a name String returns.
func ParseSyscall(name string) (Syscall, bool) {
	t, ok := bpf.ParseSyscallType(name)
	return Syscall(t), ok
}

// FDKind is what kind of file a call's fd is.
type FDKind uint8

// The fd kinds.
const (
	FDKindUnknown   = FDKind(bpf.MonitorFdKindFD_KIND_UNKNOWN)
	FDKindFile      = FDKind(bpf.MonitorFdKindFD_KIND_FILE)
	FDKindSocket    = FDKind(bpf.MonitorFdKindFD_KIND_SOCKET)
	FDKindPipe      = FDKind(bpf.MonitorFdKindFD_KIND_PIPE)
	FDKindEventfd   = FDKind(bpf.MonitorFdKindFD_KIND_EVENTFD)
	FDKindDirectory = FDKind(bpf.MonitorFdKindFD_KIND_DIRECTORY)
	FDKindOther     = FDKind(bpf.MonitorFdKindFD_KIND_OTHER)
)

// String is the fd kind's name; a kind this code does not know is "other".
func (k FDKind) String() string { return bpf.MonitorFdKind(k).String() }

// ParseFDKind is the fd kind of a name String returns.
func ParseFDKind(name string) (FDKind, bool) {
	k, ok := bpf.ParseFdKind(name)
	return FDKind(k), ok
}

// FileClass is which of etcd's files a call's file is, by its name.
type FileClass uint8

// The file classes.
const (
	FileClassNone  = FileClass(bpf.MonitorFileClassFILE_CLASS_NONE)
	FileClassWAL   = FileClass(bpf.MonitorFileClassFILE_CLASS_WAL)
	FileClassSnap  = FileClass(bpf.MonitorFileClassFILE_CLASS_SNAP)
	FileClassDB    = FileClass(bpf.MonitorFileClassFILE_CLASS_DB)
	FileClassTmp   = FileClass(bpf.MonitorFileClassFILE_CLASS_TMP)
	FileClassOther = FileClass(bpf.MonitorFileClassFILE_CLASS_OTHER)
)

// String is the class's name: empty for an fd that is no file or directory.
func (c FileClass) String() string { return bpf.MonitorFileClass(c).String() }

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

// Record is one decoded ring-buffer record: a view of the bytes it was decoded
// from, valid until they are reused.
type Record struct {
	ev      *bpf.MonitorEvent
	payload []byte
}

// DecodeRecord interprets raw as a record the BPF programs wrote.
func DecodeRecord(raw []byte) (Record, error) {
	ev, payload, err := bpf.Decode(raw)
	return Record{ev: ev, payload: payload}, err
}

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
func (r Record) CommName() []byte { return bpf.CString(r.ev.Comm[:]) }

// FileName is the name of the call's file (empty for no file), aliasing the record's bytes.
func (r Record) FileName() []byte { return bpf.CString(r.ev.FileName[:]) }

// Payload is the leading bytes of the write the record carries, aliasing the record's bytes.
func (r Record) Payload() []byte { return r.payload }
