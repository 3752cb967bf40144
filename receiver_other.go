//go:build !linux

package etcdebpfreceiver

import (
	"errors"
	"runtime"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
)

func newLogsReceiver(receiver.Settings, *Config, consumer.Logs) (receiver.Logs, error) {
	return nil, errors.New("the etcdebpf receiver needs Linux with eBPF (kernel 5.8 or newer with BTF); this collector runs on " + runtime.GOOS)
}
