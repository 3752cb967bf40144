//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/victoria"
)

// walSyncHistogram is what the receiver's histogram says of the WAL fdatasyncs
// since start, read back from VictoriaMetrics: count, p50, p99. The collector has
// stopped, so its last collection is in; the increase is taken from the last
// collection at or before start (up to interval earlier, with etcd idle): the
// window reaches back past start by two intervals, rounded up to whole seconds,
// since a window that starts after start misses the workload's first syncs.
func walSyncHistogram(ctx context.Context, vm *victoria.Server, start time.Time, interval time.Duration) (*histogramFigures, error) {
	const selector = `{etcd_syscall_name="fdatasync",etcd_syscall_file_class="wal"}`
	now := time.Now()
	window := fmt.Sprintf("[%ds]", int(math.Ceil((now.Sub(start) + 2*interval).Seconds())))
	h := &histogramFigures{}
	for _, q := range []struct {
		query string
		dst   *float64
	}{
		{`sum(increase_pure(etcd_syscall_duration_seconds_count` + selector + window + `))`, &h.count},
		{`histogram_quantile(0.5, sum by (vmrange) (increase_pure(etcd_syscall_duration_seconds_bucket` + selector + window + `)))`, &h.p50},
		{`histogram_quantile(0.99, sum by (vmrange) (increase_pure(etcd_syscall_duration_seconds_bucket` + selector + window + `)))`, &h.p99},
	} {
		samples, err := vm.PromQL(ctx, q.query, now)
		if err != nil {
			return nil, err
		}
		if len(samples) != 1 {
			return nil, nil // no histogram: the row says so
		}
		*q.dst = samples[0].Value
	}
	return h, nil
}

// writeNextQueries runs each query against its backend and prints it with its
// answer: the demo's last screen is where a user's own querying starts.
func writeNextQueries(ctx context.Context, out io.Writer, vl, vm *victoria.Server) error {
	fmt.Fprintf(out, "\n== Next: the records are in VictoriaLogs, the histograms in VictoriaMetrics. Queries you would type next, with their answers.\n")
	fmt.Fprintf(out, "\nLogsQL (curl %s/select/logsql/query --data-urlencode 'query=...', or the web UI at %s/select/vmui):\n", vl.URL, vl.URL)
	for _, q := range victoria.LogsQueries {
		rows, err := vl.LogsQL(ctx, q.Query)
		if err != nil {
			return err
		}
		if err := writeAnswer(out, q, rows); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "\nPromQL (curl %s/api/v1/query --data-urlencode 'query=...', or the web UI at %s/vmui;\n", vm.URL, vm.URL)
	fmt.Fprintln(out, "increase_pure counts a series' first sample too, which a run this short needs; rate() works on a long-running collector):")
	now := time.Now()
	for _, q := range victoria.MetricsQueries {
		samples, err := vm.PromQL(ctx, q.Query, now)
		if err != nil {
			return err
		}
		rows := make([]map[string]string, len(samples))
		for i, s := range samples {
			rows[i] = map[string]string{"value": strconv.FormatFloat(s.Value, 'f', -1, 64)}
			for k, v := range s.Labels {
				rows[i][k] = v
			}
		}
		if err := writeAnswer(out, q, rows); err != nil {
			return err
		}
	}
	return nil
}

func writeAnswer(out io.Writer, q victoria.Query, rows []map[string]string) error {
	fmt.Fprintf(out, "\n%s:\n  %s\n", q.Question, q.Query)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  \t%s\t\n", strings.Join(q.Columns, "\t"))
	for _, row := range rows {
		cells := make([]string, len(q.Columns))
		for i, c := range q.Columns {
			cells[i] = row[c]
		}
		fmt.Fprintf(tw, "  \t%s\t\n", strings.Join(cells, "\t"))
	}
	return tw.Flush()
}
