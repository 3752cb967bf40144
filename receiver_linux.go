//go:build linux

package etcdebpfreceiver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// etcdReceiver is one etcdebpf component. A logs and a metrics pipeline that name
// the same component share it: one set of BPF programs, one ring buffer. Each
// pipeline Starts and Shuts it down: the first Start loads the programs, the
// last Shutdown unloads them.
type etcdReceiver struct {
	cfg      *Config
	settings receiver.Settings
	next     consumer.Logs    // nil without a logs pipeline
	metrics  consumer.Metrics // nil without a metrics pipeline
	obsrecv  *receiverhelper.ObsReport
	release  func() // forgets this receiver in the factory's map of shared ones

	mu        sync.Mutex // serializes Start and Shutdown
	starts    int        // Starts not yet matched by a Shutdown
	drained   bool       // the first Shutdown delivered what was left
	tracer    *tracer.Tracer
	telemetry *metadata.TelemetryBuilder
	cancel    context.CancelFunc // cancels the context the pipeline is called with
	// Each goroutine closes its channel when it returns; nil when it was not started.
	readerDone  chan struct{}
	metricsDone chan struct{}
	guardDone   chan struct{} // watching the executable, the pids and losses
	stopMetrics chan struct{} // closed by Shutdown: collect once more and return
}

// targetCheckInterval is how often guard checks the executable, the pids and the losses.
const targetCheckInterval = time.Second

func newReceiver(set receiver.Settings, cfg *Config) (*etcdReceiver, error) {
	obsrecv, err := receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{
		ReceiverID:             set.ID,
		Transport:              "ebpf",
		ReceiverCreateSettings: set,
	})
	if err != nil {
		return nil, fmt.Errorf("etcdebpf: creating obsreport: %w", err)
	}
	return &etcdReceiver{cfg: cfg, settings: set, obsrecv: obsrecv, release: func() {}}, nil
}

// pipelines is how many pipelines use the receiver: how many Starts it takes.
func (r *etcdReceiver) pipelines() int {
	n := 0
	if r.next != nil {
		n++
	}
	if r.metrics != nil {
		n++
	}
	return max(n, 1)
}

