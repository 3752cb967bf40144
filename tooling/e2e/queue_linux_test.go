//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/victoria"
)

// The DaemonSet's agent queues on the node's disk (examples/kubernetes/collector.yaml,
// file_storage): with the gateway away, the agent SIGKILLed and started again on
// the same directory, every record the first agent accepted reaches VictoriaLogs
// once the gateway is back. The load is the writer, a process named etcd making
// an exact number of write(2) calls, each a record (the DaemonSet's every-call
// opt-in), so that what the backend stores can be compared with what was made.
func TestQueueRidesOutGatewayOutageAndAgentKill(t *testing.T) {
	bpftest.RequireBPF(t)
	bin := collectorBinary(t)
	writer := bpftest.BuildWriter(t)
	vl := victoria.StartForTest(t, victoria.Logs)
	vm := victoria.StartForTest(t, victoria.Metrics)
	ctx := context.Background()
	ports, err := subprocess.FreePorts(2)
	require.NoError(t, err)

	gateway, gatewayAddr := startGateway(t, bin, vl.URL, vm.URL)
	queue := t.TempDir()
	agent := func(i int) (*collector.Collector, string) {
		col := startDaemonSetAgent(t, bin, daemonSetAgent{
			node: "node-" + strconv.Itoa(i), gatewayAddr: gatewayAddr, queueDir: queue, telemetryPort: ports[i],
			// Only the test's writers, whichever pid they get.
			receiver: fmt.Sprintf("    executable: %s\n    flush_interval: 50ms\n    collection_interval: 1s\n", writer),
		})
		return col, fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[i])
	}
	first, firstTelemetry := agent(0)
	const rate = 2000 // calls a second: a busy etcd's every call is ten times more, the test's machine is shared
	write := func(calls int) int {
		w := bpftest.StartWriterWith(t, writer, etcdwriter.Options{Calls: int64(calls), Size: 64, Rate: rate})
		w.Release(t, time.Duration(calls/rate+30)*time.Second)
		return w.PID()
	}
	// accepted waits until the agent has handed want records to its exporter's
	// queue (its receiver's accepted_log_records), and returns its counters.
	accepted := func(url string, want float64) map[string]float64 {
		t.Helper()
		var c map[string]float64
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, err = collector.Telemetry(url)
			require.NoError(t, err)
			if c["otelcol_receiver_accepted_log_records"] >= want || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		require.Equal(t, want, c["otelcol_receiver_accepted_log_records"], "records accepted; counters %v", c)
		require.Equal(t, want, c["otelcol_etcdebpf_records_read"], "every call read from the ring buffer, none lost")
		return c
	}

	// The gateway up: delivered as it comes.
	const before, during, restarted = 2000, 20000, 10000
	pids := map[string]int{strconv.Itoa(write(before)): before}
	accepted(firstTelemetry, before)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c, err := collector.Telemetry(firstTelemetry)
		require.NoError(t, err)
		if c["otelcol_exporter_sent_log_records"] >= before || time.Now().After(deadline) {
			require.EqualValues(t, before, c["otelcol_exporter_sent_log_records"], "sent while the gateway is up")
			break
		}
	}
	queuedBefore := diskUsage(t, queue)

	// The gateway away; the agent queues, and is SIGKILLed (an OOM kill, a node
	// drain that does not wait) with everything it accepted still queued.
	start := time.Now()
	require.NoError(t, gateway.Stop(15*time.Second), "gateway log:\n%s", gateway.Tail())
	releaseGatewayPort := reservePort(t, gatewayAddr)
	pids[strconv.Itoa(write(during))] = during
	c := accepted(firstTelemetry, before+during)
	logsQueue := `data_type="logs"`
	q, err := collector.Telemetry(firstTelemetry, logsQueue)
	require.NoError(t, err)
	queuedAfter := diskUsage(t, queue)
	t.Logf("first agent: %.0f records accepted, %.0f sent before the gateway stopped; logs queue %.0f of %.0f bytes of OTLP; "+
		"queue directory %d -> %d bytes on disk", c["otelcol_receiver_accepted_log_records"], c["otelcol_exporter_sent_log_records"],
		q["otelcol_exporter_queue_size"], q["otelcol_exporter_queue_capacity"], queuedBefore, queuedAfter)
	perRecord := float64(queuedAfter-queuedBefore) / during
	t.Logf("queue cost: %.0f bytes on disk and %.0f bytes of OTLP a record (%d records queued)", perRecord, q["otelcol_exporter_queue_size"]/during, during)
	assert.Positive(t, q["otelcol_exporter_queue_size"], "the records wait in the queue")
	// The histograms' points wait too, in the metrics queue: what a point costs.
	mq, err := collector.Telemetry(firstTelemetry, `data_type="metrics"`)
	require.NoError(t, err)
	t.Logf("metrics queue: %.0f bytes of OTLP for %.0f points accepted, %.0f of them sent before the gateway stopped",
		mq["otelcol_exporter_queue_size"], c["otelcol_receiver_accepted_metric_points"], c["otelcol_exporter_sent_metric_points"])
	require.NoError(t, syscall.Kill(first.PID(), syscall.SIGKILL))
	<-first.Exited()

	// The next agent, on the same directory, the gateway still away.
	second, secondTelemetry := agent(1)
	q, err = collector.Telemetry(secondTelemetry, logsQueue)
	require.NoError(t, err)
	t.Logf("second agent started with %.0f bytes of OTLP in its logs queue", q["otelcol_exporter_queue_size"])
	assert.Positive(t, q["otelcol_exporter_queue_size"], "the first agent's queue, taken over from the disk")
	pids[strconv.Itoa(write(restarted))] = restarted
	accepted(secondTelemetry, restarted)
	if away := 20*time.Second - time.Since(start); away > 0 {
		time.Sleep(away)
	}

	// The gateway back where the agent sends: the queue drains into it.
	releaseGatewayPort()
	gateway = startGatewayAt(t, bin, gatewayAddr, vl.URL, vm.URL)
	back := time.Now()
	t.Logf("gateway away for %s", back.Sub(start).Round(time.Second))
	const total = before + during + restarted
	count := `* | stats by (process.pid) count() records, count_uniq(etcd.syscall.raw) calls`
	var stored map[string][2]int // pid -> records, distinct calls
	// The exporter retries at least every 10 s, but gRPC reconnects on its own
	// back-off, which 20 s of refused connections have grown to ~30 s.
	deadline := time.Now().Add(90 * time.Second)
	for {
		require.NoError(t, vl.Flush(ctx))
		rows, err := vl.LogsQL(ctx, count)
		require.NoError(t, err)
		stored = map[string][2]int{}
		calls := 0
		for _, row := range rows {
			records, _ := strconv.Atoi(row["records"])
			distinct, _ := strconv.Atoi(row["calls"])
			stored[row["process.pid"]] = [2]int{records, distinct}
			calls += distinct
		}
		if calls >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("stored %s after the gateway came back", time.Since(back).Round(time.Second))
	duplicates := 0
	for pid, made := range pids {
		got := stored[pid]
		t.Logf("writer pid %s: %d calls made, %d records stored, %d distinct", pid, made, got[0], got[1])
		assert.Equal(t, made, got[1], "every call of writer %s stored", pid)
		duplicates += got[0] - got[1]
	}
	assert.Len(t, stored, len(pids), "records of the writers only: %v", stored)
	// A batch sent again is stored again: the first agent killed after the
	// gateway took a batch but before the queue heard so, or a gateway slower
	// than the 30 s timeout. Neither should happen here (the gateway is away at
	// the kill, on loopback after), so they are counted and said, not allowed.
	t.Logf("duplicates: %d records stored twice", duplicates)
	assert.Zero(t, duplicates, "a record stored more than once")

	c, err = collector.Telemetry(secondTelemetry)
	require.NoError(t, err)
	t.Logf("second agent: %.0f records sent, %.0f failed to send, %.0f refused by its queue", c["otelcol_exporter_sent_log_records"],
		c["otelcol_exporter_send_failed_log_records"], c["otelcol_exporter_enqueue_failed_log_records"])
	assert.Zero(t, c["otelcol_exporter_enqueue_failed_log_records"], "the queue had room")
	require.NoError(t, second.Stop(15*time.Second), "second agent log:\n%s", second.Tail())
	require.NoError(t, gateway.Stop(15*time.Second), "gateway log:\n%s", gateway.Tail())
}

