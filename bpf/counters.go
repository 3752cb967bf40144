//go:build linux && (amd64 || arm64)

package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Counters are the kernel's per-CPU counters (the counters map), summed over CPUs.
type Counters struct {
	Calls        uint64 // completed traced syscalls, whether they became records or not
	RingbufFull  uint64 // completed syscalls whose record found no room
	InflightFull uint64 // enters that could not be parked, so no record
	OverBudget   uint64 // selected calls dropped because their process was over its budget
	Unattributed uint64 // losses above that the per-process table had no room for
}

// ReadCounters sums the per-CPU counters of m, the object's counters map: the
// receiver's own, or one found by id in another process's.
func ReadCounters(m *ebpf.Map) (Counters, error) {
	var c Counters
	for key, dst := range map[MonitorCounter]*uint64{
		MonitorCounterCOUNTER_CALLS:         &c.Calls,
		MonitorCounterCOUNTER_RINGBUF_FULL:  &c.RingbufFull,
		MonitorCounterCOUNTER_INFLIGHT_FULL: &c.InflightFull,
		MonitorCounterCOUNTER_OVER_BUDGET:   &c.OverBudget,
		MonitorCounterCOUNTER_UNATTRIBUTED:  &c.Unattributed,
	} {
		var perCPU []uint64
		if err := m.Lookup(key, &perCPU); err != nil {
			return Counters{}, fmt.Errorf("reading counter %d: %w", key, err)
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	return c, nil
}
