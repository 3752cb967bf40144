//go:build linux && (amd64 || arm64)

package controller

import (
	"time"

	"go.uber.org/zap"
)

// refusalLogInterval is the least time between two warnings about one signal's
// refusals: a pipeline refusing every batch (a full queue, a memory limiter)
// would otherwise log a line per batch.
const refusalLogInterval = 10 * time.Second

// refusalLog warns that the pipeline refused what the receiver sent: the first
// refusal at once, then at most once a refusalLogInterval, each line with what
// was refused since the last. Every refused item is counted besides, by the
// receiver's obsreport (otelcol_receiver_refused_log_records,
// otelcol_receiver_refused_metric_points). One goroutine uses each.
type refusalLog struct {
	logger  *zap.Logger
	message string // "The pipeline refused records"
	unit    string // the field naming the count: "records", "data_points"

	refused, batches int
	last             time.Time // of the last warning; zero before the first
}

// add notes a refused batch of n items, and warns if a warning is due.
func (r *refusalLog) add(n int, err error, now time.Time) {
	r.refused += n
	r.batches++
	if !r.last.IsZero() && now.Sub(r.last) < refusalLogInterval {
		return
	}
	var covered time.Duration // what the counts cover: zero for the first warning
	if !r.last.IsZero() {
		covered = now.Sub(r.last).Round(time.Second)
	}
	r.logger.Warn(r.message, zap.Int(r.unit, r.refused), zap.Int("batches", r.batches),
		zap.Duration("since", covered), zap.Error(err))
	r.refused, r.batches, r.last = 0, 0, now
}
