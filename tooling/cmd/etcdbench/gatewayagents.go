//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"
)

// simAgent is one agent's exporter, handed a batch of batchItems items at the
// rate a step offers.
type simAgent struct {
	node       string // its exporter's name, and the key of what the backend holds from it
	exp        component.Component
	send       func(ctx context.Context, i int) (items int, err error) // hands the exporter the i-th batch
	batchItems int
	taken      atomic.Int64
	refused    atomic.Int64
}

// agentNode is the i-th agent's name: its exporter's, and its records' host.name.
func agentNode(i int) string { return fmt.Sprintf("node-%02d", i+1) }

// agentExporters creates and starts n of examples/otlp.yaml's otlp_grpc
// exporters, each named for its node, with create's signal.
func agentExporters[E component.Component](ctx context.Context, root, gateway string, n int, logger *zap.Logger, meters *sdkmetric.MeterProvider,
	create func(context.Context, exporter.Settings, component.Config) (E, error)) ([]E, error) {
	exporterConf, err := agentExporterConfig(root, gateway)
	if err != nil {
		return nil, err
	}
	f := otlpexporter.NewFactory()
	var out []E
	for i := range n {
		node := agentNode(i)
		cfg := f.CreateDefaultConfig()
		if err := exporterConf.Unmarshal(cfg); err != nil {
			return nil, fmt.Errorf("examples/otlp.yaml's otlp_grpc exporter: %w", err)
		}
		// One exporter ID per agent: its counters carry exporter=otlp_grpc/<node>.
		set := exportertest.NewNopSettings(f.Type())
		set.ID = component.NewIDWithName(f.Type(), node)
		set.Logger = logger.With(zap.String("agent", node))
		set.MeterProvider = meters
		exp, err := create(ctx, set, cfg)
		if err != nil {
			return nil, err
		}
		if err := exp.Start(ctx, componenttest.NewNopHost()); err != nil {
			return nil, err
		}
		out = append(out, exp)
	}
	return out, nil
}

// agentExporterConfig is examples/otlp.yaml's otlp_grpc exporter, sending to gateway.
func agentExporterConfig(root, gateway string) (*confmap.Conf, error) {
	data, err := os.ReadFile(filepath.Join(root, "examples", "otlp.yaml"))
	if err != nil {
		return nil, err
	}
	var doc struct {
		Exporters map[string]map[string]any `yaml:"exporters"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	m, ok := doc.Exporters["otlp_grpc"]
	if !ok {
		return nil, fmt.Errorf("examples/otlp.yaml has no otlp_grpc exporter")
	}
	m["endpoint"] = gateway
	m["tls"] = map[string]any{"insecure": true}
	return confmap.NewFromStringMap(m), nil
}

// stream hands the exporter a batch every batchItems/rate seconds until stop,
// as the agent's pipeline would at that rate.
func (a *simAgent) stream(ctx context.Context, rate float64, stop <-chan struct{}) {
	t := time.NewTicker(time.Duration(float64(time.Second) * float64(a.batchItems) / rate))
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if n, err := a.send(ctx, i); err != nil {
			a.refused.Add(int64(n))
		} else {
			a.taken.Add(int64(n))
		}
	}
}

// agentTelemetry is the agents' exporters' own counters and gauges, summed
// over the agents, and the items each one's exporter had acknowledged.
type agentTelemetry struct {
	total      map[string]float64
	sentByNode map[string]float64
}

func agentCounters(ctx context.Context, reader *sdkmetric.ManualReader, sig gatewaySignal) (agentTelemetry, error) {
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		return agentTelemetry{}, fmt.Errorf("the agents' telemetry: %w", err)
	}
	t := agentTelemetry{total: map[string]float64{}, sentByNode: map[string]float64{}}
	add := func(name string, attrs attribute.Set, v float64) {
		t.total[name] += v
		if name != sig.c("otelcol_exporter_sent") {
			return
		}
		if id, ok := attrs.Value("exporter"); ok {
			_, node, _ := strings.Cut(id.AsString(), "/")
			t.sentByNode[node] += v
		}
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					add(m.Name, p.Attributes, float64(p.Value))
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					add(m.Name, p.Attributes, float64(p.Value))
				}
			}
		}
	}
	return t, nil
}

func fileLogger(path string) (*zap.Logger, error) {
	cfg := zap.NewProductionConfig()
	cfg.OutputPaths = []string{path}
	cfg.Sampling = nil // every failed export, not the first few a second
	return cfg.Build()
}
