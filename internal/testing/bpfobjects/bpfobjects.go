//go:build linux && (amd64 || arm64)

// Package bpfobjects finds BPF programs and maps in the kernel the way the
// kernel lists them, without help from the code that loaded them: by the ids a
// process's file descriptors hold (/proc/PID/fdinfo) and by name. It is the one
// place the tests, the demo and the bench count the receiver's programs, check
// that none outlives its holder, read their run-time stats and read the loss
// counters of a receiver running in another process.
package bpfobjects

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

// Held is a set of BPF objects, by kernel id.
type Held struct {
	Programs []ebpf.ProgramID
	Maps     []ebpf.MapID
	// Links are the BPF links among them. Before Linux 5.15 a tracepoint is
	// attached through a perf event, which is no BPF link and has no id: then
	// there are none, and the programs tell whether anything is still attached
	// (an attachment holds a reference to its program).
	Links []link.ID
}

// HeldBy lists the BPF objects whose file descriptors process pid holds.
func HeldBy(pid int) (Held, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fdinfo")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Held{}, err
	}
	var h Held
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed since the directory was read
		}
		for line := range strings.Lines(string(data)) {
			key, value, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			id, err := strconv.ParseUint(strings.TrimSpace(value), 10, 32)
			if err != nil {
				continue
			}
			switch key {
			case "prog_id":
				h.Programs = append(h.Programs, ebpf.ProgramID(id))
			case "map_id":
				h.Maps = append(h.Maps, ebpf.MapID(id))
			case "link_id":
				h.Links = append(h.Links, link.ID(id))
			}
		}
	}
	// A link's fdinfo names its program too.
	slices.Sort(h.Programs)
	h.Programs = slices.Compact(h.Programs)
	return h, nil
}

// Since is what h holds that before did not.
func (h Held) Since(before Held) Held {
	return Held{
		Programs: without(h.Programs, before.Programs),
		Maps:     without(h.Maps, before.Maps),
		Links:    without(h.Links, before.Links),
	}
}

func without[T comparable](all, drop []T) []T {
	var out []T
	for _, v := range all {
		if !slices.Contains(drop, v) {
			out = append(out, v)
		}
	}
	return out
}

// Add is the union of h and more.
func (h Held) Add(more Held) Held {
	return Held{
		Programs: slices.Concat(h.Programs, more.Programs),
		Maps:     slices.Concat(h.Maps, more.Maps),
		Links:    slices.Concat(h.Links, more.Links),
	}
}

// Len is the number of objects in h.
func (h Held) Len() int { return len(h.Programs) + len(h.Maps) + len(h.Links) }

// Alive counts the objects of h still in the kernel, whoever holds them.
func (h Held) Alive() int {
	n := 0
	for _, id := range h.Programs {
		if p, err := ebpf.NewProgramFromID(id); err == nil {
			p.Close()
			n++
		}
	}
	for _, id := range h.Maps {
		if m, err := ebpf.NewMapFromID(id); err == nil {
			m.Close()
			n++
		}
	}
	for _, id := range h.Links {
		if l, err := link.NewFromID(id); err == nil {
			l.Close()
			n++
		}
	}
	return n
}

