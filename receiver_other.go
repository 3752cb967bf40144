//go:build !linux

package etcdebpfreceiver

import (
	"context"
	"errors"
	"runtime"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
)

// etcdReceiver exists on Linux only; this one satisfies the factory's code.
type etcdReceiver struct {
	next    consumer.Logs
	metrics consumer.Metrics
	release func()
}

func (*etcdReceiver) Start(context.Context, component.Host) error { return nil }
func (*etcdReceiver) Shutdown(context.Context) error              { return nil }

func newReceiver(receiver.Settings, *Config) (*etcdReceiver, error) {
	return nil, errors.New("etcdebpf: this collector runs on " + runtime.GOOS + ", and the receiver needs Linux 5.10 or newer with BTF: run the collector on Linux, or remove the etcdebpf receiver from its pipelines")
}
