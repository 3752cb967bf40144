//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// progStat is one BPF program as bpftool reports it.
type progStat struct {
	ID        int    `json:"id"`
	Name      string `json:"name"`
	RunTimeNs uint64 `json:"run_time_ns"`
	RunCnt    uint64 `json:"run_cnt"`
	MapIDs    []int  `json:"map_ids"`
}

// heldIDs lists the BPF program or map ids (key "prog_id" or "map_id") whose fds
// pid holds, from /proc/PID/fdinfo: this bpftool has no "pids" column.
func heldIDs(pid int, key string) map[int]bool {
	ids := map[int]bool{}
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, key+":"); ok {
				if id, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
					ids[id] = true
				}
			}
		}
	}
	return ids
}

func receiverProgram(name string) bool {
	return strings.HasPrefix(name, "enter_") || strings.HasPrefix(name, "exit_")
}

func allPrograms() ([]progStat, error) {
	out, err := run("bpftool", "-j", "prog", "show")
	if err != nil {
		return nil, err
	}
	var all []progStat
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		return nil, fmt.Errorf("parsing bpftool prog show: %w", err)
	}
	return all, nil
}

// ownedPrograms lists the receiver's programs (enter_*, exit_*) held by pid.
func ownedPrograms(pid int) ([]progStat, error) {
	all, err := allPrograms()
	if err != nil {
		return nil, err
	}
	held := heldIDs(pid, "prog_id")
	var mine []progStat
	for _, p := range all {
		if receiverProgram(p.Name) && held[p.ID] {
			mine = append(mine, p)
		}
	}
	if len(mine) == 0 {
		return nil, fmt.Errorf("no enter_*/exit_* BPF programs held by pid %d", pid)
	}
	return mine, nil
}

// foreignPrograms counts tracepoint programs loaded by others (another
// engineer's receiver or test): they tax every process's syscalls.
func foreignPrograms(mine ...int) int {
	all, err := allPrograms()
	if err != nil {
		return -1
	}
	held := map[int]bool{}
	for _, pid := range mine {
		for id := range heldIDs(pid, "prog_id") {
			held[id] = true
		}
	}
	n := 0
	for _, p := range all {
		if p.Name != "" && !held[p.ID] && (receiverProgram(p.Name) || strings.Contains(p.Name, "sys_")) {
			n++
		}
	}
	return n
}

type mapInfo struct {
	ID           int    `json:"id"`
	Name         string `json:"name"`
	Type         string `json:"type"`
	MaxEntries   int    `json:"max_entries"`
	BytesMemlock int64  `json:"bytes_memlock"`
}

// ownedMaps lists the maps the receiver's programs of pid use.
func ownedMaps(pid int) (map[string]mapInfo, error) {
	progs, err := ownedPrograms(pid)
	if err != nil {
		return nil, err
	}
	ids := map[int]bool{}
	for _, p := range progs {
		for _, id := range p.MapIDs {
			ids[id] = true
		}
	}
	maps := map[string]mapInfo{}
	for id := range ids {
		out, err := run("bpftool", "-j", "map", "show", "id", strconv.Itoa(id))
		if err != nil {
			return nil, err
		}
		var m mapInfo
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			return nil, fmt.Errorf("parsing bpftool map show: %w", err)
		}
		maps[m.Name] = m
	}
	return maps, nil
}

// kernelDrops sums the receiver's per-CPU loss counters (ring buffer full,
// inflight full) of the programs pid holds.
func kernelDrops(pid int) (ringbufFull, inflightFull uint64, err error) {
	maps, err := ownedMaps(pid)
	if err != nil {
		return 0, 0, err
	}
	m, ok := maps["counters"]
	if !ok {
		return 0, 0, fmt.Errorf("no counters map among the programs of pid %d", pid)
	}
	out, err := run("bpftool", "-j", "map", "dump", "id", strconv.Itoa(m.ID))
	if err != nil {
		return 0, 0, err
	}
	// With BTF: [{"key":0,"values":[{"cpu":0,"value":N},...],"formatted":{...}}]
	var entries []struct {
		Key    json.RawMessage `json:"key"`
		Values []struct {
			CPU   int             `json:"cpu"`
			Value json.RawMessage `json:"value"`
		} `json:"values"`
		Formatted *struct {
			Key    json.RawMessage `json:"key"`
			Values []struct {
				Value json.RawMessage `json:"value"`
			} `json:"values"`
		} `json:"formatted"`
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		return 0, 0, fmt.Errorf("parsing bpftool map dump: %w\n%s", err, tail([]byte(out), 500))
	}
	for i, e := range entries {
		var sum uint64
		if e.Formatted != nil {
			for _, v := range e.Formatted.Values {
				n, _ := strconv.ParseUint(strings.Trim(string(v.Value), `"`), 0, 64)
				sum += n
			}
		} else {
			for _, v := range e.Values {
				sum += hexBytesLE(v.Value)
			}
		}
		switch i { // entries come in key order: COUNTER_RINGBUF_FULL, COUNTER_INFLIGHT_FULL
		case 0:
			ringbufFull = sum
		case 1:
			inflightFull = sum
		}
	}
	return ringbufFull, inflightFull, nil
}

// hexBytesLE decodes bpftool's raw ["0x01","0x00",...] little-endian byte list.
func hexBytesLE(raw json.RawMessage) uint64 {
	var bs []string
	if json.Unmarshal(raw, &bs) != nil {
		var n uint64
		_ = json.Unmarshal(raw, &n)
		return n
	}
	var n uint64
	for i := len(bs) - 1; i >= 0; i-- {
		b, _ := strconv.ParseUint(bs[i], 0, 8)
		n = n<<8 | b
	}
	return n
}

// bpfStats turns kernel.bpf_stats_enabled on until undo is called (or the
// harness exits). Stats cost ~20 ns per program run, so they are on only in the
// passes that read them.
func bpfStats() (undo func(), err error) {
	const path = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		return nil, fmt.Errorf("enabling BPF run-time stats: %w", err)
	}
	done := false
	undo = func() {
		if !done {
			done = true
			_ = os.WriteFile(path, old, 0o644)
		}
	}
	onCleanup(undo)
	return undo, nil
}

// progDelta is the run time and count of each program between two snapshots.
type progDelta struct {
	Name   string
	RunCnt uint64
	RunNs  uint64
}

func (d progDelta) nsPerRun() float64 {
	if d.RunCnt == 0 {
		return 0
	}
	return float64(d.RunNs) / float64(d.RunCnt)
}

func snapshotDelta(before, after []progStat) []progDelta {
	prev := map[int]progStat{}
	for _, p := range before {
		prev[p.ID] = p
	}
	var out []progDelta
	for _, p := range after {
		b := prev[p.ID]
		out = append(out, progDelta{Name: p.Name, RunCnt: p.RunCnt - b.RunCnt, RunNs: p.RunTimeNs - b.RunTimeNs})
	}
	slices.SortFunc(out, func(a, b progDelta) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// sumPhase adds up the enter_* or exit_* programs.
func sumPhase(ds []progDelta, prefix string) progDelta {
	s := progDelta{Name: prefix + "*"}
	for _, d := range ds {
		if strings.HasPrefix(d.Name, prefix) {
			s.RunCnt += d.RunCnt
			s.RunNs += d.RunNs
		}
	}
	return s
}
