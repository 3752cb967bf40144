//go:build linux && (amd64 || arm64)

package bpf

import "unsafe"

// The record layout, as etcd_monitor.c defines it: internal/tracer decodes it.
const (
	RecordVersion = uint16(MonitorRecordLayoutRECORD_VERSION)
	PayloadMax    = int(MonitorRecordLayoutPAYLOAD_MAX)
	// EventSize is the size of the fixed part of every record.
	EventSize = int(unsafe.Sizeof(MonitorEvent{}))
)

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
