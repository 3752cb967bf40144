//go:build !linux || !(amd64 || arm64)

package etcdebpfreceiver

import (
	"context"
	"errors"
	"runtime"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
)

// etcdReceiver exists on linux/amd64 and linux/arm64 only, where the BPF side's
// 64-bit syscall arguments and bpf2go's objects hold; this one satisfies the
// factory's code elsewhere.
type etcdReceiver struct {
	next    consumer.Logs
	metrics consumer.Metrics
	release func()
}

func (*etcdReceiver) Start(context.Context, component.Host) error { return nil }
func (*etcdReceiver) Shutdown(context.Context) error              { return nil }

func newReceiver(receiver.Settings, *Config) (*etcdReceiver, error) {
	return nil, errors.New("etcdebpf: this collector runs on " + runtime.GOOS + "/" + runtime.GOARCH + ", and the receiver needs " +
		"Linux 5.10 or newer with BTF on amd64 or arm64: run the collector there, or remove the etcdebpf receiver from its pipelines")
}
