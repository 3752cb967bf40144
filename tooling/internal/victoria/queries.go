package victoria

// Query is a question a user asks of a backend about the receiver's data, in the
// backend's own language, and the columns of its answer. The demo prints these
// with their answers; the end-to-end test runs each and requires an answer, so a
// renamed attribute or metric cannot leave them silently empty.
type Query struct {
	Question string
	Query    string
	Columns  []string
}

// LogsQueries are what a user types into VictoriaLogs after the demo. Each
// attribute of a record is a field; VictoriaLogs computes on their decimal text.
var LogsQueries = []Query{
	{
		Question: "The slowest WAL syncs of the last minute",
		Query: `_time:1m etcd.syscall.name:=fdatasync file.name:~"\\.wal$"` +
			` | sort by (etcd.syscall.duration_ns desc) limit 5 | math round(etcd.syscall.duration_ns/1e6, 0.001) as ms | fields _time, host.name, file.name, ms`,
		Columns: []string{"_time", "host.name", "file.name", "ms"},
	},
	{
		Question: "fdatasync latency by node and file: count, p50 and p99 in ms",
		Query: `_time:1m etcd.syscall.name:=fdatasync | stats by (host.name, file.name) count() syncs,` +
			` quantile(0.5, etcd.syscall.duration_ns) p50, quantile(0.99, etcd.syscall.duration_ns) p99` +
			` | math round(p50/1e6, 0.001) as p50_ms, round(p99/1e6, 0.001) as p99_ms | sort by (syncs desc) limit 5 | fields host.name, file.name, syncs, p50_ms, p99_ms`,
		Columns: []string{"host.name", "file.name", "syncs", "p50_ms", "p99_ms"},
	},
	{
		Question: "What etcd spends its traced syscalls on, ranked, by node",
		Query: `_time:1m | stats by (host.name, etcd.syscall.name, etcd.syscall.fd_kind) count() calls, sum(etcd.syscall.duration_ns) total_ns` +
			` | math round(total_ns/1e6, 0.1) as total_ms | sort by (total_ms desc) limit 6 | fields host.name, etcd.syscall.name, etcd.syscall.fd_kind, calls, total_ms`,
		Columns: []string{"host.name", "etcd.syscall.name", "etcd.syscall.fd_kind", "calls", "total_ms"},
	},
}

// MetricsQueries are what a user types into VictoriaMetrics (PromQL, and its
// MetricsQL extensions): the receiver's histograms, every call counted. The
// answer's value is the column "value".
var MetricsQueries = []Query{
	{
		Question: "Sync latency p99 by node and file class over the last minute, in ms (the receiver's histograms)",
		Query: `round(histogram_quantile(0.99, sum by (host_name, etcd_syscall_name, etcd_syscall_file_class, vmrange)` +
			` (increase_pure(etcd_syscall_duration_seconds_bucket{etcd_syscall_name=~"fdatasync|fsync"}[1m]))) * 1e3, 0.001)`,
		Columns: []string{"host_name", "etcd_syscall_name", "etcd_syscall_file_class", "value"},
	},
	{
		Question: "Bytes written in the last minute by node, fd kind and file class",
		Query:    `sum by (host_name, etcd_syscall_fd_kind, etcd_syscall_file_class) (increase_pure(etcd_syscall_bytes_written_total[1m]))`,
		Columns:  []string{"host_name", "etcd_syscall_fd_kind", "etcd_syscall_file_class", "value"},
	},
	{
		Question: "The disks' service time p99 per node, disk and operation over the last minute, in ms (the disks' view)",
		Query: `round(histogram_quantile(0.99, sum by (host_name, system_device, etcdebpf_disk_operation, vmrange)` +
			` (increase_pure(etcdebpf_disk_service_time_seconds_bucket[1m]))) * 1e3, 0.001)`,
		Columns: []string{"host_name", "system_device", "etcdebpf_disk_operation", "value"},
	},
	{
		Question: "Who submitted the most bytes to the disks in the last minute, by node",
		Query: `topk(5, sum by (host_name, system_device, process_pid, process_executable_name)` +
			` (increase_pure(etcdebpf_disk_submitted_bytes_total{process_pid!=""}[1m])))`,
		Columns: []string{"host_name", "system_device", "process_pid", "process_executable_name", "value"},
	},
}
