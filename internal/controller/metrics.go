//go:build linux && (amd64 || arm64)

package controller

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/etcdebpf/etcdebpfreceiver/internal/convert"
	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
)

// collectMetrics sends the histograms, counted since start, to the metrics
// pipeline every CollectionInterval, and once more when stop is closed.
func (c *Controller) collectMetrics(ctx context.Context, s Session, start pcommon.Timestamp, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	m := convert.NewMetrics(metadata.ScopeName, c.settings.BuildInfo.Version, start, c.processes)
	if c.cfg.Tracer.Scheduler {
		m = m.WithTimeParts()
	}
	var disks *convert.Disks
	if s.Block() {
		disks = convert.NewDisks(metadata.ScopeName, c.settings.BuildInfo.Version, start)
	}
	tick := time.NewTicker(c.cfg.CollectionInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			c.collectOnce(ctx, s, m, disks)
		case <-stop:
			c.collectOnce(ctx, s, m, disks)
			return
		case <-ctx.Done():
			return
		}
	}
}

// collectOnce decides which processes ended, then reads the histograms, then
// deletes what it read of the ended: a process gone before the read makes no
// call after it, so nothing it counted is deleted unreported.
func (c *Controller) collectOnce(ctx context.Context, s Session, m *convert.Metrics, disks *convert.Disks) {
	ended := m.Ended()
	hists, err := s.Histograms()
	if err != nil {
		c.settings.Logger.Error("Reading the kernel's histograms failed", zap.Error(err))
		return
	}
	at := now()
	md, gone := m.Collect(hists, at, ended)
	for _, key := range gone {
		if err := s.DeleteHistogram(key); err != nil {
			c.settings.Logger.Warn("Deleting an exited process's histogram failed", zap.Uint32("pid", key.PID), zap.Error(err))
		}
	}
	if disks != nil {
		c.collectDisks(s, disks, at).ResourceMetrics().MoveAndAppendTo(md.ResourceMetrics())
	}
	points := md.DataPointCount()
	if points == 0 {
		return
	}
	ctx = c.obsrecv.StartMetricsOp(ctx)
	err = c.cfg.Metrics.ConsumeMetrics(ctx, md)
	c.obsrecv.EndMetricsOp(ctx, metadata.Type.String(), points, err)
	if err != nil {
		c.refusedPoints.add(points, err, time.Now())
	}
}

// collectDisks reads the disks' view and converts it; the entries of exited
// processes are deleted from the kernel once reported.
func (c *Controller) collectDisks(s Session, disks *convert.Disks, at pcommon.Timestamp) pmetric.Metrics {
	ops, err := s.DiskOps()
	if err != nil {
		c.settings.Logger.Error("Reading the disks' histograms failed", zap.Error(err))
		return pmetric.NewMetrics()
	}
	subs, err := s.Submitters()
	if err != nil {
		c.settings.Logger.Error("Reading the disks' submitters failed", zap.Error(err))
		return pmetric.NewMetrics()
	}
	md, gone := disks.Collect(ops, subs, at, processExited)
	for _, key := range gone {
		if err := s.ForgetSubmitter(key); err != nil {
			c.settings.Logger.Warn("Deleting an exited process's disk counts failed", zap.Uint32("pid", key.PID), zap.Error(err))
		}
	}
	return md
}

// processExited reports whether no process runs under pid any more: a submitter's
// entry is the pid's, whoever holds it, so a reused pid's counts start over when
// the kernel's count falls below the last one read (convert.Disks). Which
// process it is does not matter, so the registry is not asked: it would hold
// every submitter, kernel threads included, and read each at every check.
func processExited(pid uint32) bool {
	_, ok := host.Proc.Start(int(pid))
	return !ok
}
