//go:build linux

package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.uber.org/zap"

	"github.com/etcdebpf/etcdebpfreceiver/internal/convert"
	"github.com/etcdebpf/etcdebpfreceiver/internal/process"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/victoria"
)

// The gateway-metrics phase: the slow-calls + histograms configuration
// (examples/kubernetes/collector.yaml), where a healthy etcd makes no call of
// 10 ms and its agent sends no record, only a collection of points every
// collection_interval. Each simulated agent carries -gateway-nodes nodes: one
// request a node every collectionInterval, each the receiver's conversion of a
// busy etcd's histograms and its disk's view on a Resource naming the node.
// The gateway writes them to VictoriaMetrics, which is asked how many
// etcd.syscall.duration points each node's requests brought.

// collectionInterval is the agent examples' collection_interval.
const collectionInterval = 10 * time.Second

func (h *harness) gatewayMetrics() error {
	nodes, err := parseRates(h.o.gwNodes)
	if err != nil {
		return fmt.Errorf("-gateway-nodes: %w", err)
	}
	c := newNodeCollection()
	perNode := float64(c.points) / collectionInterval.Seconds()
	logf("gateway phase (metrics): a node's collection is %d points (%d of them etcd.syscall.duration) in %d bytes of OTLP protobuf, every %s",
		c.points, c.durations, (&pmetric.ProtoMarshaler{}).MetricsSize(c.md), collectionInterval)
	var rates []float64
	for _, n := range nodes {
		rates = append(rates, n*perNode)
	}
	sig := gatewaySignal{
		phase: "slow calls + histograms", items: "points", counter: "metric_points",
		backend: victoria.Metrics, backendEnv: "VICTORIAMETRICS_URL",
		agents:      c.agents,
		stored:      c.stored,
		perNode:     perNode,
		perNodeSays: fmt.Sprintf("a collection of %d points every %s a node, %.1f points/s", c.points, collectionInterval, perNode),
		batchSays: fmt.Sprintf("each agent carrying `-gateway-nodes` nodes, one request a node every %s: that node's collection of %d points, %d of them `etcd.syscall.duration`",
			collectionInterval, c.points, c.durations),
	}
	return h.runGateway(sig, rates)
}

// nodeCollection is the collection every simulated node sends, its host.name
// set as it is sent.
type nodeCollection struct {
	md        pmetric.Metrics
	points    int
	durations int // its etcd.syscall.duration points
}

// etcdSeries are a busy etcd's histogram series, each with its calls' typical
// duration: about the 15 the receiver keeps for an etcd (docs/metrics.md).
var etcdSeries = []struct {
	syscall tracer.Syscall
	fd      tracer.FDKind
	class   tracer.FileClass
	typical time.Duration
}{
	{tracer.SyscallWrite, tracer.FDKindSocket, tracer.FileClassNone, 9 * time.Microsecond},
	{tracer.SyscallWritev, tracer.FDKindSocket, tracer.FileClassNone, 12 * time.Microsecond},
	{tracer.SyscallWrite, tracer.FDKindEventfd, tracer.FileClassNone, 2 * time.Microsecond},
	{tracer.SyscallWrite, tracer.FDKindPipe, tracer.FileClassNone, 3 * time.Microsecond},
	{tracer.SyscallWrite, tracer.FDKindFile, tracer.FileClassWAL, 14 * time.Microsecond},
	{tracer.SyscallFdatasync, tracer.FDKindFile, tracer.FileClassWAL, 600 * time.Microsecond},
	{tracer.SyscallFdatasync, tracer.FDKindDirectory, tracer.FileClassWAL, 2 * time.Millisecond},
	{tracer.SyscallWrite, tracer.FDKindFile, tracer.FileClassTmp, 20 * time.Microsecond},
	{tracer.SyscallFdatasync, tracer.FDKindFile, tracer.FileClassTmp, time.Millisecond},
	{tracer.SyscallPwrite64, tracer.FDKindFile, tracer.FileClassDB, 11 * time.Microsecond},
	{tracer.SyscallFdatasync, tracer.FDKindFile, tracer.FileClassDB, 900 * time.Microsecond},
	{tracer.SyscallWrite, tracer.FDKindFile, tracer.FileClassSnap, 20 * time.Microsecond},
	{tracer.SyscallFsync, tracer.FDKindFile, tracer.FileClassSnap, 2 * time.Millisecond},
	{tracer.SyscallFsync, tracer.FDKindDirectory, tracer.FileClassSnap, time.Millisecond},
	{tracer.SyscallWrite, tracer.FDKindFile, tracer.FileClassOther, 10 * time.Microsecond},
}

// oneEtcd stands in for the process registry of a node: every pid is one
// etcd, running since start.
type oneEtcd struct{ start time.Time }

func (oneEtcd) Check() {}
func (oneEtcd) Lookup(pid int) (process.Process, bool) {
	return process.Process{PID: pid, Start: 1}, true
}
func (oneEtcd) Running(process.Process) bool { return true }
func (e oneEtcd) Describe(process.Process) process.Description {
	return process.Description{Comm: "etcd", Args: []string{"etcd", "--name", "member-1", "--data-dir", "/var/lib/etcd"}, Start: e.start}
}

