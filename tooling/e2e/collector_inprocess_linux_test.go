//go:build linux

package e2e

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
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/etcdebpf/etcdebpfreceiver"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/logtest"
)

// startFailureMessage is what the receiver logs when it cannot trace under
// error_mode: ignore; operators grep for it, so the test holds it to the letter.
const startFailureMessage = "Cannot trace etcd: this receiver stays idle, the rest of the collector runs on (error_mode: ignore)"

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
		receivers, err := otelcol.MakeFactoryMap[receiver.Factory](etcdebpfreceiver.NewFactory())
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
		for _, lr := range flattenSink(sinks["good"]) {
			if lr.Int("process.pid") == pid && lr.Body().Str() == "write" {
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

// flattenSink is every record a consumertest sink has received.
func flattenSink(sink *consumertest.LogsSink) []logtest.Record {
	var out []logtest.Record
	for _, logs := range sink.AllLogs() {
		out = append(out, logtest.Flatten(logs)...)
	}
	return out
}
