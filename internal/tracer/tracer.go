//go:build linux && (amd64 || arm64)

// Package tracer is the kernel session: it loads etcd_monitor.c into the kernel,
// attaches it to the syscall tracepoints, and hands out what the kernel collects
// as domain types: records, histograms, counters, losses. It is the only package
// that ships and imports bpf.
package tracer

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
)

// Options selects what is traced and how records are shaped.
type Options struct {
	Comm           string // exact process name; empty: any
	PIDs           []int  // host PIDs; empty: any
	CgroupPath     string // cgroup v2 directory; empty: any
	PayloadBytes   int    // leading bytes of each write to copy, 0 to bpf.PayloadMax
	RingBufferSize int    // bytes, a power of two

	Syscalls    []string      // syscalls to attach to, by name; empty: all seven
	FDKinds     []string      // fd kinds that produce records, by name; empty: all
	NoRecords   bool          // no call becomes a record, whatever FDKinds says (metrics alone)
	MinDuration time.Duration // records only for calls at least this slow
	Histograms  bool          // count every traced call in the latency histograms
	// Scheduler attaches to sched_switch so that each record says how long its call
	// was blocked and how long it waited runnable for a CPU.
	Scheduler bool
	// Executables, when not empty, are the only executables traced; AllowExecutable
	// and ForbidExecutable change the set while running.
	Executables []host.FileID
	Budget      Budget

	// Block loads the disks' view (block.c): per-disk request histograms and who
	// submits to the disks. Disks, when not empty, are the disks it covers, by
	// name or device path (host.ResolveDisk); empty, it covers the disks under the
	// files the traced calls write to, as it sees them.
	Block bool
	Disks []string

	// Pin keeps the kernel side in a BPF file system across agents.
	Pin Pin
}

// Budget is how many records one process may queue: RecordsPerSecond on average,
// up to Burst at once. While the ring buffer is more than half full, a process that
// queued more than a tenth of RecordsPerSecond (beyond half of Burst) also loses its
// records. Zero RecordsPerSecond: no budget.
type Budget struct {
	RecordsPerSecond int
	Burst            int
}

// Tracer owns the loaded BPF objects and their tracepoint links.
type Tracer struct {
	opts        Options
	objs        bpf.MonitorObjects
	exits       []link.Link // attached first, detached last
	sched       []link.Link // attached before the enters, detached after them
	enters      []link.Link
	recordSpace int // bytes one record takes in the ring, header included
	// reader is set once by Start and never reset: after Close, a goroutine still
	// reading gets ErrClosed.
	reader *ringbuf.Reader
	rec    ringbuf.Record // reused by ReadRecord
	closed bool
	block  *blockObjects // nil without Options.Block
	// warnings are what Start could not provide but did not refuse to start for.
	warnings []error
	// start is when the kernel side began counting: this Start, or the Start of
	// the agent that pinned what this one took over.
	start time.Time
	pin   *pinned // nil without Options.Pin.Path, or where links cannot be pinned
}

// Start checks the host, loads the programs and attaches them. With
// Options.Pin.Path it takes over what an agent of the same build and
// configuration pinned there, or replaces what another pinned, and pins what it
// loads. On error nothing is left in the kernel, nor pinned.
func Start(opts Options) (_ *Tracer, err error) {
	if err := checkHost(); err != nil {
		return nil, err
	}
	if opts.Pin.Path == "" {
		return start(opts, nil)
	}
	p, err := openPin(opts.Pin.Path, pinDigest(opts))
	if err != nil {
		return nil, err
	}
	if p.takeover {
		t, err := start(opts, p)
		if err == nil {
			return t, nil
		}
		p.takeover, p.state = false, nil
		p.report.Replaced = fmt.Sprintf("the pinned programs could not be taken over (%v)", err)
	}
	if err := p.clear(); err != nil {
		return nil, errors.Join(err, p.close())
	}
	t, err := start(opts, p)
	if err != nil {
		return nil, errors.Join(err, p.remove())
	}
	return t, nil
}

