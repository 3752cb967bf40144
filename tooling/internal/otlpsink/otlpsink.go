// Package otlpsink is a minimal OTLP/gRPC backend on loopback: the official
// plogotlp and pmetricotlp gRPC services, storing every plog.Logs and
// pmetric.Metrics it receives. The demo and the end-to-end tests point a real
// collector's OTLP exporter at it.
package otlpsink

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	_ "go.opentelemetry.io/collector/config/configgrpc" // registers the exporter's other compressions: snappy, zstd
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // the OTLP exporter compresses with gzip by default
	"google.golang.org/grpc/stats"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/logtest"
)

// Sink is a running OTLP/gRPC logs and metrics server. It is safe for concurrent use.
type Sink struct {
	plogotlp.UnimplementedGRPCServer

	srv *grpc.Server
	lis net.Listener

	mu      sync.Mutex
	cond    *sync.Cond
	batches []plog.Logs
	records int
	metrics []pmetric.Metrics
	onLogs  func(plog.Logs)
	discard bool
	wire    atomic.Int64 // bytes of request messages as received, compressed
}

// Option configures a Sink.
type Option func(*Sink)

// WithCallback calls fn with every batch as it arrives, after it is stored.
// fn must not modify the logs; calls are serialized.
func WithCallback(fn func(plog.Logs)) Option { return func(s *Sink) { s.onLogs = fn } }

// CountOnly makes the Sink count records and keep nothing: for runs of millions
// of records (a benchmark), whose copies would cost memory and CPU.
func CountOnly() Option { return func(s *Sink) { s.discard = true } }

// Start listens on addr (for example "127.0.0.1:0") and serves until Stop.
func Start(addr string, opts ...Option) (*Sink, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("otlpsink: listening on %s: %w", addr, err)
	}
	s := &Sink{lis: lis}
	// gRPC's default limit, 4 MiB, is smaller than an uncompressed batch of 8192
	// records (the batch processor's default size): a backend must not refuse it.
	s.srv = grpc.NewServer(grpc.StatsHandler(wireCounter{&s.wire}), grpc.MaxRecvMsgSize(256<<20))
	s.cond = sync.NewCond(&s.mu)
	for _, o := range opts {
		o(s)
	}
	plogotlp.RegisterGRPCServer(s.srv, s)
	pmetricotlp.RegisterGRPCServer(s.srv, &metricsService{s: s})
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

// Endpoint is host:port of the server, as an OTLP exporter's endpoint.
func (s *Sink) Endpoint() string { return s.lis.Addr().String() }

// Export implements plogotlp.GRPCServer.
func (s *Sink) Export(_ context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	if s.discard {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.records += req.Logs().LogRecordCount()
		s.cond.Broadcast()
		return plogotlp.NewExportResponse(), nil
	}
	logs := plog.NewLogs()
	req.Logs().CopyTo(logs) // the request's memory belongs to gRPC after we return
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, logs)
	s.records += logs.LogRecordCount()
	if s.onLogs != nil {
		s.onLogs(logs)
	}
	s.cond.Broadcast()
	return plogotlp.NewExportResponse(), nil
}

// metricsService is the sink's pmetricotlp.GRPCServer (its Export would clash
// with the logs service's on Sink itself).
type metricsService struct {
	pmetricotlp.UnimplementedGRPCServer
	s *Sink
}

// Export implements pmetricotlp.GRPCServer.
func (m *metricsService) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	metrics := pmetric.NewMetrics()
	req.Metrics().CopyTo(metrics) // the request's memory belongs to gRPC after we return
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if !m.s.discard {
		m.s.metrics = append(m.s.metrics, metrics)
	}
	return pmetricotlp.NewExportResponse(), nil
}

// Metrics returns the metrics batches received so far, oldest first.
func (s *Sink) Metrics() []pmetric.Metrics {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]pmetric.Metrics(nil), s.metrics...)
}

// Logs returns the batches received so far, oldest first.
func (s *Sink) Logs() []plog.Logs {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]plog.Logs(nil), s.batches...)
}

// RecordCount is the number of log records received so far.
func (s *Sink) RecordCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records
}

// Records returns every log record received so far, in arrival order.
func (s *Sink) Records() []logtest.Record {
	var out []logtest.Record
	for _, logs := range s.Logs() {
		out = append(out, logtest.Flatten(logs)...)
	}
	return out
}

// WaitFor blocks until at least n records have arrived or ctx ends, and
// reports whether n were reached.
func (s *Sink) WaitFor(ctx context.Context, n int) bool {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.cond.Broadcast()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.records < n && ctx.Err() == nil {
		s.cond.Wait()
	}
	return s.records >= n
}

// WireBytes is the size of the requests received so far as they came over the
// wire: compressed, when the client compressed them.
func (s *Sink) WireBytes() int64 { return s.wire.Load() }

// wireCounter adds up the wire length of every message the server receives.
type wireCounter struct{ n *atomic.Int64 }

func (w wireCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (w wireCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (w wireCounter) HandleConn(context.Context, stats.ConnStats)                       {}
func (w wireCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InPayload); ok {
		w.n.Add(int64(in.WireLength))
	}
}

// Stop closes the listener and ends every call in progress.
func (s *Sink) Stop() { s.srv.Stop() }
