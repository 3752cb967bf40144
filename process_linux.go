//go:build linux

package etcdebpfreceiver

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// processExited reports whether the process pid is gone. A process of another
// user answers EPERM, not ESRCH: it still runs.
func processExited(pid int) bool {
	return unix.Kill(pid, 0) == unix.ESRCH
}

// processComm is the name (comm) of a running process; empty if it is gone.
func processComm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}
