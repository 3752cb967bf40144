package tracer

import "testing"

func TestNamesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		syscall Syscall
		want    string
	}{
		{SyscallWrite, "write"}, {SyscallPwrite64, "pwrite64"}, {SyscallWritev, "writev"}, {SyscallPwritev, "pwritev"},
		{SyscallFsync, "fsync"}, {SyscallFdatasync, "fdatasync"}, {SyscallSyncFileRange, "sync_file_range"},
		{0, "unknown"}, {99, "unknown"},
	} {
		if got := tc.syscall.String(); got != tc.want {
			t.Errorf("Syscall(%d) = %q, want %q", tc.syscall, got, tc.want)
		}
		if s, ok := ParseSyscall(tc.want); tc.want != "unknown" && (!ok || s != tc.syscall) {
			t.Errorf("ParseSyscall(%q) = %d, %v; want %d", tc.want, s, ok, tc.syscall)
		}
	}
	if _, ok := ParseSyscall("unknown"); ok {
		t.Error(`ParseSyscall("unknown") found a syscall`)
	}
	for _, tc := range []struct {
		kind FDKind
		want string
	}{
		{FDKindFile, "file"}, {FDKindSocket, "socket"}, {FDKindPipe, "pipe"}, {FDKindEventfd, "eventfd"},
		{FDKindDirectory, "directory"}, {FDKindOther, "other"}, {FDKindUnknown, "unknown"}, {200, "other"},
	} {
		if got := tc.kind.String(); got != tc.want {
			t.Errorf("FDKind(%d) = %q, want %q", tc.kind, got, tc.want)
		}
	}
	if got := len(SyscallNames()); got != int(SyscallSyncFileRange) {
		t.Errorf("%d syscall names, want %d", got, SyscallSyncFileRange)
	}
	if got := len(FDKindNames()); got != int(FDKindOther)+1 {
		t.Errorf("%d fd kind names, want %d", got, FDKindOther+1)
	}
}
