//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/victoria"
)

// nextQuery is a question a user asks next, in a backend's own language, and
// the columns of its answer.
type nextQuery struct {
	question string
	query    string
	columns  []string
}

// logsQueries are what a user types into VictoriaLogs after the demo. Each
// attribute of a record is a field; VictoriaLogs computes on their decimal text.
var logsQueries = []nextQuery{
	{
		question: "The slowest WAL syncs of the last minute",
		query: `_time:1m etcd.syscall.name:=fdatasync file.name:~"\\.wal$"` +
			` | sort by (etcd.syscall.duration_ns desc) limit 5 | math round(etcd.syscall.duration_ns/1e6, 0.001) as ms | fields _time, file.name, ms`,
		columns: []string{"_time", "file.name", "ms"},
	},
	{
		question: "fdatasync latency by file: count, p50 and p99 in ms",
		query: `_time:1m etcd.syscall.name:=fdatasync | stats by (file.name) count() syncs,` +
			` quantile(0.5, etcd.syscall.duration_ns) p50, quantile(0.99, etcd.syscall.duration_ns) p99` +
			` | math round(p50/1e6, 0.001) as p50_ms, round(p99/1e6, 0.001) as p99_ms | sort by (syncs desc) limit 5 | fields file.name, syncs, p50_ms, p99_ms`,
		columns: []string{"file.name", "syncs", "p50_ms", "p99_ms"},
	},
	{
		question: "What etcd spends its traced syscalls on, ranked",
		query: `_time:1m | stats by (etcd.syscall.name, etcd.syscall.fd_kind) count() calls, sum(etcd.syscall.duration_ns) total_ns` +
			` | math round(total_ns/1e6, 0.1) as total_ms | sort by (total_ms desc) limit 6 | fields etcd.syscall.name, etcd.syscall.fd_kind, calls, total_ms`,
		columns: []string{"etcd.syscall.name", "etcd.syscall.fd_kind", "calls", "total_ms"},
	},
}

// metricsQueries are what a user types into VictoriaMetrics (PromQL, and its
// MetricsQL extensions): the receiver's histograms, every call counted. The
// answer's value is the column "value".
var metricsQueries = []nextQuery{
	{
		question: "Sync latency p99 by file class over the last minute, in ms (the receiver's histograms)",
		query: `round(histogram_quantile(0.99, sum by (etcd_syscall_name, etcd_syscall_file_class, vmrange)` +
			` (increase_pure(etcd_syscall_duration_seconds_bucket{etcd_syscall_name=~"fdatasync|fsync"}[1m]))) * 1e3, 0.001)`,
		columns: []string{"etcd_syscall_name", "etcd_syscall_file_class", "value"},
	},
	{
		question: "Bytes written in the last minute by fd kind and file class",
		query:    `sum by (etcd_syscall_fd_kind, etcd_syscall_file_class) (increase_pure(etcd_syscall_bytes_written_total[1m]))`,
		columns:  []string{"etcd_syscall_fd_kind", "etcd_syscall_file_class", "value"},
	},
}

// writeNextQueries runs each query against its backend and prints it with its
// answer: the demo's last screen is where a user's own querying starts.
func writeNextQueries(ctx context.Context, out io.Writer, vl, vm *victoria.Server) error {
	fmt.Fprintf(out, "\n== Next: the records are in VictoriaLogs, the histograms in VictoriaMetrics. Queries you would type next, with their answers.\n")
	fmt.Fprintf(out, "\nLogsQL (curl %s/select/logsql/query --data-urlencode 'query=...', or the web UI at %s/select/vmui):\n", vl.URL, vl.URL)
	for _, q := range logsQueries {
		rows, err := vl.LogsQL(ctx, q.query)
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
	for _, q := range metricsQueries {
		samples, err := vm.PromQL(ctx, q.query, now)
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

func writeAnswer(out io.Writer, q nextQuery, rows []map[string]string) error {
	fmt.Fprintf(out, "\n%s:\n  %s\n", q.question, q.query)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  \t%s\t\n", strings.Join(q.columns, "\t"))
	for _, row := range rows {
		cells := make([]string, len(q.columns))
		for i, c := range q.columns {
			cells[i] = row[c]
		}
		fmt.Fprintf(tw, "  \t%s\t\n", strings.Join(cells, "\t"))
	}
	return tw.Flush()
}
