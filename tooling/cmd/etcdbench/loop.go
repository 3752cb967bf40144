//go:build linux

package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receivertest"

	etcdebpf "github.com/etcdebpf/etcdebpfreceiver"
	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpfobjects"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
)

// inproc is the receiver running inside the harness with a consumer that only
// counts records: the fastest possible pipeline behind it.
type inproc struct {
	rcv     receiver.Logs
	metrics receiver.Metrics // nil unless histograms are on
	records atomic.Int64
}

// The loop and ceiling phases measure what tracing costs, not what the budget
// drops: chargedBudget charges every record but never limits a writer (one ns a
// record, a second of burst); noBudget turns the check off in the kernel.
var (
	chargedBudget = etcdebpf.BudgetConfig{RecordsPerSecond: 1_000_000_000, Burst: 1_000_000_000}
	noBudget      = etcdebpf.BudgetConfig{}
)

// startInproc starts the receiver in a logs pipeline, and with histograms in a
// metrics pipeline too (one receiver for both, as in the collector).
func startInproc(payload int, histograms bool, budget etcdebpf.BudgetConfig) (*inproc, error) {
	return startInprocWith(histograms, func(cfg *etcdebpf.Config) {
		cfg.PayloadBytes = payload
		cfg.Budget = budget
	})
}

// startInprocWith starts the receiver tracing comm with decode on and the
// default configuration as edit changes it.
func startInprocWith(histograms bool, edit func(*etcdebpf.Config)) (*inproc, error) {
	f := etcdebpf.NewFactory()
	cfg := f.CreateDefaultConfig().(*etcdebpf.Config)
	cfg.Comm = comm
	cfg.Decode = true
	edit(cfg)
	r := &inproc{}
	next, err := consumer.NewLogs(func(_ context.Context, ld plog.Logs) error {
		r.records.Add(int64(ld.LogRecordCount()))
		return nil
	})
	if err != nil {
		return nil, err
	}
	set := receivertest.NewNopSettings(metadata.Type)
	if r.rcv, err = f.CreateLogs(context.Background(), set, cfg, next); err != nil {
		return nil, err
	}
	if histograms {
		if r.metrics, err = f.CreateMetrics(context.Background(), set, cfg, consumertest.NewNop()); err != nil {
			return nil, err
		}
		if err := r.metrics.Start(context.Background(), componenttest.NewNopHost()); err != nil {
			return nil, err
		}
	}
	if err := r.rcv.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		return nil, err
	}
	onCleanup(func() { _ = r.stop() })
	return r, nil
}

func (r *inproc) stop() error {
	var err error
	if r.metrics != nil {
		err = r.metrics.Shutdown(context.Background())
	}
	return errors.Join(err, r.rcv.Shutdown(context.Background()))
}

// waitQuiet waits until the record count stops moving (the receiver flushes
// every 100 ms), up to timeout.
func (r *inproc) waitQuiet(want int64, timeout time.Duration) int64 {
	deadline := time.Now().Add(timeout)
	last, still := r.records.Load(), 0
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		n := r.records.Load()
		if n >= want {
			return n
		}
		if n == last {
			if still++; still >= 10 { // a second without progress
				return n
			}
		} else {
			still = 0
		}
		last = n
	}
	return r.records.Load()
}

// writeLoop runs the writer binary (its file name is the process name).
func writeLoop(bin string, o etcdwriter.Options) (etcdwriter.Result, error) {
	o.Report = true
	out, err := run(bin, o.Args()...)
	if err != nil {
		return etcdwriter.Result{}, err
	}
	return etcdwriter.ParseResult(out)
}

// Tight-loop variants, in the order they alternate.
const (
	loopUntraced  = "untraced"
	loopUnmatched = "attached, not matched"
	loopMatched   = "matched, payload off"
	loopNoBudget  = "matched, budget off"
	loopMatched64 = "matched, payload 64"
	// Logs of every call and the histograms: the histograms' own cost per call.
	loopMatchedHist = "matched, payload off, + histograms"
	// The yardstick: configuration D's one-liner on the same writer, no receiver.
	loopBpftrace = "bpftrace latency histogram"
)

var loopVariants = []string{loopUntraced, loopUnmatched, loopMatched, loopNoBudget, loopMatched64, loopMatchedHist, loopBpftrace}

type loopSample struct {
	Target, Variant string
	NsPerCall       float64 // wall time
	CPUNs           float64 // the writer's CPU time per call
	Delivered       int64   // records the consumer counted for this run
	Drops           uint64
}

type loopEnv struct {
	matchedBin, unmatchedBin string // the writer as "etcd" and as "writeloop"
	work                     string
}

// runLoops alternates the variants runs times for each target (/dev/null, a file).
func (l *loopEnv) runLoops(runs int, calls int) ([]loopSample, error) {
	var out []loopSample
	file := filepath.Join(l.work, "writeloop.dat")
	defer os.Remove(file)
	targets := []struct{ name, path string }{{"/dev/null", "/dev/null"}, {"file (ext4)", file}}
	for _, tg := range targets {
		for i := 1; i <= runs; i++ {
			for _, v := range loopVariants {
				s, err := l.loopOnce(tg.path, v, calls)
				if err != nil {
					return out, err
				}
				s.Target = tg.name
				out = append(out, s)
				logf("  loop %-10s run %d/%d %-22s %7.1f ns/call (cpu %7.1f)  records %d  drops %d", tg.name, i, runs, v, s.NsPerCall, s.CPUNs, s.Delivered, s.Drops)
			}
		}
	}
	return out, nil
}

