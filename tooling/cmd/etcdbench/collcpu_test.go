//go:build linux

package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
)

func TestAccountFromCounters(t *testing.T) {
	for _, tc := range []struct {
		name                string
		produced, arrived   int64
		counters            map[string]float64
		wantDelivered       int64
		wantLost, wantMiss  int64
		wantLostDescription string
	}{
		{
			name: "every record delivered", produced: 1001, arrived: 1001,
			counters:      map[string]float64{"otelcol_etcdebpf_records_read": 1001},
			wantDelivered: 1001, wantLostDescription: "0",
		},
		{
			name: "the kernel dropped records over budget", produced: 1_000_001, arrived: 643_381,
			counters: map[string]float64{
				"otelcol_etcdebpf_records_read": 643_381, "otelcol_etcdebpf_records_lost_over_budget": 356_620,
			},
			wantDelivered: 643_381, wantLost: 356_620, wantLostDescription: "356620 (356620 over budget)",
		},
		{
			name: "a retried batch arrives twice and counts once", produced: 2000, arrived: 2512,
			counters:      map[string]float64{"otelcol_etcdebpf_records_read": 2000},
			wantDelivered: 2000, wantLostDescription: "0",
		},
		{
			name: "a failed export without a queue is counted by the exporter and the receiver, lost once", produced: 3000, arrived: 2000,
			counters: map[string]float64{
				"otelcol_etcdebpf_records_read": 3000, "otelcol_receiver_failed_log_records": 1000,
				"otelcol_exporter_send_failed_log_records": 1000,
			},
			wantDelivered: 2000, wantLost: 1000, wantLostDescription: "1000 (1000 in the pipeline)",
		},
		{
			name: "losses of every kind add up", produced: 100, arrived: 90,
			counters: map[string]float64{
				"otelcol_etcdebpf_records_read": 95, "otelcol_etcdebpf_records_lost_ringbuf_full": 3,
				"otelcol_etcdebpf_records_lost_inflight_full": 2, "otelcol_etcdebpf_records_malformed": 1,
				"otelcol_exporter_enqueue_failed_log_records": 4,
			},
			wantDelivered: 90, wantLost: 10, wantLostDescription: "10 (3 ringbuf full, 2 inflight full, 1 malformed, 4 in the pipeline)",
		},
		{
			name: "records neither delivered nor counted are missing", produced: 1000, arrived: 600,
			counters:      map[string]float64{"otelcol_etcdebpf_records_read": 1000},
			wantDelivered: 600, wantMiss: 400, wantLostDescription: "0",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := collSample{Produced: tc.produced, Arrived: tc.arrived}
			s.account(tc.counters)
			require.Equal(t, tc.wantDelivered, s.Delivered, "delivered")
			require.Equal(t, tc.wantLost, s.Lost.total(), "lost")
			require.Equal(t, tc.wantMiss, s.Missing(), "missing")
			require.Equal(t, tc.wantLostDescription, s.Lost.String())
		})
	}
}

// fakeCollector feeds await: records arrive until stopAt, the counters say lost
// of the rest were lost, and every reading of the CPU is a tick later.
type fakeCollector struct {
	arrived, ticks atomic.Int64
	lost           int64
	reads          atomic.Int64 // of the counters
}

func (f *fakeCollector) probes(produced, stopAt int64) collProbes {
	return collProbes{
		arrived: func() int64 { return min(f.arrived.Add(100), stopAt) },
		counters: func() (map[string]float64, error) {
			f.reads.Add(1)
			return map[string]float64{"otelcol_etcdebpf_records_read": float64(produced - f.lost), "otelcol_etcdebpf_records_lost_over_budget": float64(f.lost)}, nil
		},
		cpu: func() (float64, error) { return float64(f.ticks.Add(1)), nil },
	}
}

func TestAwaitStopsWhenEveryRecordIsAccounted(t *testing.T) {
	wait := collWait{poll: time.Millisecond, settle: 20 * time.Millisecond, stall: 2 * time.Second, limit: 10 * time.Second}
	for _, tc := range []struct {
		name           string
		produced, lost int64
		wantShort      string
		within         time.Duration
	}{
		{name: "all delivered", produced: 1000, within: wait.stall / 2},
		{name: "the rest counted lost", produced: 1000, lost: 300, within: wait.stall / 2},
		{name: "the rest missing", produced: 1000, lost: 100, wantShort: "200 of 1000 records neither delivered nor counted lost", within: wait.stall + time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeCollector{lost: tc.lost}
			stopAt := tc.produced - tc.lost
			if tc.wantShort != "" {
				stopAt -= 200
			}
			s := collSample{Produced: tc.produced}
			start := time.Now()
			require.NoError(t, wait.await(&s, 0, f.probes(tc.produced, stopAt)))
			require.Less(t, time.Since(start), tc.within)
			require.Equal(t, stopAt, s.Delivered)
			require.Equal(t, tc.lost, s.Lost.OverBudget)
			if tc.wantShort == "" {
				require.Empty(t, s.Short)
				require.Zero(t, s.Missing())
			} else {
				require.Contains(t, s.Short, tc.wantShort)
			}
			// The CPU is the reading at the last arrival (one per new count,
			// the first before the wait), not one taken while waiting after it.
			require.Equal(t, float64(stopAt/100+1), s.CPUSecs)
			if tc.lost == 0 && tc.wantShort == "" {
				require.EqualValues(t, 1, f.reads.Load(), "the counters are read once, after the CPU, when nothing needs them to end the wait")
			}
		})
	}
}