// The DaemonSet's agent with a small memory limit (GOMEMLIMIT and memory_limiter)
// and a small queue, its backend away, traced at full speed: it does not die, its
// queue stays within its capacity, and every call it traced is accounted for in
// its own telemetry: read or lost in the kernel, and what it read accepted into
// the queue or refused.
func TestAgentUnderMemoryLimitWithBackendAway(t *testing.T) {
	bpftest.RequireBPF(t)
	bin := collectorBinary(t)
	writer := bpftest.BuildWriter(t)
	agent, url := startAgentWithBackendAway(t, bin, "node-small", fmt.Sprintf("    executable: %s\n", writer))

	const calls = 400_000
	w := bpftest.StartWriterWith(t, writer, etcdwriter.Options{Calls: calls, Size: 64, Rate: 40_000})
	peakRSS := watchPeakRSS(agent.PID(), 100*time.Millisecond)
	w.Release(t, time.Minute)
	// lost are the calls the kernel counted and made no record of.
	lost := func(c map[string]float64) float64 {
		return c["otelcol_etcdebpf_records_lost_ringbuf_full"] + c["otelcol_etcdebpf_records_lost_over_budget"] + c["otelcol_etcdebpf_records_lost_inflight_full"]
	}
	var c map[string]float64
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err = collector.Telemetry(url)
		require.NoError(t, err)
		if c["otelcol_etcdebpf_records_read"]+lost(c) >= calls &&
			c["otelcol_etcdebpf_records_read"] == c["otelcol_receiver_accepted_log_records"]+c["otelcol_receiver_refused_log_records"] ||
			time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	peak := peakRSS()
	select {
	case <-agent.Exited():
		t.Fatalf("the agent died:\n%s", agent.Tail())
	default:
	}
	q, err := collector.Telemetry(url, `data_type="logs"`)
	require.NoError(t, err)
	t.Logf("%d calls: %.0f traced, %.0f read, %.0f lost in the kernel; of those read %.0f accepted, %.0f refused "+
		"(%.0f by the full queue); queue %.0f of %.0f bytes; %.0f send attempts failed; peak anonymous memory %d KiB",
		calls, c["otelcol_etcdebpf_calls_traced"], c["otelcol_etcdebpf_records_read"], lost(c),
		c["otelcol_receiver_accepted_log_records"], c["otelcol_receiver_refused_log_records"], c["otelcol_exporter_enqueue_failed_log_records"],
		q["otelcol_exporter_queue_size"], q["otelcol_exporter_queue_capacity"], c["otelcol_exporter_send_failed_log_records"], peak)
	assert.EqualValues(t, calls, c["otelcol_etcdebpf_calls_traced"], "every call traced")
	assert.EqualValues(t, calls, c["otelcol_etcdebpf_records_read"]+lost(c), "every call read or counted lost")
	assert.Equal(t, c["otelcol_etcdebpf_records_read"], c["otelcol_receiver_accepted_log_records"]+c["otelcol_receiver_refused_log_records"],
		"every record read accepted or counted refused")
	assert.Positive(t, c["otelcol_exporter_enqueue_failed_log_records"], "the queue filled: what it refused is counted")
	assert.LessOrEqual(t, c["otelcol_exporter_enqueue_failed_log_records"], c["otelcol_receiver_refused_log_records"], "a record the queue refused is refused to the receiver")
	assert.LessOrEqual(t, q["otelcol_exporter_queue_size"], q["otelcol_exporter_queue_capacity"])
	assert.Less(t, peak, limitMiB<<10, "anonymous memory (the heap) under memory_limiter's limit")
	require.NoError(t, agent.Stop(15*time.Second), "agent log:\n%s", agent.Tail())
}