// Start loads and attaches the BPF programs and starts draining the ring buffer.
//
// When the host cannot trace (no privileges, no BTF, ...) nothing is left loaded
// in the kernel and, by error_mode: propagate returns the failure, so that the
// collector exits naming the cause and the fix; ignore reports a permanent error
// through component status, logs it and stays idle while the collector runs on.
func (r *etcdReceiver) Start(_ context.Context, host component.Host) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.starts == r.pipelines() {
		return errors.New("etcdebpf: receiver already started")
	}
	r.starts++
	if r.starts > 1 {
		return nil // the other pipeline started it
	}

	tb, err := metadata.NewTelemetryBuilder(r.settings.TelemetrySettings)
	if err != nil {
		r.starts--
		return fmt.Errorf("etcdebpf: creating telemetry: %w", err)
	}
	t, exe, err := r.startTracer(tb)
	if err != nil {
		tb.Shutdown()
		if r.cfg.ErrorMode == ErrorModeIgnore {
			err = fmt.Errorf("etcdebpf: %w", err)
			// An expected condition of the host, explained in the message: a
			// stack trace (zap's default at Error level) would only hide it.
			r.settings.Logger.WithOptions(zap.AddStacktrace(zapcore.FatalLevel)).Error(
				"Cannot trace etcd: this receiver stays idle, the rest of the collector runs on (error_mode: ignore)", zap.Error(err))
			componentstatus.ReportStatus(host, componentstatus.NewPermanentErrorEvent(err))
			return nil
		}
		// The collector prints this after its own prefix and exits 1: one line.
		r.starts--
		return fmt.Errorf("etcdebpf: %w (to run the rest of the collector without this receiver, set error_mode: ignore)", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	r.tracer, r.telemetry, r.cancel = t, tb, cancel
	// The goroutines get what they use as arguments: after a Shutdown that timed out,
	// a reader stuck in the pipeline may outlive the fields of this receiver.
	if r.next != nil {
		r.readerDone = make(chan struct{})
		go r.run(ctx, t.Reader, tb, r.readerDone)
	}
	if r.metrics != nil {
		r.stopMetrics, r.metricsDone = make(chan struct{}), make(chan struct{})
		go r.collectMetrics(ctx, t, r.stopMetrics, r.metricsDone)
	}
	var pids *pidWatch
	if len(r.cfg.PIDs) > 0 {
		pids = &pidWatch{alive: slices.Clone(r.cfg.PIDs), exited: tb.EtcdebpfTargetsExited, logger: r.settings.Logger}
	}
	r.guardDone = make(chan struct{})
	go guard(ctx, t, exe, pids, newLossReporter(r.settings.Logger), r.guardDone)
	r.settings.Logger.Info("Tracing etcd write and sync syscalls",
		zap.String("comm", r.cfg.Comm), zap.Ints("pids", r.cfg.PIDs), zap.String("cgroup_path", r.cfg.CgroupPath),
		zap.String("executable", r.cfg.Executable), zap.Int("budget_records_per_second", r.cfg.Budget.RecordsPerSecond),
		zap.Int("payload_bytes", r.cfg.PayloadBytes), zap.Int("ring_buffer_size", r.ringBufferSize()),
		zap.Strings("syscalls", r.cfg.Syscalls), zap.Strings("fd_kinds", r.cfg.FDKinds), zap.Duration("min_duration", r.cfg.MinDuration),
		zap.Bool("logs", r.next != nil), zap.Bool("metrics", r.metrics != nil))
	return nil
}

// startTracer loads and attaches the programs the configuration asks for and
// registers the kernel's counters with tb; on error nothing stays loaded.
func (r *etcdReceiver) startTracer(tb *metadata.TelemetryBuilder) (*tracer.Tracer, *exeWatch, error) {
	opts := tracer.Options{
		Comm:           r.cfg.Comm,
		PIDs:           r.cfg.PIDs,
		CgroupPath:     r.cfg.CgroupPath,
		PayloadBytes:   r.cfg.PayloadBytes,
		RingBufferSize: r.ringBufferSize(),
		Syscalls:       r.cfg.Syscalls,
		FDKinds:        r.cfg.FDKinds,
		NoRecords:      r.next == nil,
		MinDuration:    r.cfg.MinDuration,
		Histograms:     r.metrics != nil,
		Scheduler:      r.cfg.Scheduler && r.next != nil, // only records carry its split
		Budget:         tracer.Budget{RecordsPerSecond: r.cfg.Budget.RecordsPerSecond, Burst: r.cfg.Budget.Burst},
	}
	var exe *exeWatch
	if r.cfg.Executable != "" {
		id, err := tracer.ExecutableID(r.cfg.Executable)
		if err != nil {
			return nil, nil, fmt.Errorf("%w; set executable to the path of the etcd binary the traced etcd runs (ls -l /proc/<etcd pid>/exe)", err)
		}
		exe = &exeWatch{path: r.cfg.Executable, current: id, logger: r.settings.Logger}
		opts.Executables = []tracer.FileID{id}
	}
	t, err := tracer.Start(opts)
	if err != nil {
		return nil, nil, err
	}
	if err := registerKernelCounters(tb, t); err != nil {
		t.Close()
		return nil, nil, err
	}
	return t, exe, nil
}

// ringBufferSize is the configured size, or the smallest for metrics alone: no record is sent then.
func (r *etcdReceiver) ringBufferSize() int {
	if r.next == nil {
		return minRingSize
	}
	return r.cfg.RingBufferSize
}

func registerKernelCounters(tb *metadata.TelemetryBuilder, t *tracer.Tracer) error {
	observe := func(pick func(tracer.Counters) uint64) metric.Int64Callback {
		return func(_ context.Context, o metric.Int64Observer) error {
			c, err := t.Counters()
			if err != nil {
				return err
			}
			o.Observe(int64(pick(c)))
			return nil
		}
	}
	return errors.Join(
		tb.RegisterEtcdebpfCallsTracedCallback(observe(func(c tracer.Counters) uint64 { return c.Calls })),
		tb.RegisterEtcdebpfRecordsLostRingbufFullCallback(observe(func(c tracer.Counters) uint64 { return c.RingbufFull })),
		tb.RegisterEtcdebpfRecordsLostInflightFullCallback(observe(func(c tracer.Counters) uint64 { return c.InflightFull })),
		tb.RegisterEtcdebpfRecordsLostOverBudgetCallback(observe(func(c tracer.Counters) uint64 { return c.OverBudget })),
		tb.RegisterEtcdebpfRecordsLostUnattributedCallback(observe(func(c tracer.Counters) uint64 { return c.Unattributed })),
	)
}

// Shutdown delivers, at the first call, what every pipeline of the receiver is
// owed: it detaches the programs, sends the histograms' last counts and what is
// left in the ring buffer. The last call frees everything. On a receiver that is
// not running it only drops the factory's reference to it. If ctx ends first, the pipeline call in progress
// is cancelled and the remaining records are dropped.
//
// Why the first: the collector stops components in topological order, so when
// the first of this receiver's pipelines stops, the exporters of every pipeline
// still run; by the last, the other pipeline's exporters may have stopped, and
// what it was sent then would be refused.
func (r *etcdReceiver) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.starts == 0 {
		r.release() // created and never started: the factory need not keep it
		return nil
	}
	var errs []error
	if r.tracer != nil && !r.drained {
		errs = r.drain(ctx)
		r.drained = true
	}
	r.starts--
	if r.starts > 0 {
		return errors.Join(errs...) // the last pipeline's Shutdown frees the programs
	}
	defer r.release()
	if r.tracer == nil {
		return errors.Join(errs...) // Start could not trace
	}
	r.cancel()
	<-r.guardDone
	errs = append(errs, r.tracer.Close())
	r.telemetry.Shutdown()
	r.tracer, r.telemetry, r.readerDone, r.metricsDone, r.guardDone = nil, nil, nil, nil, nil
	r.drained = false
	return errors.Join(errs...)
}