// The phase against the built collector and the real kernel: with the phase's
// budget every record of the loop is delivered; with a budget the loop outruns
// the kernel drops records, and the phase counts them from the collector's own
// counters and ends its wait at once, with nothing missing.
func TestCollectorCPUAccountsForEveryRecord(t *testing.T) {
	bpftest.RequireBPF(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bin, err := collector.Binary(ctx, "", bpftest.Log(t))
	require.NoError(t, err)
	work := t.TempDir()
	writer, err := etcdwriter.Build(work, comm)
	require.NoError(t, err)
	const calls = 50_000
	outrun := collector.Budget{RecordsPerSecond: 10_000, Burst: 1_000}
	for _, tc := range []struct {
		name     string
		variant  collVariant
		budget   collector.Budget
		wantLost bool
	}{
		{"the phase's budget, debug", collVariant{name: "debug"}, collcpuBudget, false},
		{"the phase's budget, otlp_grpc", collVariant{name: "otlp none", compression: "none"}, collcpuBudget, false},
		{"a budget the loop outruns, debug", collVariant{name: "debug"}, outrun, true},
		{"a budget the loop outruns, otlp_grpc", collVariant{name: "otlp none", compression: "none"}, outrun, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			s, err := collectorCPUOnce(work, writer, bin, tc.variant, calls, tc.budget, collcpuWait, "")
			require.NoError(t, err)
			t.Logf("%d records: %d delivered, lost %v, %.2f s CPU, %.3f µs/record, in %s", s.Produced, s.Delivered, s.Lost, s.CPUSecs, s.usPerRecord(), time.Since(start).Round(time.Millisecond))
			require.EqualValues(t, calls+1, s.Produced)
			require.Empty(t, s.Short)
			require.Zero(t, s.Missing(), "every record delivered or counted lost")
			require.Equal(t, s.Produced, s.Delivered+s.Lost.total())
			require.Zero(t, s.Lost.RingbufFull+s.Lost.InflightFull+s.Lost.Malformed+s.Lost.Pipeline)
			if tc.wantLost {
				// At most the burst and the rate over the time the loop ran get through.
				require.Positive(t, s.Lost.OverBudget)
				require.LessOrEqual(t, s.Delivered, int64(float64(outrun.Burst)+float64(outrun.RecordsPerSecond)*time.Since(start).Seconds()))
			} else {
				require.Zero(t, s.Lost.OverBudget)
				// 50,001 records take ~0.1 s of CPU, ten of procfs's 10 ms ticks; the
				// couple of thousand an outrun budget lets through can take less than one.
				require.Greater(t, s.CPUSecs, 0.0)
			}
			// Not 5 minutes for the lost records: at most the settle before the counters say the rest is lost.
			require.Less(t, time.Since(start), 30*time.Second)
		})
	}
}

func TestParsePprofTop(t *testing.T) {
	out := `File: otelcol-etcd
Type: cpu
Duration: 7.21s, Total samples = 4.29s (59.54%)
Showing nodes accounting for 4.29s, 100% of 4.29s total
      flat  flat%   sum%        cum   cum%
     0.02s  0.47%  0.47%      3.10s 72.26%  github.com/etcdebpf/etcdebpfreceiver/internal/controller.(*Controller).readRecords
     0.05s  1.17%  1.63%      2.65s 61.77%  github.com/etcdebpf/etcdebpfreceiver/internal/convert.(*LogBuilder).Append
     0.03s   0.7%  2.56%      0.94s 21.91%  runtime.mallocgc
         0     0% 22.61%      290ms  6.76%  github.com/etcdebpf/etcdebpfreceiver/internal/tracer.Start
     0.04s  0.93% 62.47%      0.69s 16.08%  runtime.newobject
     0.11s  2.56% 13.29%      0.51s 11.89%  runtime.mallocgcSmallScanNoHeader
         0     0% 10.49%      0.52s 12.12%  runtime.gcBgMarkWorker.func2
`
	total, parts, err := parsePprofTop(out)
	if err != nil {
		t.Fatal(err)
	}
	if total != 4.29 {
		t.Errorf("total %v", total)
	}
	want := map[string]float64{
		"start-up: loading the BPF programs (not in the measured CPU)":    0.29,
		"receiver: the reading goroutine, all of it":                      3.10,
		"receiver: converting records (LogBuilder.Append: decode, pdata)": 2.65,
		"allocation (runtime.mallocgc, every caller)":                     0.94,
	}
	for i, p := range profileParts {
		if got := parts[i]; got != want[p.name] {
			t.Errorf("%s: %v, want %v", p.name, got, want[p.name])
		}
	}
}