func newNodeCollection() *nodeCollection {
	const pid, disk = 4000, 254 << 20
	begin := time.Now().Add(-time.Hour)
	start, now := pcommon.NewTimestampFromTime(begin), pcommon.NewTimestampFromTime(time.Now())
	etcd := convert.NewMetrics("github.com/etcdebpf/etcdebpfreceiver", "bench", start, oneEtcd{start: begin})
	var hists []tracer.Histogram
	for i, s := range etcdSeries {
		hists = append(hists, tracer.Histogram{
			Key:        tracer.HistKey{PID: pid, Syscall: s.syscall, FDKind: s.fd, FileClass: s.class},
			HistCounts: callsAround(s.typical, uint32(1000*(i+1))),
		})
	}
	md, _ := etcd.Collect(hists, now, nil)

	disks := convert.NewDisks("github.com/etcdebpf/etcdebpfreceiver", "bench", start)
	var ops []tracer.DiskOpStats
	for _, op := range []tracer.DiskOp{tracer.DiskRead, tracer.DiskWrite, tracer.DiskFlush} {
		ops = append(ops, tracer.DiskOpStats{Dev: disk, Op: op, Completed: 50_000,
			Service: callsAround(400*time.Microsecond, 50_000), Queue: callsAround(20*time.Microsecond, 50_000)})
	}
	subs := []tracer.Submitter{{Dev: disk, Overflow: true, Bytes: 1 << 20, Bios: 256}}
	for i, comm := range []string{"etcd", "jbd2/vda1-8", "kworker/u4:2", "systemd-journal", "kubelet", "containerd"} {
		subs = append(subs, tracer.Submitter{Dev: disk, PID: uint32(pid + 100*i), Comm: comm, CgroupID: uint64(1000 + i),
			Bytes: uint64(64<<20) >> i, Bios: uint64(16384) >> i})
	}
	dmd, _ := disks.Collect(ops, subs, now, func(uint32) bool { return false })
	dmd.ResourceMetrics().MoveAndAppendTo(md.ResourceMetrics())

	c := &nodeCollection{md: md, points: md.DataPointCount()}
	for _, rm := range md.ResourceMetrics().All() {
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				if m.Name() == convert.MetricDuration {
					c.durations += m.ExponentialHistogram().DataPoints().Len()
				}
			}
		}
	}
	md.MarkReadOnly()
	return c
}

// callsAround is calls spread over the 16 buckets (two octaves) around typical.
func callsAround(typical time.Duration, calls uint32) tracer.HistCounts {
	// Bucket i holds (2^(i/8), 2^((i+1)/8)] seconds from 2^-25 s (docs/metrics.md).
	mid := int(8*math.Log2(typical.Seconds())) + 200
	h := tracer.HistCounts{MinNs: uint64(typical) / 4, MaxNs: uint64(typical) * 4}
	for i := mid - 8; i < mid+8; i++ {
		h.Buckets[i] = calls / 16
		h.SumNs += uint64(calls/16) * uint64(math.Exp2(float64(i-200)/8)*1e9)
	}
	h.Bytes = uint64(calls) * 4096
	return h
}

// agents send rate/points collections a second each, as rate×interval/points
// nodes would, each collection stamped now and named for its node.
func (c *nodeCollection) agents(ctx context.Context, root, gateway string, n int, rate float64, logger *zap.Logger, meters *sdkmetric.MeterProvider) ([]*simAgent, error) {
	exps, err := agentExporters(ctx, root, gateway, n, logger, meters, otlpexporter.NewFactory().CreateMetrics)
	if err != nil {
		return nil, err
	}
	nodes := max(1, int(math.Round(rate*collectionInterval.Seconds()/float64(c.points))))
	var agents []*simAgent
	for i, exp := range exps {
		agent := agentNode(i)
		agents = append(agents, &simAgent{node: agent, exp: exp, batchItems: c.points,
			send: func(ctx context.Context, k int) (int, error) {
				md := c.sentAs(fmt.Sprintf("%s-%04d", agent, k%nodes), time.Now())
				return c.points, exp.ConsumeMetrics(ctx, md)
			}})
	}
	return agents, nil
}

// sentAs is the collection as node sends it at t: resource_detection's
// attributes on each Resource, every point stamped t.
func (c *nodeCollection) sentAs(node string, t time.Time) pmetric.Metrics {
	md := pmetric.NewMetrics()
	c.md.CopyTo(md)
	ts := pcommon.NewTimestampFromTime(t)
	for _, rm := range md.ResourceMetrics().All() {
		attrs := rm.Resource().Attributes()
		attrs.PutStr("host.name", node)
		attrs.PutStr("k8s.node.name", node)
		attrs.PutStr("os.type", "linux")
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				switch m.Type() {
				case pmetric.MetricTypeExponentialHistogram:
					for _, dp := range m.ExponentialHistogram().DataPoints().All() {
						dp.SetTimestamp(ts)
					}
				case pmetric.MetricTypeSum:
					for _, dp := range m.Sum().DataPoints().All() {
						dp.SetTimestamp(ts)
					}
				}
			}
		}
	}
	return md
}

// stored is what VictoriaMetrics holds per agent, in points: its
// etcd.syscall.duration samples (one a point) by each of its nodes, over the
// share of a collection's points they are.
func (c *nodeCollection) stored(ctx context.Context, vm *victoria.Server) (map[string]int64, error) {
	samples, err := vm.PromQL(ctx, `sum by (host_name) (count_over_time(etcd_syscall_duration_seconds_count[1h]))`, time.Now())
	if err != nil {
		return nil, err
	}
	samplesOf := map[string]int64{}
	for _, s := range samples {
		agent := s.Labels["host_name"] // node-01-0007 is agent node-01's
		if i := strings.LastIndexByte(agent, '-'); i > 0 {
			agent = agent[:i]
		}
		samplesOf[agent] += int64(s.Value)
	}
	stored := map[string]int64{}
	for agent, n := range samplesOf {
		stored[agent] = n * int64(c.points) / int64(c.durations)
	}
	return stored, nil
}
