//go:build linux

// Package hostwatch watches the host for what the kernel filters depend on: the
// executable file being replaced, selected processes exiting, processes losing
// records; and reads what procfs says of a process.
package hostwatch

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ProcessExited reports whether the process pid is gone. A process of another
// user answers EPERM, not ESRCH: it still runs.
func ProcessExited(pid int) bool {
	return unix.Kill(pid, 0) == unix.ESRCH
}

// ProcessComm is the name (comm) of a running process; empty if it is gone.
func ProcessComm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

// ProcessCommandArgs is a running process's argv, as /proc/<pid>/cmdline
// holds it (NUL-separated); nil if it is gone or has none (a kernel thread).
func ProcessCommandArgs(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// processName is "comm (executable)" of a running process, what a name in a log
// line needs to be told from an impostor: the comm alone can be faked.
func processName(pid int) string {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		exe = "unknown"
	}
	return ProcessComm(pid) + " (" + exe + ")"
}