func (l *loopEnv) loopOnce(path, variant string, calls int) (loopSample, error) {
	s := loopSample{Variant: variant}
	bin := l.matchedBin
	var r *inproc
	var err error
	switch variant {
	case loopUnmatched:
		bin = l.unmatchedBin
		r, err = startInproc(0, false, chargedBudget)
	case loopMatched:
		r, err = startInproc(0, false, chargedBudget)
	case loopNoBudget:
		r, err = startInproc(0, false, noBudget)
	case loopMatched64:
		r, err = startInproc(64, false, chargedBudget)
	case loopMatchedHist:
		r, err = startInproc(0, true, chargedBudget)
	case loopBpftrace:
		var bt *subprocess.Process
		if bt, err = startBpftrace(filepath.Join(l.work, "bpftrace-loop.log")); err == nil {
			defer bt.Stop(10 * time.Second)
		}
	}
	if err != nil {
		return s, err
	}
	res, err := writeLoop(bin, etcdwriter.Options{Calls: int64(calls), Size: 64, Path: path})
	if r != nil {
		if variant != loopUnmatched {
			s.Delivered = r.waitQuiet(int64(calls), 5*time.Second)
		}
		rb, inf, derr := kernelDrops(os.Getpid())
		if derr == nil {
			s.Drops = rb + inf
		}
		if serr := r.stop(); err == nil {
			err = serr
		}
	}
	if err != nil {
		return s, err
	}
	s.NsPerCall, s.CPUNs = res.NsPerCall, res.CPUNs
	return s, nil
}

// loopBPFStats runs the matched and the unmatched loop once each with BPF
// run-time stats on and returns per-variant deltas.
func (l *loopEnv) loopBPFStats(calls int) (map[string][]progDelta, error) {
	undo, err := bpfStats()
	if err != nil {
		return nil, err
	}
	defer undo()
	out := map[string][]progDelta{}
	for _, v := range []string{loopUnmatched, loopMatched, loopNoBudget, loopMatched64, loopMatchedHist} {
		payload, budget := 0, chargedBudget
		if v == loopNoBudget {
			budget = noBudget
		}
		bin := l.matchedBin
		if v == loopMatched64 {
			payload = 64
		}
		if v == loopUnmatched {
			bin = l.unmatchedBin
		}
		r, err := startInproc(payload, v == loopMatchedHist, budget)
		if err != nil {
			return nil, err
		}
		before, err := ownedPrograms(os.Getpid())
		if err == nil {
			_, err = writeLoop(bin, etcdwriter.Options{Calls: int64(calls), Size: 64})
		}
		var after []bpfobjects.Program
		if err == nil {
			after, err = ownedPrograms(os.Getpid())
		}
		_ = r.stop()
		if err != nil {
			return nil, err
		}
		out[v] = snapshotDelta(before, after)
	}
	return out, nil
}

type ceilingSample struct {
	Threads     int
	OfferedRate float64 // 0: unpaced
	Calls       int64
	WriterSecs  float64
	Delivered   int64
	Drops       uint64
}

func (c ceilingSample) deliveredPerSec() float64 { return float64(c.Delivered) / c.WriterSecs }
func (c ceilingSample) writesPerSec() float64    { return float64(c.Calls) / c.WriterSecs }

// runCeiling feeds the receiver (decode on, payload off, counting consumer) from
// the writer named etcd at rising rates, and unpaced with 1 and 2 threads.
func (l *loopEnv) runCeiling(rates []float64, secs float64) ([]ceilingSample, error) {
	type step struct {
		threads int
		rate    float64
	}
	var steps []step
	for _, r := range rates {
		steps = append(steps, step{1, r})
	}
	steps = append(steps, step{1, 0}, step{2, 0})
	var out []ceilingSample
	for _, st := range steps {
		r, err := startInproc(0, false, chargedBudget)
		if err != nil {
			return out, err
		}
		calls := int64(st.rate * secs)
		if st.rate == 0 {
			calls = int64(1_500_000 * secs) // a few seconds at the unpaced rate
		}
		res, err := writeLoop(l.matchedBin, etcdwriter.Options{Calls: calls, Size: 64, Threads: st.threads, Rate: st.rate})
		if err != nil {
			_ = r.stop()
			return out, err
		}
		delivered := r.waitQuiet(res.Calls, 10*time.Second)
		rb, inf, derr := kernelDrops(os.Getpid())
		_ = r.stop()
		if derr != nil {
			return out, derr
		}
		// The writer's own final printf is a write(2) too: one record beyond the loop.
		if delivered > res.Calls {
			delivered = res.Calls
		}
		c := ceilingSample{Threads: st.threads, OfferedRate: st.rate, Calls: res.Calls,
			WriterSecs: res.Elapsed.Seconds(), Delivered: delivered, Drops: rb + inf}
		out = append(out, c)
		logf("  ceiling threads=%d offered=%-8.0f writes/s=%-9.0f delivered=%d/%d drops=%d", c.Threads, c.OfferedRate, c.writesPerSec(), c.Delivered, c.Calls, c.Drops)
	}
	return out, nil
}
