//go:build linux && (amd64 || arm64)

package tracer

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
)

// Counters are the kernel's per-CPU counters, summed over CPUs.
type Counters = bpf.Counters

// Loss is one process's lost records by reason.
type Loss struct {
	OverBudget  uint64
	RingbufFull uint64
}

// setFilters makes the pid and executable filters Options' own: a taking-over
// agent finds the ones of the agent before it.
func (t *Tracer) setFilters() error {
	if err := resetKeys(t.objs.TargetExes, func(k bpf.MonitorExeId) bool {
		return slices.Contains(t.opts.Executables, host.FileID{Dev: k.Dev, Ino: k.Ino})
	}); err != nil {
		return fmt.Errorf("resetting the target_exes map: %w", err)
	}
	for _, exe := range t.opts.Executables {
		if err := t.AllowExecutable(exe); err != nil {
			return err
		}
	}
	if err := resetKeys(t.objs.TargetPids, func(pid uint32) bool { return slices.Contains(t.opts.PIDs, int(pid)) }); err != nil {
		return fmt.Errorf("resetting the target_pids map: %w", err)
	}
	for _, pid := range t.opts.PIDs {
		if err := t.objs.TargetPids.Put(uint32(pid), uint8(1)); err != nil {
			return fmt.Errorf("adding pid %d to the target_pids map: %w", pid, err)
		}
	}
	return nil
}

