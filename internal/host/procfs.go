//go:build linux && (amd64 || arm64)

package host

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Procfs is procfs as a root directory and the boot time its start times count
// from: the host's (Proc), or a directory laid out like it, which tests write.
type Procfs struct {
	root string
	boot func() time.Time
}

// Proc is the host's procfs.
var Proc = Procfs{root: "/proc", boot: bootTime}

// NewProcfs is a procfs laid out at root, of a host that booted at boot: a
// stand-in for the host's, which tests and tools write themselves.
func NewProcfs(root string, boot time.Time) Procfs {
	return Procfs{root: root, boot: func() time.Time { return boot }}
}

func (fs Procfs) path(pid int, file string) string {
	return fs.root + "/" + strconv.Itoa(pid) + "/" + file
}

// Start is the start time of the process running as pid, in clock ticks after
// boot (/proc/<pid>/stat's starttime): a later process given the same pid does
// not share it, where kill(pid, 0) would call the newcomer alive. False if no
// process runs as pid, or only its zombie.
func (fs Procfs) Start(pid int) (uint64, bool) {
	stat, err := os.ReadFile(fs.path(pid, "stat"))
	if err != nil {
		return 0, false
	}
	start, state, err := parseStat(string(stat))
	if err != nil || state == 'Z' || state == 'X' {
		return 0, false
	}
	return start, true
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

// clockTicks is USER_HZ, the unit of starttime: 100 on every Linux architecture
// (the value sysconf(_SC_CLK_TCK) returns; it is part of the ABI).
const clockTicks = 100

// StartTime is the wall-clock time of a start time in clock ticks after boot:
// the time the process scraper of the Collector's contrib takes as a process's
// StartTimestamp too.
func (fs Procfs) StartTime(start uint64) time.Time {
	boot := fs.boot()
	if boot.IsZero() {
		return boot
	}
	return boot.Add(time.Duration(start) * time.Second / clockTicks)
}

// bootTime is when the host booted, read now: the wall clock less the time
// since boot, so that a stepped wall clock moves it.
func bootTime() time.Time {
	var boot unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot); err != nil {
		return time.Time{}
	}
	return time.Now().Add(-time.Duration(boot.Nano()))
}

// Comm is the name (comm) of a running process; empty if it is gone.
func (fs Procfs) Comm(pid int) string {
	b, err := os.ReadFile(fs.path(pid, "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

// CommandArgs is a running process's argv, as /proc/<pid>/cmdline holds it
// (NUL-separated); nil if it is gone or has none (a kernel thread).
func (fs Procfs) CommandArgs(pid int) []string {
	b, err := os.ReadFile(fs.path(pid, "cmdline"))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// Executable is the path of the file a running process runs; empty if it
// cannot be read (gone, a kernel thread, or not this user's to see).
func (fs Procfs) Executable(pid int) string {
	exe, err := os.Readlink(fs.path(pid, "exe"))
	if err != nil {
		return ""
	}
	return exe
}
