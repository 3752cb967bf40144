//go:build linux && (amd64 || arm64)

package bpf

import (
	"fmt"
	"unsafe"
)

// The record layout, as etcd_monitor.c defines it.
const (
	RecordVersion = uint16(MonitorRecordLayoutRECORD_VERSION)
	PayloadMax    = int(MonitorRecordLayoutPAYLOAD_MAX)
	// EventSize is the size of the fixed part of every record.
	EventSize = int(unsafe.Sizeof(MonitorEvent{}))
)

// Decode interprets raw as a record written by etcd_monitor.c. The returned event
// and payload alias raw: they are valid until raw is reused.
func Decode(raw []byte) (*MonitorEvent, []byte, error) {
	if len(raw) < EventSize {
		return nil, nil, fmt.Errorf("record of %d bytes is shorter than the %d-byte event", len(raw), EventSize)
	}
	ev := (*MonitorEvent)(unsafe.Pointer(unsafe.SliceData(raw)))
	if ev.Version != RecordVersion {
		return nil, nil, fmt.Errorf("record version %d, want %d: the BPF object and the Go code are out of step", ev.Version, RecordVersion)
	}
	payload := raw[EventSize:]
	if int(ev.PayloadLen) > len(payload) || int(ev.PayloadLen) > PayloadMax {
		return nil, nil, fmt.Errorf("record claims %d payload bytes but carries %d", ev.PayloadLen, len(payload))
	}
	return ev, payload[:ev.PayloadLen], nil
}

// CString is the NUL-terminated name in name (an event's Comm or FileName),
// without copying: the bytes alias name.
func CString(name []int8) []byte {
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(name))), len(name))
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

var syscallNames = [...]string{
	MonitorSyscallTypeSYSCALL_WRITE:           "write",
	MonitorSyscallTypeSYSCALL_PWRITE64:        "pwrite64",
	MonitorSyscallTypeSYSCALL_WRITEV:          "writev",
	MonitorSyscallTypeSYSCALL_PWRITEV:         "pwritev",
	MonitorSyscallTypeSYSCALL_FSYNC:           "fsync",
	MonitorSyscallTypeSYSCALL_FDATASYNC:       "fdatasync",
	MonitorSyscallTypeSYSCALL_SYNC_FILE_RANGE: "sync_file_range",
}

// String is the syscall's name, or "unknown".
func (t MonitorSyscallType) String() string {
	if int(t) < len(syscallNames) && syscallNames[t] != "" {
		return syscallNames[t]
	}
	return "unknown"
}

var fdKindNames = [...]string{
	MonitorFdKindFD_KIND_UNKNOWN:   "unknown",
	MonitorFdKindFD_KIND_FILE:      "file",
	MonitorFdKindFD_KIND_SOCKET:    "socket",
	MonitorFdKindFD_KIND_PIPE:      "pipe",
	MonitorFdKindFD_KIND_EVENTFD:   "eventfd",
	MonitorFdKindFD_KIND_DIRECTORY: "directory",
	MonitorFdKindFD_KIND_OTHER:     "other",
}

// String is the fd kind's name; a kind this code does not know is "other".
func (k MonitorFdKind) String() string {
	if int(k) < len(fdKindNames) {
		return fdKindNames[k]
	}
	return "other"
}

// ParseSyscallType is the syscall type of a name String returns.
func ParseSyscallType(name string) (MonitorSyscallType, bool) {
	for t, n := range syscallNames {
		if n != "" && n == name {
			return MonitorSyscallType(t), true
		}
	}
	return 0, false
}

// ParseFdKind is the fd kind of a name String returns.
func ParseFdKind(name string) (MonitorFdKind, bool) {
	for k, n := range fdKindNames {
		if n == name {
			return MonitorFdKind(k), true
		}
	}
	return 0, false
}

var fileClassNames = [...]string{
	MonitorFileClassFILE_CLASS_NONE:  "",
	MonitorFileClassFILE_CLASS_WAL:   "wal",
	MonitorFileClassFILE_CLASS_SNAP:  "snap",
	MonitorFileClassFILE_CLASS_DB:    "db",
	MonitorFileClassFILE_CLASS_TMP:   "tmp",
	MonitorFileClassFILE_CLASS_OTHER: "other",
}

// String is the class's name: empty for an fd that is no file or directory.
func (c MonitorFileClass) String() string {
	if int(c) < len(fileClassNames) {
		return fileClassNames[c]
	}
	return "other"
}