// resetKeys deletes the keys of m that keep does not keep.
func resetKeys[K comparable](m *ebpf.Map, keep func(K) bool) error {
	var (
		key   K
		value uint8
		gone  []K
	)
	iter := m.Iterate()
	for iter.Next(&key, &value) {
		if !keep(key) {
			gone = append(gone, key)
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	for _, k := range gone {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// RingBytes is what waits in the ring buffer and the ring's size, in bytes.
func (t *Tracer) RingBytes() (pending, size int) {
	return t.reader.AvailableBytes(), t.reader.BufferSize()
}

// PendingRecords is how many records wait in the ring buffer.
func (t *Tracer) PendingRecords() int { return t.reader.AvailableBytes() / t.recordSpace }

// ErrFlushed is ReadRecord's answer once the records pending at FlushRecords were read.
var ErrFlushed = ringbuf.ErrFlushed

// ErrClosed is ReadRecord's answer after Close.
var ErrClosed = ringbuf.ErrClosed

// ReadRecord waits for the next record, until the deadline SetReadDeadline set
// (then it returns os.ErrDeadlineExceeded), and returns it decoded: a view of
// the ring's bytes, valid until the next ReadRecord. A record that does not
// decode is an error wrapping ErrMalformedRecord, and the next ReadRecord reads
// on past it. One goroutine at a time may read.
func (t *Tracer) ReadRecord() (Record, error) {
	if err := t.reader.ReadInto(&t.rec); err != nil {
		return Record{}, err
	}
	return decodeRecord(t.rec.RawSample)
}

// SetReadDeadline bounds the wait of ReadRecord; the zero time waits forever.
func (t *Tracer) SetReadDeadline(deadline time.Time) { t.reader.SetDeadline(deadline) }

// FlushRecords makes ReadRecord return what is pending without waiting for the
// producer's wake-up, then ErrFlushed.
func (t *Tracer) FlushRecords() error { return t.reader.Flush() }

// Counters reads the kernel's counters.
func (t *Tracer) Counters() (Counters, error) { return bpf.ReadCounters(t.objs.Counters) }

// RemovePID stops tracing pid.
func (t *Tracer) RemovePID(pid int) error {
	err := t.objs.TargetPids.Delete(uint32(pid))
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// The latency histograms' layout: OpenTelemetry exponential buckets at HistScale,
// bucket 0 of Histogram.Buckets being index HistFirstIndex.
const (
	HistScale      = bpf.HistScale
	HistBuckets    = bpf.HistBuckets
	HistFirstIndex = bpf.HistFirstIndex
)

// HistKey is what one histogram counts: one process's calls of one syscall on one
// kind (and class) of fd.
type HistKey struct {
	PID       uint32
	Syscall   Syscall
	FDKind    FDKind
	FileClass FileClass
}

func (k HistKey) kernel() bpf.MonitorHistKey {
	return bpf.MonitorHistKey{Tgid: k.PID, Type: uint8(k.Syscall), FdKind: uint8(k.FDKind), FileClass: uint8(k.FileClass)}
}

func histKeyOf(k bpf.MonitorHistKey) HistKey {
	return HistKey{PID: k.Tgid, Syscall: Syscall(k.Type), FDKind: FDKind(k.FdKind), FileClass: FileClass(k.FileClass)}
}

// HistCounts are one kernel latency histogram's counts. Its bucket counters are
// 32 bits wide and wrap: a reader accumulates differences between reads.
type HistCounts struct {
	SumNs   uint64
	Bytes   uint64 // the bytes the counted calls (or requests) wrote or served
	MaxNs   uint64 // the slowest call (or request); 0 before the first
	MinNs   uint64 // the fastest; math.MaxUint64 before the first
	Buckets [HistBuckets]uint32
}

func histCountsOf(h bpf.MonitorHist) HistCounts {
	return HistCounts{SumNs: h.SumNs, Bytes: h.Bytes, MaxNs: h.MaxNs, MinNs: ^h.MinNsInv, Buckets: h.Buckets}
}

// Histogram is the kernel's latency histogram of the calls of one key.
type Histogram struct {
	Key      HistKey
	Overflow bool // the calls that found the map full, whatever their key
	HistCounts
	// Waits is the counted calls' time off the CPU, with the scheduler part:
	// Waits.Split(SumNs) is their time by part.
	Waits Waits
}

// Histograms reads every histogram, the overflow one last (when it counted any call).
func (t *Tracer) Histograms() ([]Histogram, error) {
	var (
		out []Histogram
		key bpf.MonitorHistKey
		val bpf.MonitorHist
	)
	// The waits are read before the histograms: the kernel counts a call in its
	// histogram first, so every call in the waits read is in the histograms read
	// after, and a histogram's sum always covers its waits.
	waits := map[bpf.MonitorHistKey]Waits{}
	if t.opts.Scheduler {
		var w bpf.MonitorWaitTimes
		iter := t.objs.Waits.Iterate()
		for iter.Next(&key, &w) {
			waits[key] = Waits{Ns: w.Ns, IODeviceNs: w.IoDeviceNs, IODeviceKnown: t.opts.Block}
		}
		if err := iter.Err(); err != nil {
			return nil, fmt.Errorf("reading the waits: %w", err)
		}
	}
	iter := t.objs.Hists.Iterate()
	for iter.Next(&key, &val) {
		out = append(out, Histogram{Key: histKeyOf(key), HistCounts: histCountsOf(val), Waits: waits[key]})
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("reading the histograms: %w", err)
	}
	if err := t.objs.HistOverflow.Lookup(uint32(0), &val); err != nil {
		return nil, fmt.Errorf("reading the overflow histogram: %w", err)
	}
	if val.SumNs != 0 || slices.ContainsFunc(val.Buckets[:], func(n uint32) bool { return n != 0 }) {
		out = append(out, Histogram{Overflow: true, HistCounts: histCountsOf(val)})
	}
	return out, nil
}

// DeleteHistogram frees a histogram's slot, for a process that exited.
func (t *Tracer) DeleteHistogram(key HistKey) error {
	err := t.objs.Hists.Delete(key.kernel())
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	if err := t.objs.Waits.Delete(key.kernel()); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// AllowExecutable adds exe to the executables traced (when Options.Executables
// was not empty at Start).
func (t *Tracer) AllowExecutable(exe host.FileID) error {
	if err := t.objs.TargetExes.Put(bpf.MonitorExeId{Ino: exe.Ino, Dev: exe.Dev}, uint8(1)); err != nil {
		return fmt.Errorf("adding executable %+v to the target_exes map (at most %d): %w", exe, t.objs.TargetExes.MaxEntries(), err)
	}
	return nil
}

// ForbidExecutable removes exe from the executables traced.
func (t *Tracer) ForbidExecutable(exe host.FileID) error {
	err := t.objs.TargetExes.Delete(bpf.MonitorExeId{Ino: exe.Ino, Dev: exe.Dev})
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// Losses reads the lost records of each process that lost any, by pid.
func (t *Tracer) Losses() (map[int]Loss, error) {
	out := map[int]Loss{}
	var (
		pid  uint32
		loss bpf.MonitorLoss
	)
	iter := t.objs.Losses.Iterate()
	for iter.Next(&pid, &loss) {
		out[int(pid)] = Loss{OverBudget: loss.OverBudget, RingbufFull: loss.RingbufFull}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("reading the losses map: %w", err)
	}
	return out, nil
}

// ForgetLosses deletes pid's entry in the losses table, making room for another
// process: call it once pid has exited and its last losses were read.
func (t *Tracer) ForgetLosses(pid int) error {
	err := t.objs.Losses.Delete(uint32(pid))
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// Executables lists the executables the kernel filter allows.
func (t *Tracer) Executables() ([]host.FileID, error) {
	var (
		out []host.FileID
		key bpf.MonitorExeId
		val uint8
	)
	iter := t.objs.TargetExes.Iterate()
	for iter.Next(&key, &val) {
		out = append(out, host.FileID{Dev: key.Dev, Ino: key.Ino})
	}
	return out, iter.Err()
}
