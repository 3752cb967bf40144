package etcdebpfreceiver // import "github.com/etcdebpf/etcdebpfreceiver"

import (
	"context"
	"errors"
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"

	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
)

// NewFactory returns the factory of the etcdebpf receiver.
func NewFactory() receiver.Factory {
	return receiver.NewFactory(
		metadata.Type,
		func() component.Config { return createDefaultConfig() },
		receiver.WithLogs(createLogs, metadata.LogsStability),
		receiver.WithMetrics(createMetrics, metadata.MetricsStability),
	)
}

func createLogs(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Logs) (receiver.Logs, error) {
	return shared.get(set, cfg, func(r *etcdReceiver) bool {
		if r.next != nil {
			return false
		}
		r.next = next
		return true
	})
}

func createMetrics(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
	return shared.get(set, cfg, func(r *etcdReceiver) bool {
		if r.metrics != nil {
			return false
		}
		r.metrics = next
		return true
	})
}

// shared holds the receivers created and not yet shut down, by configuration: the
// collector hands the same *Config to every pipeline naming one component ID, so
// a logs and a metrics pipeline get one receiver, as the otlp receiver does.
var shared = sharedReceivers{byConfig: map[*Config]*etcdReceiver{}}

type sharedReceivers struct {
	mu       sync.Mutex
	byConfig map[*Config]*etcdReceiver
}

// get returns the receiver of cfg with a pipeline added by attach, creating the
// receiver when there is none or when attach finds that signal already taken
// (a second receiver of the same signal, as tests create).
func (s *sharedReceivers) get(set receiver.Settings, cfg component.Config, attach func(*etcdReceiver) bool) (*etcdReceiver, error) {
	c, ok := cfg.(*Config)
	if !ok {
		return nil, errors.New("etcdebpf: configuration is not an etcdebpf receiver configuration")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.byConfig[c]; r != nil && attach(r) {
		return r, nil
	}
	r, err := newReceiver(set, c)
	if err != nil {
		return nil, err
	}
	attach(r)
	s.byConfig[c] = r
	r.release = func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.byConfig[c] == r {
			delete(s.byConfig, c)
		}
	}
	return r, nil
}
