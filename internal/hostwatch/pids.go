//go:build linux

package hostwatch

import (
	"context"
	"slices"

	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
)

// PIDFilter is the kernel's set of selected pids.
type PIDFilter interface {
	RemovePID(pid int) error
}

// PIDs reports each selected pid that exits, once, and removes it from the
// kernel's filter so that a new process reusing the pid is not traced.
type PIDs struct {
	alive  []int
	exited metric.Int64Counter // otelcol_etcdebpf_targets_exited
	logger *zap.Logger
}

// NewPIDs watches pids; exited counts those that exit.
func NewPIDs(pids []int, exited metric.Int64Counter, logger *zap.Logger) *PIDs {
	return &PIDs{alive: slices.Clone(pids), exited: exited, logger: logger}
}

// Check removes from t the pids that exited since the last check.
func (w *PIDs) Check(ctx context.Context, t PIDFilter) {
	var gone []int
	w.alive = slices.DeleteFunc(w.alive, func(pid int) bool {
		if ProcessExited(pid) {
			gone = append(gone, pid)
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
