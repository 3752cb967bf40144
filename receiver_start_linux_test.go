//go:build linux && (amd64 || arm64)

package etcdebpfreceiver

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"
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
			assert.Nil(t, rcv.(*etcdReceiver).ctrl, "nothing is running")
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