// start loads and attaches the programs, or takes over the ones pinned at p
// (p.takeover). On error it frees what it loaded and leaves p to the caller.
func start(opts Options, p *pinned) (_ *Tracer, err error) {
	spec, err := bpf.LoadMonitor()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded BPF object: %w", err)
	}
	if err := configure(spec, opts); err != nil {
		return nil, err
	}
	fitAtomicsToKernel(spec)

	// The start comes before the programs are attached, so that no call they
	// count is older.
	t := &Tracer{opts: opts, recordSpace: recordSpace(opts.PayloadBytes), start: time.Now(), pin: p}
	defer func() {
		if err != nil {
			t.pin = nil // the caller's: what is pinned stays for it to decide
			t.Close()
		}
	}()
	takeover := p != nil && p.takeover
	if takeover {
		t.start = time.Unix(0, p.state.StartUnixNano)
	}
	loadOpts := &ebpf.CollectionOptions{}
	if p != nil {
		pinMaps(spec)
		if loadOpts.Maps.PinPath, err = p.mapDir(pinMonitorDir); err != nil {
			return nil, err
		}
	}
	if opts.Block {
		if t.block, err = loadBlock(opts, p); err != nil {
			return nil, err
		}
		loadOpts.MapReplacements = t.block.sharedMaps()
	}
	// Taking over, the programs are the pinned links' own: only the maps are
	// opened, and no program is loaded.
	var objs any = &t.objs
	if takeover {
		objs = &t.objs.MonitorMaps
	}
	if err := spec.LoadAndAssign(objs, loadOpts); err != nil {
		return nil, explainLoadError(err)
	}
	if err := t.setFilters(); err != nil {
		return nil, err
	}
	if opts.Scheduler {
		if _, err := loadWaitFunctions(t.objs.WaitPages, t.objs.WaitTexts); err != nil {
			t.warnings = append(t.warnings, fmt.Errorf("scheduler: blocked waits are not told apart: %w", err))
		}
	}
	if t.block != nil {
		if err := t.block.attach(p); err != nil {
			return nil, err
		}
	}
	if err := t.attach(); err != nil {
		return nil, err
	}
	if p != nil && !takeover {
		if p.unsupported != nil {
			// Behave as without pinning: the state goes with this agent.
			t.warnings = append(t.warnings, p.unsupported)
			t.pin = nil
			if err := p.remove(); err != nil {
				return nil, err
			}
		} else if err := p.writeState(t.start); err != nil {
			return nil, err
		}
	}
	if t.pin != nil {
		t.pin.report.TookOver = takeover
		if t.block != nil {
			t.pin.report.MapBytes = mapsMemlock(&t.objs.MonitorMaps, &t.block.objs.BlockMaps)
		} else {
			t.pin.report.MapBytes = mapsMemlock(&t.objs.MonitorMaps)
		}
	}
	if t.reader, err = ringbuf.NewReader(t.objs.Events); err != nil {
		return nil, fmt.Errorf("opening the ring buffer reader: %w", err)
	}
	return t, nil
}

// StartTime is when the kernel side began counting: the histograms' and the
// counters' StartTimestamp. A tracer that took pinned programs over has theirs.
func (t *Tracer) StartTime() time.Time { return t.start }

// Pinned reports what Start found and did at Options.Pin.Path; false when the
// session is not pinned (no path, or a kernel that cannot pin its links: see
// Warnings).
func (t *Tracer) Pinned() (PinReport, bool) {
	if t.pin == nil {
		return PinReport{}, false
	}
	return t.pin.report, true
}

// Warnings are what the session could not provide though it started: each
// says what is missing and how to get it.
func (t *Tracer) Warnings() []error { return t.warnings }

// Close detaches and frees everything the tracer holds, but what is pinned
// (Options.Pin) unless Options.Pin.Release. It is safe on a partly started
// tracer and more than once.
func (t *Tracer) Close() error {
	errs := []error{t.Detach()}
	if t.reader != nil && !t.closed {
		errs = append(errs, t.reader.Close())
	}
	t.closed = true
	errs = append(errs, t.objs.Close())
	t.objs = bpf.MonitorObjects{}
	if t.block != nil {
		errs = append(errs, t.block.close())
		t.block = nil
	}
	if t.pin != nil {
		if t.opts.Pin.Release {
			errs = append(errs, t.pin.remove())
		} else {
			errs = append(errs, t.pin.close())
		}
		t.pin = nil
	}
	return errors.Join(errs...)
}
