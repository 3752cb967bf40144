//go:build linux && (amd64 || arm64)

package bpf

import (
	"fmt"
	"sync"
)

// CommLen is the size of a task name in the kernel (TASK_COMM_LEN), NUL included.
const CommLen = len(MonitorEvent{}.Comm)

// MaxTargetPIDs is how many pids the target_pids map holds: the most a
// receiver can select by pid.
var MaxTargetPIDs = sync.OnceValues(func() (int, error) {
	spec, err := LoadMonitor()
	if err != nil {
		return 0, fmt.Errorf("reading the embedded BPF object: %w", err)
	}
	m, ok := spec.Maps["target_pids"]
	if !ok {
		return 0, fmt.Errorf("the embedded BPF object has no target_pids map")
	}
	return int(m.MaxEntries), nil
})
