//go:build linux && (amd64 || arm64)

// Package controller runs one kernel session for a receiver: it owns every
// goroutine (the ring buffer's reader, the metrics' collection, the host watch)
// under one lifetime, Start to Close, and the self-telemetry that reads the
// session. It takes the session through Session, so that its lifecycle is
// tested without the kernel.
package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
	"github.com/etcdebpf/etcdebpfreceiver/internal/hostwatch"
	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
	"github.com/etcdebpf/etcdebpfreceiver/internal/process"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// Session is the kernel session: *tracer.Tracer, or a fake in tests.
type Session interface {
	// ReadRecord returns the next record, decoded, valid until the next call;
	// an error wrapping tracer.ErrMalformedRecord for one that does not decode
	// (the next call reads on), os.ErrDeadlineExceeded at the deadline,
	// tracer.ErrFlushed once what was pending at FlushRecords was read,
	// tracer.ErrClosed after Close.
	ReadRecord() (tracer.Record, error)
	SetReadDeadline(time.Time)
	FlushRecords() error
	PendingRecords() int
	RingBytes() (pending, size int) // the ring buffer's occupancy

	Histograms() ([]tracer.Histogram, error)
	DeleteHistogram(tracer.HistKey) error
	Counters() (tracer.Counters, error)

	// The disks' view, when Block() (tracer.Options.Block).
	Block() bool
	DiskOps() ([]tracer.DiskOpStats, error)
	Submitters() ([]tracer.Submitter, error)
	ForgetSubmitter(tracer.SubmitterKey) error
	BlockCounters() (tracer.BlockCounters, error)

	hostwatch.ExecutableFilter
	hostwatch.PIDFilter
	hostwatch.LossTable

	// Detach stops new records and counts; what is in the ring stays readable.
	Detach() error
	// Close frees the session; nothing may read it afterwards.
	Close() error
}

// Open starts a session with opts: tracer.Start in the receiver.
type Open func(opts tracer.Options) (Session, error)

// Config is what the controller runs.
type Config struct {
	Tracer     tracer.Options // what the session traces; Start adds the executable
	Executable string         // the file to trace and watch (absolute path); empty: any

	Logs          consumer.Logs // nil: no records are read
	Decode        bool
	MaxBatchSize  int
	FlushInterval time.Duration

	Metrics            consumer.Metrics // nil: no histograms are collected
	CollectionInterval time.Duration

	// ReportStatus tells the collector of a failure after Start (the host's
	// componentstatus.ReportStatus in the receiver); nil: not reported.
	ReportStatus func(*componentstatus.Event)
}

// TargetCheckInterval is how often the host watch checks the executable, the pids and the losses.
const TargetCheckInterval = time.Second

// Controller runs one session: Start, then Drain, then Close, once each.
type Controller struct {
	cfg      Config
	settings receiver.Settings
	open     Open
	obsrecv  *receiverhelper.ObsReport

	session   Session
	telemetry *metadata.TelemetryBuilder
	cancel    context.CancelFunc // cancels the context the pipeline is called with
	drainOnce sync.Once
	// Each goroutine closes its channel when it returns; nil when it was not started.
	readerDone  chan struct{}
	metricsDone chan struct{}
	watchDone   chan struct{}
	stopMetrics chan struct{} // closed by Drain: collect once more and return

	refusedRecords, refusedPoints *refusalLog         // the reader's and the metrics' own
	counters                      metric.Registration // the kernel counters' callback
	// processes tells the goroutines' processes apart, one answer for all:
	// the records' Resources, the metrics, the losses and the pid watch.
	processes *process.Registry
}

// New returns a controller of cfg that opens its session with open.
func New(set receiver.Settings, cfg Config, open Open) (*Controller, error) {
	obsrecv, err := receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{
		ReceiverID:             set.ID,
		Transport:              "ebpf",
		ReceiverCreateSettings: set,
	})
	if err != nil {
		return nil, fmt.Errorf("creating obsreport: %w", err)
	}
	return &Controller{
		cfg: cfg, settings: set, open: open, obsrecv: obsrecv,
		refusedRecords: &refusalLog{logger: set.Logger, message: "The pipeline refused records", unit: "records"},
		refusedPoints:  &refusalLog{logger: set.Logger, message: "The pipeline refused metrics", unit: "data_points"},
		processes:      process.NewRegistry(host.Proc),
	}, nil
}

