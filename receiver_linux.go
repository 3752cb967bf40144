//go:build linux && (amd64 || arm64)

package etcdebpfreceiver

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/etcdebpf/etcdebpfreceiver/internal/controller"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// etcdReceiver is one etcdebpf component. A logs and a metrics pipeline that name
// the same component share it: one controller, one set of BPF programs, one ring
// buffer. Each pipeline Starts and Shuts it down: the first Start starts the
// controller, the first Shutdown drains it, the last Shutdown closes it.
type etcdReceiver struct {
	cfg      *Config
	settings receiver.Settings
	next     consumer.Logs    // nil without a logs pipeline
	metrics  consumer.Metrics // nil without a metrics pipeline
	release  func()           // forgets this receiver in the factory's map of shared ones

	mu     sync.Mutex // serializes Start and Shutdown
	starts int        // Starts not yet matched by a Shutdown
	ctrl   *controller.Controller
}

func newReceiver(set receiver.Settings, cfg *Config) (*etcdReceiver, error) {
	return &etcdReceiver{cfg: cfg, settings: set, release: func() {}}, nil
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

// openTracer is the kernel session of the receiver.
func openTracer(opts tracer.Options) (controller.Session, error) { return tracer.Start(opts) }

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
	warnUnusedSettings(r.settings.Logger, r.cfg, r.next != nil, r.metrics != nil)
	cfg := r.controllerConfig()
	cfg.ReportStatus = func(ev *componentstatus.Event) { componentstatus.ReportStatus(host, ev) }
	ctrl, err := controller.New(r.settings, cfg, openTracer)
	if err == nil {
		err = ctrl.Start()
	}
	if err != nil {
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
	r.ctrl = ctrl
	r.settings.Logger.Info("Tracing etcd write and sync syscalls",
		zap.String("comm", r.cfg.Comm), zap.Ints("pids", r.cfg.PIDs), zap.String("cgroup_path", r.cfg.CgroupPath),
		zap.String("executable", r.cfg.Executable), zap.Int("budget_records_per_second", r.cfg.Budget.RecordsPerSecond),
		zap.Int("payload_bytes", r.cfg.PayloadBytes), zap.Int("ring_buffer_size", r.ringBufferSize()),
		zap.Strings("syscalls", r.cfg.Syscalls), zap.Strings("fd_kinds", r.cfg.FDKinds), zap.Duration("min_duration", r.cfg.MinDuration),
		zap.Bool("logs", r.next != nil), zap.Bool("metrics", r.metrics != nil))
	return nil
}

// controllerConfig maps the configuration to the controller's.
func (r *etcdReceiver) controllerConfig() controller.Config {
	return controller.Config{
		Tracer: tracer.Options{
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
			Scheduler:      r.cfg.Scheduler, // the records' parts and etcd.syscall.time alike
			Budget:         tracer.Budget{RecordsPerSecond: r.cfg.Budget.RecordsPerSecond, Burst: r.cfg.Budget.Burst},
			Block:          r.cfg.Block,
			Disks:          r.cfg.Disks,
			Pin:            tracer.Pin{Path: r.cfg.PinPath, Release: r.cfg.UnpinOnShutdown},
		},
		Executable:         r.cfg.Executable,
		Logs:               r.next,
		Decode:             r.cfg.Decode,
		MaxBatchSize:       r.cfg.MaxBatchSize,
		FlushInterval:      r.cfg.FlushInterval,
		Metrics:            r.metrics,
		CollectionInterval: r.cfg.CollectionInterval,
	}
}

// ringBufferSize is the configured size, or the smallest for metrics alone: no record is sent then.
func (r *etcdReceiver) ringBufferSize() int {
	if r.next == nil {
		return minRingSize
	}
	return r.cfg.RingBufferSize
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
	if r.ctrl != nil {
		errs = append(errs, r.ctrl.Drain(ctx))
	}
	r.starts--
	if r.starts > 0 {
		return errors.Join(errs...) // the last pipeline's Shutdown frees the programs
	}
	defer r.release()
	if r.ctrl == nil {
		return errors.Join(errs...) // Start could not trace
	}
	errs = append(errs, r.ctrl.Close())
	r.ctrl = nil
	if r.cfg.PinPath != "" && !r.cfg.UnpinOnShutdown {
		r.settings.Logger.Info("The programs stay attached and counting, pinned for the next agent to take over; "+
			"to stop for good, shut down with unpin_on_shutdown: true, or remove the pin_path (rm -rf)",
			zap.String("pin_path", r.cfg.PinPath))
	}
	return errors.Join(errs...)
}
