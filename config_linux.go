//go:build linux

package etcdebpfreceiver

import (
	"fmt"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

// validateKernelLimits checks the fields that the BPF object bounds, against
// the object's own sizes.
func (cfg *Config) validateKernelLimits() []error {
	var errs []error
	if maxCommLen := bpf.CommLen - 1; len(cfg.Comm) > maxCommLen { // the kernel keeps a name's first TASK_COMM_LEN-1 bytes
		errs = append(errs, fmt.Errorf("comm: %q is %d bytes but the kernel keeps only the first %d bytes of a process name; set comm to %q",
			cfg.Comm, len(cfg.Comm), maxCommLen, cfg.Comm[:maxCommLen]))
	}
	if maxPIDs, err := bpf.MaxTargetPIDs(); err != nil {
		errs = append(errs, err)
	} else if len(cfg.PIDs) > maxPIDs {
		errs = append(errs, fmt.Errorf("pids: %d entries, at most %d are supported; select by cgroup_path or comm instead", len(cfg.PIDs), maxPIDs))
	}
	if cfg.PayloadBytes < 0 || cfg.PayloadBytes > bpf.PayloadMax {
		errs = append(errs, fmt.Errorf("payload_bytes: %d is out of range; use 0 (off, the default) to %d", cfg.PayloadBytes, bpf.PayloadMax))
	}
	return errs
}
