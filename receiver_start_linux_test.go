//go:build linux

package etcdebpfreceiver

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

const startFailureMessage = "Cannot trace etcd: this receiver stays idle, the rest of the collector runs on (error_mode: ignore)"

// reportingHost is a component.Host that implements componentstatus.Reporter
// and records what is reported.
type reportingHost struct {
	component.Host
	mu     sync.Mutex
	events []*componentstatus.Event
}

func (h *reportingHost) Report(ev *componentstatus.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, ev)
}

func (h *reportingHost) reported() []*componentstatus.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*componentstatus.Event(nil), h.events...)
}

// A receiver that cannot trace fails Start under error_mode: propagate (the
// default); under ignore it reports a permanent error through the host, logs it
// and stays idle. Either way nothing is left running.
func TestStartFailureByErrorMode(t *testing.T) {
	bpftest.RequireBPF(t) // as non-root an earlier step would fail instead
	for _, mode := range []ErrorMode{ErrorModePropagate, ErrorModeIgnore} {
		t.Run(string(mode), func(t *testing.T) {
			missing := filepath.Join(t.TempDir(), "missing")
			cfg := createDefaultConfig()
			cfg.CgroupPath = missing
			cfg.ErrorMode = mode
			require.NoError(t, cfg.Validate(), "the config is valid: the path is only checked at Start")

			core, logs := observer.New(zapcore.InfoLevel)
			set := receivertest.NewNopSettings(metadata.Type)
			set.Logger = zap.New(core, zap.AddStacktrace(zapcore.ErrorLevel)) // as the collector's logger
			sink := new(consumertest.LogsSink)
			rcv, err := NewFactory().CreateLogs(context.Background(), set, cfg, sink)
			require.NoError(t, err)
			host := &reportingHost{Host: componenttest.NewNopHost()}

			err = rcv.Start(context.Background(), host)
			assert.Nil(t, rcv.(*etcdReceiver).tracer, "nothing is running")
			switch mode {
			case ErrorModePropagate:
				require.Error(t, err, "the collector must learn that this receiver cannot trace")
				assert.Contains(t, err.Error(), "etcdebpf: cgroup_path")
				assert.Contains(t, err.Error(), missing)
				assert.Contains(t, err.Error(), "error_mode: ignore", "the error names the other mode")
				assert.NotContains(t, err.Error(), "\n", "one line")
				assert.Empty(t, host.reported(), "the collector reports a failed Start itself")
				assert.Empty(t, logs.All(), "the collector prints the error itself")
			case ErrorModeIgnore:
				require.NoError(t, err, "error_mode: ignore must not stop the collector")
				events := host.reported()
				require.Len(t, events, 1, "exactly one status event")
				assert.Equal(t, componentstatus.StatusPermanentError, events[0].Status())
				require.Error(t, events[0].Err())
				assert.Contains(t, events[0].Err().Error(), "etcdebpf: cgroup_path")
				assert.Contains(t, events[0].Err().Error(), missing)

				errorLogs := logs.FilterLevelExact(zapcore.ErrorLevel).All()
				require.Len(t, errorLogs, 1, "one error logged")
				assert.Equal(t, startFailureMessage, errorLogs[0].Message)
				assert.Contains(t, errorLogs[0].ContextMap()["error"], missing, "the log names the path")
				assert.Empty(t, errorLogs[0].Stack, "an expected failure is logged without a stack trace")
			}
			assert.Empty(t, logs.FilterMessage("Tracing etcd write and sync syscalls").All(), "no claim that tracing started")

			reported := len(host.reported())
			require.NoError(t, rcv.Shutdown(context.Background()), "Shutdown after a failed Start")
			assert.Zero(t, sink.LogRecordCount())
			assert.Len(t, host.reported(), reported, "Shutdown reports nothing more")
		})
	}
}

// sinkExporter hands what it receives to a consumertest.LogsSink.
type sinkExporter struct {
	component.StartFunc
	component.ShutdownFunc
	*consumertest.LogsSink
}

type emptyConfig struct{}

// sinkExporterFactory creates exporters of type "sink"; each instance delivers to
// the sink named after its id (sink/good goes to sinks["good"]).
func sinkExporterFactory(sinks map[string]*consumertest.LogsSink) exporter.Factory {
	return exporter.NewFactory(component.MustNewType("sink"),
		func() component.Config { return &emptyConfig{} },
		exporter.WithLogs(func(_ context.Context, set exporter.Settings, _ component.Config) (exporter.Logs, error) {
			s, ok := sinks[set.ID.Name()]
			if !ok {
				return nil, fmt.Errorf("no sink for %s", set.ID)
			}
			return sinkExporter{LogsSink: s}, nil
		}, component.StabilityLevelDevelopment))
}

// statusWatcher is an extension that records the last status of each receiver,
// as a health-check extension would see it.
type statusWatcher struct {
	component.StartFunc
	component.ShutdownFunc
	mu   sync.Mutex
	last map[component.ID]*componentstatus.Event
}

// Changed implements extensioncapabilities.ComponentStatusWatcher.
func (w *statusWatcher) Changed(source *componentstatus.InstanceID, ev *componentstatus.Event) {
	if source.Kind() != component.KindReceiver {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last[source.ComponentID()] = ev
}

func (w *statusWatcher) status(id component.ID) *componentstatus.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last[id]
}