// diskUsage is the bytes the files under dir take on disk (their blocks, not
// their length: bbolt grows its file ahead of its data).
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Sys().(*syscall.Stat_t).Blocks * 512
		return nil
	}))
	return total
}

// rssAnonKiB is the process's anonymous resident memory (its heap and stacks,
// not the queue's file mapped in), or 0 once it is gone.
func rssAnonKiB(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return kb
		}
	}
	return 0
}

// The same agent through a long backend outage (ten minutes unless
// ETCDEBPF_BACKEND_OUTAGE says otherwise, a Go duration) at every call, at a
// rate a shared CI machine sustains beside nothing else: the queue fills in
// seconds and then refuses for the rest of the outage. The agent does not die,
// its anonymous memory stays under the limit, and every call is accounted for
// in its telemetry: read or lost in the kernel, accepted or refused.
// longOutageComm names the long outage's writer.
const longOutageComm = "etcdlong"

func TestAgentUnderMemoryLimitThroughLongBackendOutage(t *testing.T) {
	bpftest.RequireBPF(t)
	outage := 10 * time.Minute
	if s := os.Getenv("ETCDEBPF_BACKEND_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		require.NoError(t, err, "ETCDEBPF_BACKEND_OUTAGE")
		outage = d
	}
	bin := collectorBinary(t)
	// Not named etcd: make test runs this test beside the others, whose tracers
	// select etcd by name and must not see its calls.
	writer, err := etcdwriter.Build(t.TempDir(), longOutageComm)
	require.NoError(t, err)
	agent, url := startAgentWithBackendAway(t, bin, "node-long", fmt.Sprintf("    comm: %s\n    executable: %s\n", longOutageComm, writer))

	// 3,000 calls a second fill the 8 MiB queue in ~5 s; more would only
	// take CPU from whatever else runs.
	const rate = 3000
	calls := int64(outage.Seconds()) * rate
	start := time.Now()
	w := bpftest.StartWriterWith(t, writer, etcdwriter.Options{Calls: calls, Size: 64, Rate: rate})
	peakRSS := watchPeakRSS(agent.PID(), 250*time.Millisecond)
	w.Release(t, outage+2*time.Minute)
	t.Logf("%d calls made in %s", calls, time.Since(start).Round(time.Second))
	lost := func(c map[string]float64) float64 {
		return c["otelcol_etcdebpf_records_lost_ringbuf_full"] + c["otelcol_etcdebpf_records_lost_over_budget"] + c["otelcol_etcdebpf_records_lost_inflight_full"]
	}
	var c map[string]float64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		c, err = collector.Telemetry(url)
		require.NoError(t, err, "the agent's telemetry; its log:\n%s", agent.Tail())
		if c["otelcol_etcdebpf_records_read"]+lost(c) >= max(float64(calls), c["otelcol_etcdebpf_calls_traced"]) &&
			c["otelcol_etcdebpf_records_read"] == c["otelcol_receiver_accepted_log_records"]+c["otelcol_receiver_refused_log_records"] ||
			time.Now().After(deadline) {
			break
		}
	}
	peak := peakRSS()
	select {
	case <-agent.Exited():
		t.Fatalf("the agent died:\n%s", agent.Tail())
	default:
	}
	q, err := collector.Telemetry(url, `data_type="logs"`)
	require.NoError(t, err)
	t.Logf("backend away %s, %d calls: %.0f traced, %.0f read, %.0f lost in the kernel; of those read %.0f accepted, %.0f refused "+
		"(%.0f by the full queue); queue %.0f of %.0f bytes; %.0f send attempts failed; peak anonymous memory %d KiB",
		outage, calls, c["otelcol_etcdebpf_calls_traced"], c["otelcol_etcdebpf_records_read"], lost(c),
		c["otelcol_receiver_accepted_log_records"], c["otelcol_receiver_refused_log_records"], c["otelcol_exporter_enqueue_failed_log_records"],
		q["otelcol_exporter_queue_size"], q["otelcol_exporter_queue_capacity"], c["otelcol_exporter_send_failed_log_records"], peak)
	// Over minutes the writer's Go runtime makes a write(2) or two of its own
	// (netpoll's eventfd wakeups): traced too, and accounted for like the rest.
	assert.GreaterOrEqual(t, c["otelcol_etcdebpf_calls_traced"], float64(calls), "every call traced")
	assert.LessOrEqual(t, c["otelcol_etcdebpf_calls_traced"], float64(calls+10), "the writer's calls, and at most a few of its runtime's")
	assert.Equal(t, c["otelcol_etcdebpf_calls_traced"], c["otelcol_etcdebpf_records_read"]+lost(c), "every call traced read or counted lost")
	assert.Equal(t, c["otelcol_etcdebpf_records_read"], c["otelcol_receiver_accepted_log_records"]+c["otelcol_receiver_refused_log_records"],
		"every record read accepted or counted refused")
	assert.Positive(t, c["otelcol_exporter_enqueue_failed_log_records"], "the queue filled: what it refused is counted")
	assert.LessOrEqual(t, c["otelcol_exporter_enqueue_failed_log_records"], c["otelcol_receiver_refused_log_records"])
	assert.LessOrEqual(t, q["otelcol_exporter_queue_size"], q["otelcol_exporter_queue_capacity"])
	assert.Less(t, peak, limitMiB<<10, "anonymous memory (the heap) under memory_limiter's limit")
	require.NoError(t, agent.Stop(15*time.Second), "agent log:\n%s", agent.Tail())
}