// drain detaches the programs and delivers the histograms' last counts and the
// records left in the ring buffer.
func (r *etcdReceiver) drain(ctx context.Context) []error {
	errs := []error{r.tracer.Detach()}
	if r.metricsDone != nil {
		close(r.stopMetrics)
		select {
		case <-r.metricsDone:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("etcdebpf: the last collection of metrics did not finish before shutdown's deadline: %w", ctx.Err()))
		}
	}
	if r.readerDone != nil {
		// After Flush the reader returns what is pending, then ErrFlushed: run returns.
		errs = append(errs, r.tracer.Reader.Flush())
		select {
		case <-r.readerDone:
		case <-ctx.Done():
			pending := r.tracer.PendingRecords()
			r.settings.Logger.Warn("Shutdown's deadline came with the pipeline still busy: records left in the ring buffer are dropped",
				zap.Int("records", pending))
			errs = append(errs, fmt.Errorf("etcdebpf: %d records still in the ring buffer at shutdown: %w", pending, ctx.Err()))
		}
	}
	return errs
}

// run reads the ring buffer into a batch and sends the batch down the pipeline
// when it is full or FlushInterval after the last send, whichever comes first:
// the producer does not wake the reader for every record. It returns once the
// reader is flushed (Shutdown: what was pending has been read) or closed.
func (r *etcdReceiver) run(ctx context.Context, rd *ringbuf.Reader, tb *metadata.TelemetryBuilder, done chan<- struct{}) {
	defer close(done)
	b := newLogBuilder(r.cfg.Decode, metadata.ScopeName, r.settings.BuildInfo.Version, r.cfg.MaxBatchSize)
	var (
		rec ringbuf.Record
		n   readCounts
	)
	rd.SetDeadline(time.Now().Add(r.cfg.FlushInterval))
	for {
		err := rd.ReadInto(&rec)
		if err == nil {
			n.read++
			if err := b.append(rec.RawSample, pcommon.NewTimestampFromTime(time.Now())); err != nil {
				n.malformed, n.lastErr = n.malformed+1, err
			}
			if b.len() < r.cfg.MaxBatchSize {
				continue
			}
		}
		r.send(ctx, b, tb, &n)
		switch {
		case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
			rd.SetDeadline(time.Now().Add(r.cfg.FlushInterval))
		case errors.Is(err, ringbuf.ErrFlushed), errors.Is(err, ringbuf.ErrClosed):
			return
		default:
			r.settings.Logger.Error("Reading the ring buffer failed; no more records will be read", zap.Error(err))
			return
		}
	}
}

// readCounts are the records read since the last send.
type readCounts struct {
	read, malformed int64
	lastErr         error // why the last malformed record did not decode
}

// send counts what was read, then hands the batch, if any, to the pipeline.
func (r *etcdReceiver) send(ctx context.Context, b *logBuilder, tb *metadata.TelemetryBuilder, n *readCounts) {
	tb.EtcdebpfRecordsRead.Add(ctx, n.read)
	if n.malformed > 0 {
		tb.EtcdebpfRecordsMalformed.Add(ctx, n.malformed)
		r.settings.Logger.Warn("Dropped malformed records", zap.Int64("records", n.malformed), zap.Error(n.lastErr))
	}
	*n = readCounts{}
	records := b.len()
	if records == 0 {
		return
	}
	logs := b.take(r.cfg.MaxBatchSize)
	ctx = r.obsrecv.StartLogsOp(ctx)
	err := r.next.ConsumeLogs(ctx, logs)
	r.obsrecv.EndLogsOp(ctx, metadata.Type.String(), records, err)
	if err != nil {
		r.settings.Logger.Debug("The pipeline refused records", zap.Int("records", records), zap.Error(err))
	}
}

// guard keeps the executable filter in step with the file (when exe is set),
// the pid filter with the processes (when pids is set), and reports which
// processes lost records, once a targetCheckInterval.
func guard(ctx context.Context, t *tracer.Tracer, exe *exeWatch, pids *pidWatch, losses *lossReporter, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(targetCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			losses.check(t, time.Now()) // the last word on what was lost
			return
		case now := <-tick.C:
			if exe != nil {
				exe.check(t)
			}
			if pids != nil {
				pids.check(ctx, t)
			}
			losses.check(t, now)
		}
	}
}

// pidWatch reports each pid of cfg.PIDs that exits, once, and removes it from
// the kernel's filter so that a new process reusing the pid is not traced.
type pidWatch struct {
	alive  []int
	exited metric.Int64Counter // otelcol_etcdebpf_targets_exited
	logger *zap.Logger
}

func (w *pidWatch) check(ctx context.Context, t *tracer.Tracer) {
	var gone []int
	w.alive = slices.DeleteFunc(w.alive, func(pid int) bool {
		if processExited(pid) {
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
