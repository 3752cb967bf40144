//go:build linux && (amd64 || arm64)

package tracer

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

// wakeupRecords is how many records the producer queues per reader wake-up: a
// wake-up per record costs the traced thread a self-IPI, ~3 us here.
const wakeupRecords = 256

// ringbufHeader is the kernel's header in front of each ring buffer record.
const ringbufHeader = 8

func configure(spec *ebpf.CollectionSpec, opts Options) error {
	var comm [bpf.CommLen]byte
	copy(comm[:], opts.Comm)
	kinds, err := fdKindMask(opts.FDKinds)
	if err != nil {
		return err
	}
	if opts.NoRecords {
		kinds = 0
	}
	if _, err := selectedSyscalls(opts.Syscalls); err != nil {
		return err
	}
	if opts.Scheduler {
		if err := haveSchedInfo(); err != nil {
			return err
		}
	}
	var cgroup uint64
	if opts.CgroupPath != "" {
		id, err := cgroupID(opts.CgroupPath)
		if err != nil {
			return err
		}
		cgroup = id
	}
	// Pairing in task storage needs 5.11; before, the inflight hash does it.
	taskStorage := haveTaskStorage() == nil
	var interval uint64 // ns of budget a record costs
	if opts.Budget.RecordsPerSecond > 0 {
		interval = max(uint64(time.Second)/uint64(opts.Budget.RecordsPerSecond), 1)
	}
	vars := []struct {
		name  string
		value any
	}{
		{"target_comm", comm},
		{"target_cgroup_id", cgroup},
		{"filter_pids", len(opts.PIDs) > 0},
		{"payload_bytes", uint32(opts.PayloadBytes)},
		{"payload_room", uint32(payloadRoom(opts.PayloadBytes))},
		{"record_space", uint64(recordSpace(opts.PayloadBytes))},
		{"wakeup_bytes", uint64(wakeupRecords * recordSpace(opts.PayloadBytes))},
		{"histograms", opts.Histograms},
		{"min_duration_ns", uint64(max(opts.MinDuration, 0))},
		{"fd_kinds", kinds},
		{"filter_exe", len(opts.Executables) > 0},
		{"budget_interval_ns", interval},
		{"budget_burst_ns", interval * uint64(opts.Budget.Burst)},
		{"pressure_bytes", uint64(opts.RingBufferSize / 2)},
		{"task_storage", taskStorage},
		{"learn_disks", opts.Block && len(opts.Disks) == 0},
		{"scheduler", opts.Scheduler},
		{"own_io", opts.Block},
	}
	for _, v := range vars {
		if err := spec.Variables[v.name].Set(v.value); err != nil {
			return fmt.Errorf("setting %s in the BPF object: %w", v.name, err)
		}
	}
	spec.Maps["events"].MaxEntries = uint32(opts.RingBufferSize)
	if !taskStorage {
		stubTaskStorage(spec.Maps["inflight_task"])
	}
	if !opts.Block {
		// The syscall programs name the disks' maps (disk.h) but, without
		// learn_disks, never touch them: one entry each is enough.
		for _, name := range sharedBlockMaps {
			spec.Maps[name].MaxEntries = 1
		}
	}
	return nil
}

// stubTaskStorage turns the task storage map into a one-entry array that any kernel
// can create: the programs still name the map, but with task_storage false the
// verifier never reaches the code that uses it, and drops that code.
func stubTaskStorage(m *ebpf.MapSpec) {
	m.Type, m.Flags, m.MaxEntries = ebpf.Array, 0, 1 // the key stays an int
}

// fdKindMask is the fd_kinds bit set of names: bit 1 << kind; all kinds when names is empty.
func fdKindMask(names []string) (uint32, error) {
	if len(names) == 0 {
		return 0xff, nil
	}
	var mask uint32
	for _, name := range names {
		kind, ok := ParseFDKind(name)
		if !ok {
			return 0, fmt.Errorf("unknown fd kind %q", name)
		}
		mask |= 1 << kind
	}
	return mask, nil
}

// selectedSyscalls reports, by syscall name, whether to attach to it.
func selectedSyscalls(names []string) (map[string]bool, error) {
	selected := map[string]bool{}
	for _, name := range names {
		if _, ok := ParseSyscall(name); !ok {
			return nil, fmt.Errorf("unknown syscall %q", name)
		}
		selected[name] = true
	}
	return selected, nil
}

// payloadRoom is the payload area of a record: records stay 8-byte aligned.
func payloadRoom(payloadBytes int) int { return (payloadBytes + 7) &^ 7 }

// recordSpace is what one record takes in the ring: the kernel's header, the
// event, the payload area, rounded up to 8 bytes.
func recordSpace(payloadBytes int) int {
	return (bpf.EventSize + payloadRoom(payloadBytes) + ringbufHeader + 7) &^ 7
}
