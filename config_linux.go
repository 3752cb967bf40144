//go:build linux && (amd64 || arm64)

package etcdebpfreceiver

import (
	"errors"
	"fmt"
	"slices"

	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// validateKernelLimits checks the fields that the BPF object bounds, against
// the object's own sizes.
func (cfg *Config) validateKernelLimits() []error {
	var errs []error
	if maxCommLen := tracer.CommLen - 1; len(cfg.Comm) > maxCommLen { // the kernel keeps a name's first TASK_COMM_LEN-1 bytes
		errs = append(errs, fmt.Errorf("comm: %q is %d bytes but the kernel keeps only the first %d bytes of a process name; set comm to %q",
			cfg.Comm, len(cfg.Comm), maxCommLen, cfg.Comm[:maxCommLen]))
	}
	if maxPIDs, err := tracer.MaxTargetPIDs(); err != nil {
		errs = append(errs, err)
	} else if len(cfg.PIDs) > maxPIDs {
		errs = append(errs, fmt.Errorf("pids: %d entries, at most %d are supported; select by cgroup_path or comm instead", len(cfg.PIDs), maxPIDs))
	}
	if cfg.PayloadBytes < 0 || cfg.PayloadBytes > tracer.PayloadMax {
		errs = append(errs, fmt.Errorf("payload_bytes: %d is out of range; use 0 (off, the default) to %d", cfg.PayloadBytes, tracer.PayloadMax))
	}
	if _, err := cfg.resolveDisks(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// resolveDisks maps the disks named in the config to the whole disks' device
// numbers, once each; nil when the config names none or the view is off.
func (cfg *Config) resolveDisks() ([]uint32, error) {
	if !cfg.Block || len(cfg.Disks) == 0 {
		return nil, nil
	}
	var devs []uint32
	var errs []error
	for _, name := range cfg.Disks {
		if !diskNameValid(name) {
			continue // Validate names the field for these
		}
		d, err := host.ResolveDisk(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("disks: %w", err))
			continue
		}
		if !slices.Contains(devs, d.Dev) {
			devs = append(devs, d.Dev)
		}
	}
	if len(devs) > tracer.MaxDisks {
		errs = append(errs, fmt.Errorf("disks: %d disks, at most %d are supported; name the disks that hold etcd's data", len(devs), tracer.MaxDisks))
	}
	return devs, errors.Join(errs...)
}
