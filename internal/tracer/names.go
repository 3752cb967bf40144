package tracer

// The kernel side's enums and their names, in the one place the receiver's
// config, the records and the metrics take them from. This file carries no
// build constraint, so that the config validates names on every platform; on
// Linux, record.go checks at compile time that each value is the C enum's.

// Syscall is a traced syscall, as records and histogram keys name it.
type Syscall uint16

// The traced syscalls (etcd_monitor.c's enum syscall_type).
const (
	SyscallWrite Syscall = iota + 1
	SyscallPwrite64
	SyscallWritev
	SyscallPwritev
	SyscallFsync
	SyscallFdatasync
	SyscallSyncFileRange
)

var syscallNames = [...]string{
	SyscallWrite: "write", SyscallPwrite64: "pwrite64", SyscallWritev: "writev", SyscallPwritev: "pwritev",
	SyscallFsync: "fsync", SyscallFdatasync: "fdatasync", SyscallSyncFileRange: "sync_file_range",
}

// String is the syscall's name, or "unknown".
func (s Syscall) String() string { return nameAt(syscallNames[:], int(s), "unknown") }

// Writes reports whether the syscall writes data (its return value is bytes written).
func (s Syscall) Writes() bool { return s >= SyscallWrite && s <= SyscallPwritev }

// TakesCount reports whether the syscall has a byte count argument: all but fsync and fdatasync.
func (s Syscall) TakesCount() bool { return s != SyscallFsync && s != SyscallFdatasync }

// ParseSyscall is the syscall of a name String returns.
func ParseSyscall(name string) (Syscall, bool) {
	i, ok := indexOf(syscallNames[:], name)
	return Syscall(i), ok
}

// SyscallNames are the names of the traced syscalls, in their order.
func SyscallNames() []string { return append([]string(nil), syscallNames[SyscallWrite:]...) }

// FDKind is what kind of file a call's fd is.
type FDKind uint8

// The fd kinds (etcd_monitor.c's enum fd_kind).
const (
	FDKindUnknown FDKind = iota // the fd was closed before the call returned
	FDKindFile
	FDKindSocket
	FDKindPipe
	FDKindEventfd
	FDKindDirectory
	FDKindOther
)

var fdKindNames = [...]string{
	FDKindUnknown: "unknown", FDKindFile: "file", FDKindSocket: "socket", FDKindPipe: "pipe",
	FDKindEventfd: "eventfd", FDKindDirectory: "directory", FDKindOther: "other",
}

// String is the fd kind's name; a kind this code does not know is "other".
func (k FDKind) String() string { return nameAt(fdKindNames[:], int(k), "other") }

// ParseFDKind is the fd kind of a name String returns.
func ParseFDKind(name string) (FDKind, bool) {
	i, ok := indexOf(fdKindNames[:], name)
	return FDKind(i), ok
}

// FDKindNames are the names of the fd kinds, unknown (a closed fd) last.
func FDKindNames() []string { return append(fdKindNames[FDKindFile:], fdKindNames[FDKindUnknown]) }

// FileClass is which of etcd's files a call's file is, by its name.
type FileClass uint8

// The file classes (etcd_monitor.c's enum file_class).
const (
	FileClassNone  FileClass = iota // not a file or directory
	FileClassWAL                    // *.wal, or a directory named wal
	FileClassSnap                   // *.snap, or a directory named snap
	FileClassDB                     // db (bbolt) or *.db
	FileClassTmp                    // *.tmp: a WAL segment being preallocated
	FileClassOther                  // any other name
)

var fileClassNames = [...]string{
	FileClassNone: "", FileClassWAL: "wal", FileClassSnap: "snap", FileClassDB: "db", FileClassTmp: "tmp", FileClassOther: "other",
}

// String is the class's name: empty for an fd that is no file or directory.
func (c FileClass) String() string {
	if c == FileClassNone {
		return ""
	}
	return nameAt(fileClassNames[:], int(c), "other")
}

// nameAt is names[i], or otherwise for a value the table does not name.
func nameAt(names []string, i int, otherwise string) string {
	if i < len(names) && names[i] != "" {
		return names[i]
	}
	return otherwise
}

// indexOf is the value names gives name; the empty name is none's.
func indexOf(names []string, name string) (int, bool) {
	for i, n := range names {
		if n != "" && n == name {
			return i, true
		}
	}
	return 0, false
}