// Start opens the session, registers the self-telemetry that reads it, and
// starts the goroutines. On error nothing is left running or loaded.
func (c *Controller) Start() error {
	tb, err := metadata.NewTelemetryBuilder(c.settings.TelemetrySettings)
	if err != nil {
		return fmt.Errorf("creating telemetry: %w", err)
	}
	// The metrics' StartTimestamp: before the programs are attached, so that no
	// call they count is older.
	start := now()
	s, exe, err := c.openSession(tb)
	if err != nil {
		tb.Shutdown()
		return err
	}
	// A session that took over pinned programs counts since their start.
	if st, ok := s.(interface{ StartTime() time.Time }); ok {
		start = pcommon.NewTimestampFromTime(st.StartTime())
	}

	ctx, cancel := context.WithCancel(context.Background())
	c.session, c.telemetry, c.cancel = s, tb, cancel
	// The goroutines get what they use as arguments: after a Drain that timed out,
	// a reader stuck in the pipeline may outlive the controller.
	if c.cfg.Logs != nil {
		c.readerDone = make(chan struct{})
		go c.readRecords(ctx, s, tb, c.readerDone)
	}
	if c.cfg.Metrics != nil {
		c.stopMetrics, c.metricsDone = make(chan struct{}), make(chan struct{})
		go c.collectMetrics(ctx, s, start, c.stopMetrics, c.metricsDone)
	}
	var pids *hostwatch.PIDs
	if len(c.cfg.Tracer.PIDs) > 0 {
		pids = hostwatch.NewPIDs(c.cfg.Tracer.PIDs, c.processes, tb.EtcdebpfTargetsExited, c.settings.Logger)
	}
	c.watchDone = make(chan struct{})
	go watchHost(ctx, s, c.processes, exe, pids, hostwatch.NewLossReporter(c.processes, c.settings.Logger), c.watchDone)
	return nil
}

// Session is the session Start opened: the receiver's tests read the kernel's
// tables through it.
func (c *Controller) Session() Session { return c.session }

// openSession opens the session the configuration asks for and registers the
// kernel's counters with tb; on error nothing stays loaded.
func (c *Controller) openSession(tb *metadata.TelemetryBuilder) (Session, *hostwatch.Executable, error) {
	opts := c.cfg.Tracer
	var exe *hostwatch.Executable
	if c.cfg.Executable != "" {
		var err error
		if exe, err = hostwatch.NewExecutable(c.cfg.Executable, c.settings.Logger); err != nil {
			return nil, nil, err
		}
		opts.Executables = []host.FileID{exe.ID()}
	}
	s, err := c.open(opts)
	if err != nil {
		return nil, nil, err
	}
	if w, ok := s.(interface{ Warnings() []error }); ok {
		for _, err := range w.Warnings() {
			c.settings.Logger.Warn("The receiver runs without part of what it was asked for", zap.Error(err))
		}
	}
	if p, ok := s.(pinnedSession); ok {
		logPinned(c.settings.Logger, p)
	}
	if c.counters, err = registerKernelCounters(metadata.Meter(c.settings.TelemetrySettings), tb, s); err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, exe, nil
}

// pinnedSession is a session that may keep its kernel side pinned (tracer.Options.Pin).
type pinnedSession interface {
	Pinned() (tracer.PinReport, bool)
	StartTime() time.Time
}

// logPinned says what the session found pinned and did with it.
func logPinned(logger *zap.Logger, s pinnedSession) {
	r, ok := s.Pinned()
	if !ok {
		return
	}
	fields := []zap.Field{zap.String("pin_path", r.Path), zap.Time("counting_since", s.StartTime()), zap.Uint64("map_bytes", r.MapBytes)}
	switch {
	case r.TookOver:
		logger.Info("Took over the programs pinned by the agent before: their histograms and counters continue, "+
			"and the records the ring buffer held are read", fields...)
	case r.Replaced != "":
		logger.Warn("Replaced the programs pinned before, which counted apart from this agent's: their counts start "+
			"again from zero under a new StartTimestamp", append(fields, zap.String("reason", r.Replaced))...)
	default:
		logger.Info("Pinned the programs and maps: they keep counting across agent restarts until removed "+
			"(unpin_on_shutdown, or rm -rf the pin_path)", fields...)
	}
}

