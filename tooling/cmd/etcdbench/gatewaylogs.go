//go:build linux

package main

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/convert"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/victoria"
)

// agentBatch is the agent examples' batch processor's send_batch_size.
const agentBatch = 4096

// everyCallRate is etcd's every-call record rate under `benchmark put`
// (the field notes' ~22k records/s per member): the per-node yardstick.
const everyCallRate = 22000

var recordsSignal = gatewaySignal{
	phase: "every call", items: "records", counter: "log_records",
	backend: victoria.Logs, backendEnv: "VICTORIALOGS_URL",
	agents: logsAgents,
	stored: func(ctx context.Context, vl *victoria.Server) (map[string]int64, error) {
		rows, err := vl.LogsQL(ctx, `* | stats by (host.name) count() n`)
		if err != nil {
			return nil, err
		}
		stored := map[string]int64{}
		for _, row := range rows {
			stored[row["host.name"]], _ = strconv.ParseInt(row["n"], 10, 64)
		}
		return stored, nil
	},
	perNode:     everyCallRate,
	perNodeSays: fmt.Sprintf("%d records/s a node, etcd's every-call rate under `benchmark put`", everyCallRate),
	batchSays:   fmt.Sprintf("batches of %d records", agentBatch),
}

// logsAgents are the every-call agents: batches of agentBatch records.
func logsAgents(ctx context.Context, root, gateway string, n int, _ float64, logger *zap.Logger, meters *sdkmetric.MeterProvider) ([]*simAgent, error) {
	exps, err := agentExporters(ctx, root, gateway, n, logger, meters, otlpexporter.NewFactory().CreateLogs)
	if err != nil {
		return nil, err
	}
	var agents []*simAgent
	for i, exp := range exps {
		node := agentNode(i)
		batches := []plog.Logs{etcdBatch(node, uint32(4000+i)), etcdBatch(node, uint32(4000+i))}
		agents = append(agents, &simAgent{node: node, exp: exp, batchItems: agentBatch,
			send: func(ctx context.Context, k int) (int, error) {
				b := batches[k%len(batches)]
				return b.LogRecordCount(), exp.ConsumeLogs(ctx, b)
			}})
		if i == 0 {
			size := (&plog.ProtoMarshaler{}).LogsSize(batches[0])
			logf("gateway phase: a batch of %d records is %d bytes of OTLP protobuf (%.0f a record), %d bytes of heap once decoded",
				agentBatch, size, float64(size)/agentBatch, decodedHeap(batches[0]))
		}
	}
	return agents, nil
}

// etcdBatch is agentBatch records of one etcd under `benchmark put`, as the
// receiver converts them (every call, decoded, scheduler and disk fields), on a
// Resource naming node as the agents' resource_detection does. The mix is the
// demo's measured one: ~69% socket writes, ~28% WAL writes and fdatasyncs, ~2%
// bbolt. Read-only: the agents' exporters send it again and again.
func etcdBatch(node string, pid uint32) plog.Logs {
	lb := convert.NewLogBuilder(true, "github.com/etcdebpf/etcdebpfreceiver", "bench", agentBatch)
	var mono unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	start := uint64(mono.Nano())
	observed := pcommon.NewTimestampFromTime(time.Now())
	for i := range agentBatch {
		f := tracer.RecordFields{
			PID: pid, TID: pid + 10 + uint32(i%8), CgroupID: 1234, Offset: -1, StartNs: start + uint64(i)*45_000, Comm: "etcd",
			Waits: &tracer.Waits{IODeviceKnown: true},
		}
		f.Waits.Ns[tracer.WaitRunnable] = 1_000
		switch k := i % 100; {
		case k < 69: // a gRPC or peer socket write
			f.Syscall, f.FDKind, f.FD = tracer.SyscallWrite, tracer.FDKindSocket, 30+int32(k%16)
			f.Count, f.Ret, f.DurationNs = 180, 180, 9_000
		case k < 84: // a WAL append
			f.Syscall, f.FDKind, f.FD, f.Inode = tracer.SyscallWrite, tracer.FDKindFile, 12, 3670031
			f.Count, f.Ret, f.DurationNs = 4096, 4096, 14_000
			f.FileName = "0000000000000000-0000000000000000.wal"
		case k < 98: // its sync
			f.Syscall, f.FDKind, f.FD, f.Inode = tracer.SyscallFdatasync, tracer.FDKindFile, 12, 3670031
			f.DurationNs = 600_000
			f.Waits.Ns[tracer.WaitWriteback], f.Waits.Ns[tracer.WaitFlush], f.Waits.IODeviceNs = 150_000, 300_000, 420_000
			f.FileName = "0000000000000000-0000000000000000.wal"
		case k < 99: // a bbolt page
			f.Syscall, f.FDKind, f.FD, f.Inode = tracer.SyscallPwrite64, tracer.FDKindFile, 9, 3670020
			f.Count, f.Ret, f.Offset, f.DurationNs = 4096, 4096, 1<<20, 11_000
			f.FileName = "db"
		default: // bbolt's commit sync
			f.Syscall, f.FDKind, f.FD, f.Inode = tracer.SyscallFdatasync, tracer.FDKindFile, 9, 3670020
			f.DurationNs = 900_000
			f.FileName = "db"
		}
		lb.Append(tracer.NewRecord(f), observed)
	}
	logs := lb.Take(agentBatch)
	for _, rl := range logs.ResourceLogs().All() {
		rl.Resource().Attributes().PutStr("host.name", node)
		rl.Resource().Attributes().PutStr("k8s.node.name", node)
		rl.Resource().Attributes().PutStr("os.type", "linux")
	}
	logs.MarkReadOnly()
	return logs
}

// decodedHeap is the heap that decoding one request's protobuf takes, as a
// receiver does: what each request in flight holds before memory_limiter can
// refuse it.
func decodedHeap(b plog.Logs) uint64 {
	raw, err := (&plog.ProtoMarshaler{}).MarshalLogs(b)
	if err != nil {
		return 0
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	decoded, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(raw)
	runtime.ReadMemStats(&after)
	if err != nil {
		return 0
	}
	runtime.KeepAlive(decoded)
	return after.TotalAlloc - before.TotalAlloc
}
