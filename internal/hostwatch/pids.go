//go:build linux && (amd64 || arm64)

package hostwatch

import (
	"context"
	"slices"

	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/etcdebpf/etcdebpfreceiver/internal/process"
)

// PIDFilter is the kernel's set of selected pids.
type PIDFilter interface {
	RemovePID(pid int) error
}

// PIDs reports each selected process that exits, once, and removes its pid
// from the kernel's filter: the filter follows the processes, so a new process
// given the pid of one that exited is not traced.
type PIDs struct {
	alive    []process.Process
	registry *process.Registry
	exited   metric.Int64Counter // otelcol_etcdebpf_targets_exited
	logger   *zap.Logger
}

// NewPIDs watches the processes running as pids now (one not running counts
// as exited at the first check); exited counts those that exit.
func NewPIDs(pids []int, registry *process.Registry, exited metric.Int64Counter, logger *zap.Logger) *PIDs {
	w := &PIDs{registry: registry, exited: exited, logger: logger}
	for _, pid := range pids {
		p, _ := registry.Lookup(pid) // not running: a zero start time, which no process has
		p.PID = pid
		w.alive = append(w.alive, p)
	}
	return w
}

// Check removes from t the pids of the processes that exited as of the
// registry's last check.
func (w *PIDs) Check(ctx context.Context, t PIDFilter) {
	var gone []int
	w.alive = slices.DeleteFunc(w.alive, func(p process.Process) bool {
		if !w.registry.Running(p) {
			gone = append(gone, p.PID)
			return true
		}
		return false
	})
	for _, pid := range gone {
		w.exited.Add(ctx, 1)
		if err := t.RemovePID(pid); err != nil {
			w.logger.Warn("Removing an exited pid from the kernel filter failed", zap.Int("pid", pid), zap.Error(err))
		}
		w.logger.Warn("A traced process exited; if etcd restarted, update pids or select it by comm or cgroup_path",
			zap.Int("pid", pid), zap.Int("pids_left", len(w.alive)))
	}
}
