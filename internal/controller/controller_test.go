//go:build linux && (amd64 || arm64)

package controller

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/etcdebpf/etcdebpfreceiver/internal/convert"
	"github.com/etcdebpf/etcdebpfreceiver/internal/metadatatest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// harness is a controller over a fake session, with its sinks, telemetry and logs.
type harness struct {
	session *fakeSession
	ctrl    *Controller
	logs    *consumertest.LogsSink
	metrics *consumertest.MetricsSink
	tel     *componenttest.Telemetry
	logged  *observer.ObservedLogs
	opened  time.Time // when open attached the fake programs
}

// settings are a receiver's, with observed logs and test telemetry.
func settings(t *testing.T) (receiver.Settings, *componenttest.Telemetry, *observer.ObservedLogs) {
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	set := metadatatest.NewSettings(tel)
	core, logged := observer.New(zap.InfoLevel)
	set.Logger = zap.New(core)
	return set, tel, logged
}

// newHarness starts a controller of both signals over a fake session; open takes
// a few milliseconds after attaching, as loading the real programs does.
func newHarness(t *testing.T, edit func(*harness, *Config)) *harness {
	set, tel, logged := settings(t)
	h := &harness{session: newFakeSession(t), logs: new(consumertest.LogsSink), metrics: new(consumertest.MetricsSink),
		tel: tel, logged: logged}
	cfg := Config{
		Logs: h.logs, Decode: true, MaxBatchSize: 1024, FlushInterval: 10 * time.Millisecond,
		Metrics: h.metrics, CollectionInterval: time.Hour,
	}
	if edit != nil {
		edit(h, &cfg)
	}
	open := func(tracer.Options) (Session, error) {
		h.opened = time.Now() // the programs count calls from here
		time.Sleep(5 * time.Millisecond)
		return h.session, nil
	}
	var err error
	h.ctrl, err = New(set, cfg, open)
	require.NoError(t, err)
	require.NoError(t, h.ctrl.Start())
	return h
}

// stop drains and closes the controller, as a receiver's Shutdown does.
func (h *harness) stop(t *testing.T) {
	require.NoError(t, h.ctrl.Drain(context.Background()))
	require.NoError(t, h.ctrl.Close())
}

// points is one data point of value v, for self-telemetry assertions.
func points(v int64) []metricdata.DataPoint[int64] { return []metricdata.DataPoint[int64]{{Value: v}} }

// record is a record of a write by pid.
func record(pid uint32) tracer.Record {
	return tracer.NewRecord(tracer.RecordFields{Syscall: tracer.SyscallWrite, FDKind: tracer.FDKindFile,
		PID: pid, TID: pid, Count: 10, Ret: 10, Offset: -1, Comm: "etcd"})
}

// Start, Drain, Close: every record queued before Drain reaches the pipeline,
// the programs are detached first, and Close closes the session.
func TestDrainDeliversWhatTheRingHolds(t *testing.T) {
	h := newHarness(t, func(_ *harness, cfg *Config) { cfg.FlushInterval = time.Hour })
	const records = 300
	for range records {
		h.session.records <- record(42)
	}
	require.NoError(t, h.ctrl.Drain(context.Background()))
	assert.True(t, h.session.detached, "Drain detaches before it flushes")
	assert.Equal(t, records, h.logs.LogRecordCount(), "Drain delivers every record the ring held")
	assert.False(t, h.session.closed, "Drain leaves the session open")
	require.NoError(t, h.ctrl.Drain(context.Background()), "a second Drain does nothing")
	require.NoError(t, h.ctrl.Close())
	assert.True(t, h.session.closed)
	metadatatest.AssertEqualEtcdebpfRecordsRead(t, h.tel, points(records), metricdatatest.IgnoreTimestamp())
}

// The self-telemetry's callbacks read the session, so they
// must be unregistered before the session is closed; a collection between the two
// read freed maps.
func TestCloseUnregistersTelemetryBeforeClosingTheSession(t *testing.T) {
	h := newHarness(t, nil)
	h.session.counters.Calls = 7
	metadatatest.AssertEqualEtcdebpfCallsTraced(t, h.tel, points(7), metricdatatest.IgnoreTimestamp())
	h.session.afterClose = func() {
		_, _ = h.tel.GetMetric("otelcol_etcdebpf_calls_traced") // a collection right after the session closed
	}
	h.stop(t) // the fake fails the test if Counters runs on the closed session
}

