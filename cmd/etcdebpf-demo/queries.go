//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/victoria"
)

// nextQuery is a question a user asks next, in the backend's own language, and
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

// writeNextQueries runs each query against the backend and prints it with its
// answer: the demo's last screen is where a user's own querying starts.
func writeNextQueries(ctx context.Context, out io.Writer, vl *victoria.Server) error {
	fmt.Fprintf(out, "\n== Next: the records are in VictoriaLogs. Queries you would type next, with their answers\n")
	fmt.Fprintf(out, "   (curl %s/select/logsql/query --data-urlencode 'query=...', or the web UI at %s/select/vmui):\n", vl.URL, vl.URL)
	for _, q := range logsQueries {
		rows, err := vl.LogsQL(ctx, q.query)
		if err != nil {
			return err
		}
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
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
