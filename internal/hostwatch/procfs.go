//go:build linux && (amd64 || arm64)

// Package hostwatch watches the host for what the kernel filters depend on: the
// executable file being replaced, selected processes exiting, processes losing
// records.
package hostwatch

import (
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
)

// Process is one process as procfs shows it: its pid, and its start time,
// which a later process given the same pid does not share. kill(pid, 0) would
// call the newcomer alive.
type Process struct {
	PID   int
	Start uint64 // clock ticks after boot: /proc/<pid>/stat's starttime
}

// ReadProcess is the process running as pid now; false if there is none, or
// only its zombie.
func ReadProcess(pid int) (Process, bool) {
	start, ok := host.Proc.Start(pid)
	if !ok {
		return Process{}, false
	}
	return Process{PID: pid, Start: start}, true
}

// Running reports whether p still runs: its pid shows a process with its start time.
func (p Process) Running() bool {
	now, ok := ReadProcess(p.PID)
	return ok && now.Start == p.Start
}

// StartTime is when p started.
func (p Process) StartTime() time.Time { return host.Proc.StartTime(p.Start) }

// processName is "comm (executable)" of a running process, what a name in a log
// line needs to be told from an impostor: the comm alone can be faked.
func processName(pid int) string {
	exe := host.Proc.Executable(pid)
	if exe == "" {
		exe = "unknown"
	}
	return host.Proc.Comm(pid) + " (" + exe + ")"
}