// exitingProcess is a real process the test ends: exit is what the host watch checks.
func exitingProcess(t *testing.T) (pid int, exit func()) {
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid, func() {
		require.NoError(t, cmd.Process.Kill())
		_ = cmd.Wait() // reaped: the pid is gone
	}
}

// maxCount is the largest count any batch reported for pid's write histogram.
func maxCount(sink *consumertest.MetricsSink, pid int) uint64 {
	var n uint64
	for _, md := range sink.AllMetrics() {
		for _, rm := range md.ResourceMetrics().All() {
			if p, _ := rm.Resource().Attributes().Get(convert.AttrProcessPID); p.Int() != int64(pid) {
				continue
			}
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					if m.Name() == convert.MetricDuration {
						for _, dp := range m.ExponentialHistogram().DataPoints().All() {
							n = max(n, dp.Count())
						}
					}
				}
			}
		}
	}
	return n
}

// Calls a process makes between the read of the histograms
// and its exit are counted. The exit is decided before the read, so a histogram is
// deleted only when what was read of it is final.
func TestMetricsCountCallsMadeBetweenTheReadAndTheExit(t *testing.T) {
	pid, exit := exitingProcess(t)
	key := tracer.HistKey{PID: uint32(pid), Syscall: tracer.SyscallWrite, FDKind: tracer.FDKindFile, FileClass: tracer.FileClassWAL}
	const before, after = 5, 3
	exited := make(chan struct{})
	h := newHarness(t, func(h *harness, cfg *Config) {
		cfg.CollectionInterval = 20 * time.Millisecond
		h.session.count(key, before)
		h.session.afterHistograms = func() { // the first collection meets the process
			h.session.afterHistograms = func() { // the second one: its last calls, then its exit
				h.session.count(key, after)
				exit()
				close(exited)
			}
		}
	})
	<-exited
	h.stop(t)
	assert.EqualValues(t, before+after, maxCount(h.metrics, pid), "every call of the exited process is reported")
	assert.Empty(t, h.session.hists, "the exited process's histogram is deleted once its final counts were read")
}

// In the loss log: records a process lost between the read
// of the losses and its exit are in its last line.
func TestLossesCountedUpToTheExit(t *testing.T) {
	pid, exit := exitingProcess(t)
	const before, after = 50, 7
	exited := make(chan struct{})
	h := newHarness(t, func(h *harness, _ *Config) {
		h.session.lose(pid, before)
		h.session.afterLosses = func() { // the first check meets the process and logs its losses
			h.session.afterLosses = func() { // the second: its last losses, then its exit
				h.session.lose(pid, after)
				exit()
				close(exited)
			}
		}
	})
	<-exited
	h.stop(t) // Close's last check
	var logged uint64
	for _, l := range h.logged.FilterMessage("A traced process lost records").All() {
		logged += l.ContextMap()["over_budget"].(uint64)
	}
	assert.EqualValues(t, before+after, logged, "the lines add up to every record the process lost")
	assert.Empty(t, h.session.losses, "the exited process's entry is freed once its final losses were read")
}

// The metrics' StartTimestamp is no later than the first
// call they count, which can come as soon as the programs are attached.
func TestMetricsStartBeforeTheProgramsAttach(t *testing.T) {
	key := tracer.HistKey{PID: 1, Syscall: tracer.SyscallFsync, FDKind: tracer.FDKindFile, FileClass: tracer.FileClassWAL}
	h := newHarness(t, func(h *harness, _ *Config) { h.session.count(key, 1) })
	h.stop(t)
	require.NotEmpty(t, h.metrics.AllMetrics())
	dp := h.metrics.AllMetrics()[0].ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).ExponentialHistogram().DataPoints().At(0)
	assert.LessOrEqual(t, dp.StartTimestamp(), pcommon.NewTimestampFromTime(h.opened),
		"StartTimestamp %v, programs attached at %v", dp.StartTimestamp().AsTime(), h.opened)
}

