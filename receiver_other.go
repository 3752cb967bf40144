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
	return nil, errors.New("the etcdebpf receiver needs Linux with eBPF (kernel 5.8 or newer with BTF); this collector runs on " + runtime.GOOS)
}
