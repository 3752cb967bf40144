package etcdebpfreceiver // import "github.com/etcdebpf/etcdebpfreceiver"

import (
	"context"
	"errors"

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
	)
}

func createLogs(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Logs) (receiver.Logs, error) {
	c, ok := cfg.(*Config)
	if !ok {
		return nil, errors.New("etcdebpf: configuration is not an etcdebpf receiver configuration")
	}
	return newLogsReceiver(set, c, next)
}