// Under error_mode: ignore, one etcdebpf receiver that cannot start must not take
// down the collector: its pipeline stays empty while another pipeline keeps
// delivering.
func TestCollectorRunsOnWhenOneReceiverFails(t *testing.T) {
	bpftest.RequireBPF(t)
	missing := filepath.Join(t.TempDir(), "missing")

	// The good receiver traces a dd named etcd, selected by pid, that writes
	// whatever the test feeds its stdin.
	out := filepath.Join(t.TempDir(), "good.wal")
	dd := exec.Command(bpftest.NamedCopy(t, "dd", "etcd"), "of="+out, "bs=512", "oflag=dsync", "status=none")
	feed, err := dd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, dd.Start())
	t.Cleanup(func() {
		feed.Close()
		_ = dd.Wait()
	})

	config := fmt.Sprintf(`
extensions:
  statuswatch:
receivers:
  etcdebpf/broken:
    cgroup_path: %q
    error_mode: ignore
  etcdebpf/good:
    pids: [%d]
    ring_buffer_size: 1048576
    flush_interval: 20ms
exporters:
  sink/broken:
  sink/good:
service:
  extensions: [statuswatch]
  telemetry:
    metrics:
      level: none
  pipelines:
    logs/broken:
      receivers: [etcdebpf/broken]
      exporters: [sink/broken]
    logs/good:
      receivers: [etcdebpf/good]
      exporters: [sink/good]
`, missing, dd.Process.Pid)

	sinks := map[string]*consumertest.LogsSink{"good": new(consumertest.LogsSink), "broken": new(consumertest.LogsSink)}
	watcher := &statusWatcher{last: map[component.ID]*componentstatus.Event{}}
	factories := func() (otelcol.Factories, error) {
		receivers, err := otelcol.MakeFactoryMap[receiver.Factory](NewFactory())
		if err != nil {
			return otelcol.Factories{}, err
		}
		exporters, err := otelcol.MakeFactoryMap[exporter.Factory](sinkExporterFactory(sinks))
		if err != nil {
			return otelcol.Factories{}, err
		}
		extensions, err := otelcol.MakeFactoryMap[extension.Factory](extension.NewFactory(component.MustNewType("statuswatch"),
			func() component.Config { return &emptyConfig{} },
			func(context.Context, extension.Settings, component.Config) (extension.Extension, error) {
				return watcher, nil
			},
			component.StabilityLevelDevelopment))
		if err != nil {
			return otelcol.Factories{}, err
		}
		return otelcol.Factories{
			Receivers:  receivers,
			Exporters:  exporters,
			Extensions: extensions,
			Telemetry:  otelconftelemetry.NewFactory(),
		}, nil
	}

	core, logs := observer.New(zapcore.InfoLevel)
	col, err := otelcol.NewCollector(otelcol.CollectorSettings{
		BuildInfo: component.NewDefaultBuildInfo(),
		Factories: factories,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{ResolverSettings: confmap.ResolverSettings{
			URIs:              []string{"yaml:" + config},
			ProviderFactories: []confmap.ProviderFactory{yamlprovider.NewFactory()},
		}},
		DisableGracefulShutdown: true, // no signal handlers in a test
		SkipSettingGRPCLogger:   true,
		LoggingOptions: []zap.Option{zap.WrapCore(func(c zapcore.Core) zapcore.Core {
			return zapcore.NewTee(c, core)
		})},
	})
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- col.Run(context.Background()) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		col.Shutdown()
		select {
		case err := <-runErr:
			require.NoError(t, err, "the collector shuts down cleanly")
		case <-time.After(30 * time.Second):
			t.Fatal("the collector did not stop")
		}
	}
	t.Cleanup(stop)

	require.Eventually(t, func() bool {
		select {
		case err := <-runErr:
			runErr <- err
			return true
		default:
			return col.GetState() == otelcol.StateRunning
		}
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, otelcol.StateRunning, col.GetState(), "the collector runs although etcdebpf/broken cannot trace")

	// The failure is visible: logged with the component's id, and reported as
	// a permanent error to status watchers (health checks).
	broken, good := component.MustNewIDWithName("etcdebpf", "broken"), component.MustNewIDWithName("etcdebpf", "good")
	failures := logs.FilterMessage(startFailureMessage).All()
	require.Len(t, failures, 1, "one receiver failed")
	assert.Equal(t, zapcore.ErrorLevel, failures[0].Level)
	assert.Empty(t, failures[0].Stack, "an expected failure is logged without a stack trace")
	fields := failures[0].ContextMap()
	assert.Contains(t, fields["error"], missing)
	assert.Contains(t, fmt.Sprint(fields), broken.String(), "the log names the failing receiver: %v", fields)
	require.Eventually(t, func() bool { return watcher.status(good) != nil }, 5*time.Second, 10*time.Millisecond)
	if ev := watcher.status(broken); assert.NotNil(t, ev) {
		assert.Equal(t, componentstatus.StatusPermanentError, ev.Status())
		assert.ErrorContains(t, ev.Err(), missing)
	}
	assert.Equal(t, componentstatus.StatusOK, watcher.status(good).Status())

	// The good pipeline delivers.
	pid := int64(dd.Process.Pid)
	fromDD := func() int {
		n := 0
		for _, lr := range allRecords(sinks["good"]) {
			if lr.Int(attrProcessPID) == pid && lr.Body().Str() == "write" {
				n++
			}
		}
		return n
	}
	const chunks = 20
	for range chunks {
		_, err := io.WriteString(feed, strings.Repeat("x", 512))
		require.NoError(t, err)
		time.Sleep(5 * time.Millisecond) // one read, one write each
	}
	require.Eventually(t, func() bool { return fromDD() >= chunks }, 10*time.Second, 20*time.Millisecond,
		"the good pipeline delivers the dd's writes")
	assert.Equal(t, otelcol.StateRunning, col.GetState())
	assert.Zero(t, sinks["broken"].LogRecordCount(), "the broken receiver delivers nothing")

	stop()
	assert.Equal(t, otelcol.StateClosed, col.GetState())
}