// registerKernelCounters reports the kernel's counters through one callback:
// one read of the counters map per telemetry collection, however many
// instruments it feeds (a callback per instrument read it once each).
func registerKernelCounters(meter metric.Meter, tb *metadata.TelemetryBuilder, s Session) (metric.Registration, error) {
	instruments := []metric.Observable{
		tb.EtcdebpfCallsTraced, tb.EtcdebpfRecordsLostRingbufFull, tb.EtcdebpfRecordsLostInflightFull,
		tb.EtcdebpfRecordsLostOverBudget, tb.EtcdebpfRecordsLostUnattributed,
		tb.EtcdebpfRingbufPendingBytes, tb.EtcdebpfRingbufSizeBytes,
	}
	if s.Block() {
		instruments = append(instruments, tb.EtcdebpfDiskRequestsUntimed, tb.EtcdebpfDiskEventsLost)
	}
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c, err := s.Counters()
		if err != nil {
			return err
		}
		o.ObserveInt64(tb.EtcdebpfCallsTraced, int64(c.Calls))
		o.ObserveInt64(tb.EtcdebpfRecordsLostRingbufFull, int64(c.RingbufFull))
		o.ObserveInt64(tb.EtcdebpfRecordsLostInflightFull, int64(c.InflightFull))
		o.ObserveInt64(tb.EtcdebpfRecordsLostOverBudget, int64(c.OverBudget))
		o.ObserveInt64(tb.EtcdebpfRecordsLostUnattributed, int64(c.Unattributed))
		pending, size := s.RingBytes()
		o.ObserveInt64(tb.EtcdebpfRingbufPendingBytes, int64(pending))
		o.ObserveInt64(tb.EtcdebpfRingbufSizeBytes, int64(size))
		if !s.Block() {
			return nil
		}
		b, err := s.BlockCounters()
		if err != nil {
			return err
		}
		o.ObserveInt64(tb.EtcdebpfDiskRequestsUntimed, int64(b.Untimed))
		o.ObserveInt64(tb.EtcdebpfDiskEventsLost, int64(b.DisksFull))
		return nil
	}, instruments...)
}

// Drain detaches the programs and delivers the histograms' last counts and the
// records left in the ring buffer, the first time it is called. If ctx ends
// first, it returns, and what was not delivered is dropped at Close.
func (c *Controller) Drain(ctx context.Context) error {
	var err error
	c.drainOnce.Do(func() { err = errors.Join(c.drain(ctx)...) })
	return err
}

func (c *Controller) drain(ctx context.Context) []error {
	errs := []error{c.session.Detach()}
	if c.metricsDone != nil {
		close(c.stopMetrics)
		select {
		case <-c.metricsDone:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("etcdebpf: the last collection of metrics did not finish before shutdown's deadline: %w", ctx.Err()))
		}
	}
	if c.readerDone != nil {
		// After a flush the reader returns what is pending, then ErrFlushed: readRecords returns.
		errs = append(errs, c.session.FlushRecords())
		select {
		case <-c.readerDone:
		case <-ctx.Done():
			pending := c.session.PendingRecords()
			c.settings.Logger.Warn("Shutdown's deadline came with the pipeline still busy: records left in the ring buffer are dropped",
				zap.Int("records", pending))
			errs = append(errs, fmt.Errorf("etcdebpf: %d records still in the ring buffer at shutdown: %w", pending, ctx.Err()))
		}
	}
	return errs
}

// Close cancels the pipeline call in progress, stops the host watch after its
// last word on losses, and frees the self-telemetry, then the session: the
// telemetry's callbacks read the session, and a collection after its Close
// would read freed maps.
func (c *Controller) Close() error {
	c.cancel()
	<-c.watchDone
	err := c.counters.Unregister()
	c.telemetry.Shutdown()
	return errors.Join(err, c.session.Close())
}

// watchHost keeps the executable filter in step with the file (when exe is set),
// the pid filter with the processes (when pids is set), and reports which
// processes lost records, once a TargetCheckInterval. One check of the
// processes serves the pids and the losses; the losses need it before they
// read the kernel's table.
func watchHost(ctx context.Context, s Session, processes *process.Registry, exe *hostwatch.Executable, pids *hostwatch.PIDs, losses *hostwatch.LossReporter, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(TargetCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			processes.Check()
			losses.Check(s, time.Now()) // the last word on what was lost
			return
		case now := <-tick.C:
			if exe != nil {
				exe.Check(s)
			}
			processes.Check()
			if pids != nil {
				pids.Check(ctx, s)
			}
			losses.Check(s, now)
		}
	}
}

// now is the pipeline's timestamp of the present.
func now() pcommon.Timestamp { return pcommon.NewTimestampFromTime(time.Now()) }
