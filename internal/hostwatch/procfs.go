//go:build linux && (amd64 || arm64)

// Package hostwatch watches the host for what the kernel filters depend on: the
// executable file being replaced, selected processes exiting, processes losing
// records; and reads what procfs says of a process.
package hostwatch

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Process is one process as procfs shows it: its pid, and its start time,
// which a later process given the same pid does not share. kill(pid, 0) would
// call the newcomer alive.
type Process struct {
	PID   int
	Start uint64 // clock ticks after boot: /proc/<pid>/stat's starttime
}

// procRoot is where procfs is mounted, a variable for the tests.
var procRoot = "/proc"

// ReadProcess is the process running as pid now; false if there is none, or
// only its zombie.
func ReadProcess(pid int) (Process, bool) {
	stat, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Process{}, false
	}
	start, state, err := parseStat(string(stat))
	if err != nil || state == 'Z' || state == 'X' {
		return Process{}, false
	}
	return Process{PID: pid, Start: start}, true
}

// parseStat reads the state (field 3) and starttime (field 22) of a
// /proc/<pid>/stat line. The comm (field 2) may hold spaces and parentheses:
// the fields after it start after its last ')'.
func parseStat(stat string) (start uint64, state byte, err error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("no comm in %q", stat)
	}
	fields := strings.Fields(stat[i+1:]) // fields[0] is field 3
	const startField = 22 - 3
	if len(fields) <= startField || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("too few fields in %q", stat)
	}
	start, err = strconv.ParseUint(fields[startField], 10, 64)
	return start, fields[0][0], err
}

// Running reports whether p still runs: its pid shows a process with its start time.
func (p Process) Running() bool {
	now, ok := ReadProcess(p.PID)
	return ok && now.Start == p.Start
}

// clockTicks is USER_HZ, the unit of starttime: 100 on every Linux architecture
// (the value sysconf(_SC_CLK_TCK) returns; it is part of the ABI).
const clockTicks = 100

// StartTime is when p started, from the boot time and its start time: the
// time the process scraper of the Collector's contrib takes as a process's
// StartTimestamp too.
func (p Process) StartTime() time.Time {
	var boot unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot); err != nil {
		return time.Time{}
	}
	sinceBoot := time.Duration(boot.Nano())
	return time.Now().Add(-sinceBoot).Add(time.Duration(p.Start) * time.Second / clockTicks)
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
