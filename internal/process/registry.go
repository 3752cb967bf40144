//go:build linux && (amd64 || arm64)

// Package process decides whether a pid is still the process it was. A process
// is its pid and its start time: kill(pid, 0) would call a newcomer given the
// pid alive, and its start time tells them apart. One registry answers for the
// metrics, the records' Resources, the losses and the pid watch, so that each
// pid is read once per check and all of them agree on when a process ended.
package process

import (
	"sync"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
)

// Process is one process: a later process given its pid has another Start.
type Process struct {
	PID   int
	Start uint64 // clock ticks after boot: /proc/<pid>/stat's starttime
}

// Description is what a process is, read once while it runs.
type Description struct {
	Comm      string
	Args      []string // its argv; nil if it had none (a kernel thread) or was gone
	Container host.Container
	Start     time.Time // its start time on the wall clock
}

// Registry is the processes asked about, each as its last check found it. Its
// answers are as of the last Check: a process that ended is reported ended
// from the first check after, to every asker alike. It is safe for concurrent
// use: the records' reader, the metrics' collection and the host watch share it.
type Registry struct {
	fs    host.Procfs
	mu    sync.Mutex
	byPID map[int]*entry
}

type entry struct {
	process Process
	ended   bool         // at the last check: exited, or its pid is another process's
	desc    *Description // read at the first Describe that found a command line
}

// NewRegistry returns a registry of the processes fs shows.
func NewRegistry(fs host.Procfs) *Registry {
	return &Registry{fs: fs, byPID: map[int]*entry{}}
}

// Check reads each process asked about once, and marks the ones that ended:
// exited, or whose pid another process has now. An ended process is forgotten
// at the check after, which gives every asker a check's time to learn it ended
// without reading procfs again; the newcomer on its pid is read when asked for.
func (r *Registry) Check() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pid, e := range r.byPID {
		if e.ended {
			delete(r.byPID, pid)
			continue
		}
		if start, ok := r.fs.Start(pid); !ok || start != e.process.Start {
			e.ended = true
		}
	}
}

// Lookup is the process running as pid as of the last check, read now if it
// was not asked about before or had ended; false if none runs as pid.
func (r *Registry) Lookup(pid int) (Process, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.byPID[pid]; e != nil && !e.ended {
		return e.process, true
	}
	e := r.read(pid)
	if e == nil {
		return Process{}, false
	}
	return e.process, true
}

// Running reports whether p still ran at the last check; a process the
// registry no longer holds is read now.
func (r *Registry) Running(p Process) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.entry(p) != nil
}

// Describe is what p is, read once while it runs; the zero Description if it
// is gone before the first read. A description without a command line is read
// again at the next ask: the process was ending, or had not yet exec'd.
func (r *Registry) Describe(p Process) Description {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entry(p)
	if e == nil {
		if e = r.byPID[p.PID]; e == nil || e.process != p || e.desc == nil {
			return Description{}
		}
		return *e.desc // ended: what it was, for its last report
	}
	if e.desc != nil {
		return *e.desc
	}
	d := Description{
		Comm:      r.fs.Comm(p.PID),
		Args:      r.fs.CommandArgs(p.PID),
		Container: r.fs.Container(p.PID),
		Start:     r.fs.StartTime(p.Start),
	}
	if len(d.Args) > 0 {
		e.desc = &d
	}
	return d
}

// Name is "comm (executable)" of p, read now, what a log line needs to tell a
// process from an impostor: the comm alone can be faked. Only a log line asks:
// reading another process's executable link is a ptrace access check, which
// security modules may log, so it is not part of every description.
func (r *Registry) Name(p Process) string {
	comm := r.Describe(p).Comm
	exe := r.fs.Executable(p.PID)
	if exe == "" {
		exe = "unknown"
	}
	return comm + " (" + exe + ")"
}

// entry is p's entry while p runs (as of the last check), reading p's pid if
// the registry holds no entry of p; nil once p ended.
func (r *Registry) entry(p Process) *entry {
	if e := r.byPID[p.PID]; e != nil {
		// An entry of another process of that pid is a later one: Lookup
		// replaces the entry of an ended process with its pid's newcomer.
		if e.process != p || e.ended {
			return nil
		}
		return e
	}
	// Held only if it is p: a newcomer nobody asked for is not tracked.
	if start, ok := r.fs.Start(p.PID); ok && start == p.Start {
		return r.hold(p)
	}
	return nil
}

// read is the entry of the process running as pid now, held from now on; nil
// if none runs, and then the registry keeps what it held.
func (r *Registry) read(pid int) *entry {
	start, ok := r.fs.Start(pid)
	if !ok {
		return nil
	}
	return r.hold(Process{PID: pid, Start: start})
}

func (r *Registry) hold(p Process) *entry {
	e := &entry{process: p}
	r.byPID[p.PID] = e
	return e
}