// WaitGone waits until no object of h is left in the kernel, which frees them
// an RCU grace period after their last reference goes.
func (h Held) WaitGone(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		alive := h.Alive()
		if alive == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d BPF objects (programs %v, maps %v, links %v) are still in the kernel %v after their holder let go",
				alive, h.Len(), h.Programs, h.Maps, h.Links, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Program is one loaded BPF program and its run-time stats (counted only while
// kernel.bpf_stats_enabled is 1).
type Program struct {
	ID       ebpf.ProgramID
	Name     string // in full, as in the BPF object (the kernel keeps 15 bytes)
	RunCount uint64
	RunTime  time.Duration
	Maps     []ebpf.MapID
}

// ReceiverPrograms are the receiver's programs among ids: those named like
// the programs in the receiver's BPF object.
func ReceiverPrograms(ids []ebpf.ProgramID) ([]Program, error) {
	names, err := receiverProgramNames()
	if err != nil {
		return nil, err
	}
	all, err := Programs(ids)
	if err != nil {
		return nil, err
	}
	var out []Program
	for _, p := range all {
		if full, ok := names[p.Name]; ok {
			p.Name = full
			out = append(out, p)
		}
	}
	return out, nil
}

// Programs describes every program among ids with its run-time stats: another
// tool's (bpftrace's) as well as the receiver's.
func Programs(ids []ebpf.ProgramID) ([]Program, error) {
	var out []Program
	for _, id := range ids {
		p, err := program(id)
		if errors.Is(err, os.ErrNotExist) {
			continue // unloaded meanwhile
		} else if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func program(id ebpf.ProgramID) (Program, error) {
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return Program{}, err
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return Program{}, err
	}
	stats, err := prog.Stats()
	if err != nil {
		return Program{}, err
	}
	maps, _ := info.MapIDs()
	return Program{ID: id, Name: info.Name, RunCount: stats.RunCount, RunTime: stats.Runtime, Maps: maps}, nil
}

// receiverProgramNames maps the names of the receiver's programs, the syscall
// and scheduler programs' and the block programs', as the kernel keeps them (cut
// to BPF_OBJ_NAME_LEN-1 bytes) to their full names.
func receiverProgramNames() (map[string]string, error) {
	const kernelNameLen = 15
	names := map[string]string{}
	for _, load := range []func() (*ebpf.CollectionSpec, error){bpf.LoadMonitor, bpf.LoadBlock} {
		spec, err := load()
		if err != nil {
			return nil, err
		}
		for name := range spec.Programs {
			names[name[:min(len(name), kernelNameLen)]] = name
		}
	}
	return names, nil
}

// ForeignTracepointPrograms counts the syscall tracepoint programs loaded in
// the kernel that no process of pids holds: another tracer's, which taxes every
// process's syscalls. The count goes by name (the receiver's, or one with
// "sys_" in it, as bpftrace names its programs).
func ForeignTracepointPrograms(pids ...int) (int, error) {
	mine := map[ebpf.ProgramID]bool{}
	for _, pid := range pids {
		h, err := HeldBy(pid)
		if err != nil {
			return 0, err
		}
		for _, id := range h.Programs {
			mine[id] = true
		}
	}
	names, err := receiverProgramNames()
	if err != nil {
		return 0, err
	}
	n := 0
	for id, err := ebpf.ProgramGetNextID(0); err == nil; id, err = ebpf.ProgramGetNextID(id) {
		if mine[id] {
			continue
		}
		p, err := program(id)
		if _, receiver := names[p.Name]; err == nil && (receiver || strings.Contains(p.Name, "sys_")) {
			n++
		}
	}
	return n, nil
}

// Map is one BPF map, as the kernel describes it.
type Map struct {
	ID         ebpf.MapID
	Name       string
	MaxEntries uint32
	Memlock    uint64 // bytes the kernel charges for it
}

// MapsOf describes the maps programs use, by name.
func MapsOf(progs []Program) (map[string]Map, error) {
	out := map[string]Map{}
	for _, p := range progs {
		for _, id := range p.Maps {
			m, err := ebpf.NewMapFromID(id)
			if err != nil {
				return nil, err
			}
			info, err := m.Info()
			m.Close()
			if err != nil {
				return nil, err
			}
			memlock, _ := info.Memlock()
			out[info.Name] = Map{ID: id, Name: info.Name, MaxEntries: info.MaxEntries, Memlock: memlock}
		}
	}
	return out, nil
}

// openMap opens the map called name among the maps of h.
func (h Held) openMap(name string) (*ebpf.Map, error) {
	for _, id := range h.Maps {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue
		}
		if info, err := m.Info(); err == nil && info.Name == name {
			return m, nil
		}
		m.Close()
	}
	return nil, fmt.Errorf("no map named %s among %d BPF maps", name, len(h.Maps))
}

// Counters reads the loss counters of the receiver whose maps h holds, as the
// receiver itself reads them.
func (h Held) Counters() (bpf.Counters, error) {
	m, err := h.openMap("counters")
	if err != nil {
		return bpf.Counters{}, err
	}
	defer m.Close()
	return bpf.ReadCounters(m)
}

// Entries counts the entries of the map called name among the maps of h.
func (h Held) Entries(name string) (int, error) {
	m, err := h.openMap(name)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	key, value := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
	n := 0
	for iter := m.Iterate(); ; n++ {
		if !iter.Next(key, value) {
			return n, iter.Err()
		}
	}
}
