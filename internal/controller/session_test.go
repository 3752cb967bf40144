//go:build linux && (amd64 || arm64)

package controller

import (
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// fakeSession stands in for the kernel session where the test is the order of
// calls: it keeps the kernel's tables in memory and fails the test when it is
// read after Close, as the real one dereferences freed maps then.
type fakeSession struct {
	t       *testing.T
	records chan tracer.Record // what the ring buffer holds
	readErr chan error         // the next read fails with what is sent
	flushed chan struct{}      // closed by FlushRecords
	closeCh chan struct{}      // closed by Close

	mu       sync.Mutex
	deadline time.Time
	hists    map[tracer.HistKey]tracer.HistCounts
	losses   map[int]tracer.Loss
	counters tracer.Counters
	detached bool
	closed   bool
	// Hooks run after a read was answered, before the answer is returned: the
	// kernel and the host moving on while the controller holds the answer.
	afterHistograms func()
	afterLosses     func()
	afterClose      func() // runs at the end of Close: a reader in that window finds the session closed
}

func newFakeSession(t *testing.T) *fakeSession {
	return &fakeSession{
		t:       t,
		records: make(chan tracer.Record, 1024),
		readErr: make(chan error, 1),
		flushed: make(chan struct{}),
		closeCh: make(chan struct{}),
		hists:   map[tracer.HistKey]tracer.HistCounts{},
		losses:  map[int]tracer.Loss{},
	}
}

// use reports a read of the session after Close: the test fails.
func (f *fakeSession) use(what string) error {
	if f.closed {
		f.t.Errorf("%s read the session after Close", what)
		return errors.New("session closed")
	}
	return nil
}

func (f *fakeSession) ReadRecord() (tracer.Record, error) {
	f.mu.Lock()
	deadline := f.deadline
	f.mu.Unlock()
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case rec := <-f.records:
		return rec, nil
	default:
	}
	select {
	case rec := <-f.records:
		return rec, nil
	case <-f.flushed:
		select {
		case rec := <-f.records:
			return rec, nil
		default:
			return tracer.Record{}, tracer.ErrFlushed
		}
	case <-f.closeCh:
		return tracer.Record{}, tracer.ErrClosed
	case err := <-f.readErr:
		return tracer.Record{}, err
	case <-timeout:
		return tracer.Record{}, os.ErrDeadlineExceeded
	}
}

func (f *fakeSession) SetReadDeadline(d time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deadline = d
}

func (f *fakeSession) FlushRecords() error {
	close(f.flushed)
	return nil
}

func (f *fakeSession) PendingRecords() int { return len(f.records) }

// RingBytes counts each queued record as ringRecordBytes of a ring of cap(records) of them.
func (f *fakeSession) RingBytes() (pending, size int) {
	return len(f.records) * ringRecordBytes, cap(f.records) * ringRecordBytes
}

const ringRecordBytes = 64

func (f *fakeSession) Histograms() ([]tracer.Histogram, error) {
	f.mu.Lock()
	if err := f.use("Histograms"); err != nil {
		f.mu.Unlock()
		return nil, err
	}
	var out []tracer.Histogram
	for k, h := range f.hists {
		out = append(out, tracer.Histogram{Key: k, HistCounts: h})
	}
	hook := f.afterHistograms
	f.afterHistograms = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return out, nil
}

func (f *fakeSession) DeleteHistogram(key tracer.HistKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.hists, key)
	return f.use("DeleteHistogram")
}

// count adds n calls of durationNs to the histogram of key, as the kernel does.
func (f *fakeSession) count(key tracer.HistKey, n uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.hists[key]
	h.Buckets[100] += n
	h.SumNs += uint64(n) * 1000
	f.hists[key] = h
}

func (f *fakeSession) Counters() (tracer.Counters, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counters, f.use("Counters")
}

func (f *fakeSession) Losses() (map[int]tracer.Loss, error) {
	f.mu.Lock()
	if err := f.use("Losses"); err != nil {
		f.mu.Unlock()
		return nil, err
	}
	out := map[int]tracer.Loss{}
	for pid, l := range f.losses {
		out[pid] = l
	}
	hook := f.afterLosses
	f.afterLosses = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return out, nil
}

func (f *fakeSession) ForgetLosses(pid int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.losses, pid)
	return f.use("ForgetLosses")
}

// lose adds n records over budget to pid's losses, as the kernel does.
func (f *fakeSession) lose(pid int, n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.losses[pid]
	l.OverBudget += n
	f.losses[pid] = l
}

// The disks' view is off in the fake: Block says so, and nothing reads it then.
func (f *fakeSession) Block() bool                               { return false }
func (f *fakeSession) DiskOps() ([]tracer.DiskOpStats, error)    { return nil, nil }
func (f *fakeSession) Submitters() ([]tracer.Submitter, error)   { return nil, nil }
func (f *fakeSession) ForgetSubmitter(tracer.SubmitterKey) error { return nil }
func (f *fakeSession) BlockCounters() (tracer.BlockCounters, error) {
	return tracer.BlockCounters{}, nil
}

func (f *fakeSession) AllowExecutable(host.FileID) error  { return nil }
func (f *fakeSession) ForbidExecutable(host.FileID) error { return nil }
func (f *fakeSession) RemovePID(int) error                { return nil }

func (f *fakeSession) Detach() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = true
	return nil
}

func (f *fakeSession) Close() error {
	f.mu.Lock()
	if !f.closed {
		close(f.closeCh)
	}
	f.closed = true
	f.mu.Unlock()
	if f.afterClose != nil {
		f.afterClose()
	}
	return nil
}
