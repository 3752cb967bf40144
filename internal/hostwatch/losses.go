//go:build linux && (amd64 || arm64)

package hostwatch

import (
	"time"

	"go.uber.org/zap"

	"github.com/etcdebpf/etcdebpfreceiver/internal/process"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// LossTable is the kernel's table of lost records by process.
type LossTable interface {
	Losses() (map[int]tracer.Loss, error)
	ForgetLosses(pid int) error
}

// lossLogInterval is the least time between two log lines about one process.
const lossLogInterval = time.Minute

// LossReporter says which processes lost records: a warning per process at most
// once a lossLogInterval, and a last one when it exits. It also frees the kernel's
// per-process entries of processes that exited.
type LossReporter struct {
	logger    *zap.Logger
	registry  *process.Registry
	processes map[int]*lossLog // by pid: the processes that lost records
}

// lossLog is what the log said last of one process.
type lossLog struct {
	process  process.Process // the process first seen as the pid: a later one is another
	name     string          // "comm (executable)", read while the process runs
	reported tracer.Loss     // what the last line covered
	at       time.Time       // when it was logged; zero before the first line
}

// NewLossReporter reports the losses of the processes registry tells apart.
func NewLossReporter(registry *process.Registry, logger *zap.Logger) *LossReporter {
	return &LossReporter{logger: logger, registry: registry, processes: map[int]*lossLog{}}
}

// Check reads the table and logs what is due as of now.
//
// Which processes exited is decided before the read, from the registry's
// check, which the caller makes before calling: a process gone then loses
// nothing more, so what is read of it is final and its entry can be freed.
// Decided after the read, the losses of its last moments, between the read and
// its exit, would be freed unlogged.
func (l *LossReporter) Check(t LossTable, now time.Time) {
	exited := map[int]bool{}
	for pid, p := range l.processes {
		if !l.registry.Running(p.process) {
			exited[pid] = true
		}
	}
	losses, err := t.Losses()
	if err != nil {
		l.logger.Warn("Reading the per-process losses failed", zap.Error(err))
		return
	}
	for pid, loss := range losses {
		p := l.processes[pid]
		if p == nil {
			p = &lossLog{}
			if running, ok := l.registry.Lookup(pid); ok {
				p.process, p.name = running, l.registry.Name(running)
			}
			l.processes[pid] = p
		}
		if loss != p.reported && (exited[pid] || now.Sub(p.at) >= lossLogInterval) {
			l.logger.Warn("A traced process lost records",
				zap.Int("pid", pid), zap.String("process", p.name), zap.Bool("exited", exited[pid]),
				zap.Uint64("over_budget", loss.OverBudget-p.reported.OverBudget),
				zap.Uint64("ringbuf_full", loss.RingbufFull-p.reported.RingbufFull),
				zap.Duration("since", since(p.at, now)))
			p.reported, p.at = loss, now
		}
		if exited[pid] {
			if err := t.ForgetLosses(pid); err != nil {
				l.logger.Warn("Freeing an exited process's loss entry failed", zap.Int("pid", pid), zap.Error(err))
			}
		}
	}
	for pid := range exited {
		delete(l.processes, pid)
	}
}

// since is how long the counts of a log line cover: zero for the first line.
func since(last, now time.Time) time.Duration {
	if last.IsZero() {
		return 0
	}
	return now.Sub(last).Round(time.Second)
}