// limitMiB is the memory limit of the agents whose backend is away.
const limitMiB = 100

// startAgentWithBackendAway starts the DaemonSet's agent with receiver settings
// added, a small memory limit (memory_limiter and GOMEMLIMIT) and an 8 MiB queue,
// sending where no gateway listens. url is its own telemetry's.
func startAgentWithBackendAway(t *testing.T, bin, node, receiver string) (agent *collector.Collector, url string) {
	t.Helper()
	ports, err := subprocess.FreePorts(1)
	require.NoError(t, err)
	agent = startDaemonSetAgent(t, bin, daemonSetAgent{
		node: node, gatewayAddr: awayAddr(t), queueDir: t.TempDir(), telemetryPort: ports[0],
		receiver: receiver,
		extra: fmt.Sprintf(`processors:
  memory_limiter:
    limit_percentage: 0
    spike_limit_percentage: 0
    limit_mib: %d
    spike_limit_mib: 20
exporters:
  otlp_grpc:
    sending_queue:
      queue_size: 8388608
`, limitMiB),
		env: []string{fmt.Sprintf("GOMEMLIMIT=%dMiB", limitMiB*8/10)},
	})
	return agent, fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[0])
}

// watchPeakRSS samples pid's anonymous memory every interval until the returned
// function is called, which returns the peak in KiB.
func watchPeakRSS(pid int, interval time.Duration) func() int {
	peak := 0
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			if kb := rssAnonKiB(pid); kb > peak {
				peak = kb
			}
			select {
			case <-stop:
				return
			case <-time.After(interval):
			}
		}
	}()
	return func() int {
		close(stop)
		<-done
		return peak
	}
}