// A reader that stops on a read error is reported: a permanent error through
// component status and the failures counter, not a log line only while the
// receiver looks healthy and the records go nowhere.
func TestReaderFailureReportedThroughStatusAndCounter(t *testing.T) {
	events := make(chan *componentstatus.Event, 1)
	h := newHarness(t, func(_ *harness, cfg *Config) {
		cfg.ReportStatus = func(ev *componentstatus.Event) { events <- ev }
	})
	h.session.records <- record(42)
	readErr := errors.New("epoll_wait: bad file descriptor")
	h.session.readErr <- readErr
	select {
	case ev := <-events:
		assert.Equal(t, componentstatus.StatusPermanentError, ev.Status())
		require.ErrorIs(t, ev.Err(), readErr)
	case <-time.After(10 * time.Second):
		t.Fatal("no status event 10 s after the read failed")
	}
	h.stop(t)
	metadatatest.AssertEqualEtcdebpfRecordReaderFailures(t, h.tel, points(1), metricdatatest.IgnoreTimestamp())
	assert.Equal(t, 1, h.logs.LogRecordCount(), "what was read before the failure is delivered")
}

// A record that does not decode is counted as read and malformed, logged with
// why, and skipped: the reader goes on to the records after it.
func TestMalformedRecordCountedAndSkipped(t *testing.T) {
	h := newHarness(t, func(_ *harness, cfg *Config) { cfg.FlushInterval = time.Hour })
	h.session.records <- record(42)
	h.session.readErr <- fmt.Errorf("%w: 3 bytes, shorter than the 232-byte event", tracer.ErrMalformedRecord)
	require.Eventually(t, func() bool { return len(h.session.readErr) == 0 }, 10*time.Second, time.Millisecond)
	h.session.records <- record(42)
	h.stop(t)
	assert.Equal(t, 2, h.logs.LogRecordCount(), "the records around the malformed one are delivered")
	metadatatest.AssertEqualEtcdebpfRecordsRead(t, h.tel, points(3), metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualEtcdebpfRecordsMalformed(t, h.tel, points(1), metricdatatest.IgnoreTimestamp())
	_, err := h.tel.GetMetric("otelcol_etcdebpf_record_reader_failures")
	assert.Error(t, err, "the reader did not stop")
	dropped := h.logged.FilterMessage("Dropped malformed records").All()
	require.Len(t, dropped, 1)
	assert.Contains(t, dropped[0].ContextMap()["error"], "shorter than the 232-byte event")
}

// takenOverSession is a session that took pinned programs over: they have
// counted since start, before this controller's Start.
type takenOverSession struct {
	*fakeSession
	start time.Time
}

func (s takenOverSession) StartTime() time.Time { return s.start }

func (s takenOverSession) Pinned() (tracer.PinReport, bool) {
	return tracer.PinReport{Path: "/sys/fs/bpf/etcdebpf", TookOver: true, MapBytes: 1 << 20}, true
}

// A session that took pinned programs over is counting since their start: the
// metrics continue under that StartTimestamp, not the controller's Start, and
// the log says the agent took over.
func TestMetricsOfATakenOverSessionKeepItsStart(t *testing.T) {
	set, _, logged := settings(t)
	session := newFakeSession(t)
	// pid 1 started at boot, before the session: its series start with the session.
	key := tracer.HistKey{PID: 1, Syscall: tracer.SyscallFdatasync, FDKind: tracer.FDKindFile, FileClass: tracer.FileClassWAL}
	session.count(key, 3)
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	metrics := new(consumertest.MetricsSink)
	ctrl, err := New(set, Config{Metrics: metrics, CollectionInterval: time.Hour}, func(tracer.Options) (Session, error) {
		return takenOverSession{session, start}, nil
	})
	require.NoError(t, err)
	require.NoError(t, ctrl.Start())
	require.NoError(t, ctrl.Drain(context.Background()))
	require.NoError(t, ctrl.Close())
	require.NotEmpty(t, metrics.AllMetrics())
	dp := metrics.AllMetrics()[0].ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).ExponentialHistogram().DataPoints().At(0)
	assert.Equal(t, start, dp.StartTimestamp().AsTime().Local(), "the pinned programs' start")
	assert.EqualValues(t, 3, dp.Count())
	took := logged.FilterMessageSnippet("Took over the programs pinned").All()
	require.Len(t, took, 1)
	assert.Equal(t, "/sys/fs/bpf/etcdebpf", took[0].ContextMap()["pin_path"])
}
