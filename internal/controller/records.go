//go:build linux && (amd64 || arm64)

package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.opentelemetry.io/collector/component/componentstatus"
	"go.uber.org/zap"

	"github.com/etcdebpf/etcdebpfreceiver/internal/convert"
	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// readRecords reads the ring buffer into a batch and sends the batch down the
// pipeline when it is full or FlushInterval after the last send, whichever comes
// first: the producer does not wake the reader for every record. It returns once
// the session is flushed (Drain: what was pending has been read) or closed.
func (c *Controller) readRecords(ctx context.Context, s Session, tb *metadata.TelemetryBuilder, done chan<- struct{}) {
	defer close(done)
	b := convert.NewLogBuilder(c.cfg.Decode, metadata.ScopeName, c.settings.BuildInfo.Version, c.cfg.MaxBatchSize).
		WithProcesses(c.processes).
		WithRefreshEvery(c.cfg.FlushInterval)
	var n readCounts
	s.SetReadDeadline(time.Now().Add(c.cfg.FlushInterval))
	for {
		rec, err := s.ReadRecord()
		switch {
		case err == nil:
			n.read++
			b.Append(rec, now())
			if b.Len() < c.cfg.MaxBatchSize {
				continue
			}
		case errors.Is(err, tracer.ErrMalformedRecord):
			// Read and dropped, not the reader's end: the next read goes on past it.
			n.read++
			n.malformed, n.lastErr = n.malformed+1, err
			continue
		}
		c.send(ctx, b, tb, &n)
		switch {
		case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
			s.SetReadDeadline(time.Now().Add(c.cfg.FlushInterval))
		case errors.Is(err, tracer.ErrFlushed), errors.Is(err, tracer.ErrClosed):
			return
		default:
			c.readerFailed(ctx, tb, err)
			return
		}
	}
}

// readerFailed reports that the reader stops on err: the records the kernel
// queues from now on reach no pipeline, so the receiver must not look healthy.
// A permanent error, not a fatal one: the metrics (the kernel's histograms) and
// the rest of the collector still work, and a health check or an operator sees
// the status and restarts the collector when they choose.
func (c *Controller) readerFailed(ctx context.Context, tb *metadata.TelemetryBuilder, err error) {
	err = fmt.Errorf("etcdebpf: reading the ring buffer failed, no more records will be read (restart the collector): %w", err)
	c.settings.Logger.Error("Reading the ring buffer failed; no more records will be read", zap.Error(err))
	tb.EtcdebpfRecordReaderFailures.Add(ctx, 1)
	if c.cfg.ReportStatus != nil {
		c.cfg.ReportStatus(componentstatus.NewPermanentErrorEvent(err))
	}
}

// readCounts are the records read since the last send.
type readCounts struct {
	read, malformed int64
	lastErr         error // why the last malformed record did not decode
}

// send counts what was read, then hands the batch, if any, to the pipeline.
func (c *Controller) send(ctx context.Context, b *convert.LogBuilder, tb *metadata.TelemetryBuilder, n *readCounts) {
	tb.EtcdebpfRecordsRead.Add(ctx, n.read)
	if n.malformed > 0 {
		tb.EtcdebpfRecordsMalformed.Add(ctx, n.malformed)
		c.settings.Logger.Warn("Dropped malformed records", zap.Int64("records", n.malformed), zap.Error(n.lastErr))
	}
	*n = readCounts{}
	records := b.Len()
	if records == 0 {
		return
	}
	logs := b.Take(c.cfg.MaxBatchSize)
	ctx = c.obsrecv.StartLogsOp(ctx)
	err := c.cfg.Logs.ConsumeLogs(ctx, logs)
	c.obsrecv.EndLogsOp(ctx, metadata.Type.String(), records, err)
	if err != nil {
		c.refusedRecords.add(records, err, time.Now())
	}
}
