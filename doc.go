// Package etcdebpfreceiver is the etcdebpf receiver of the OpenTelemetry
// Collector: it loads BPF programs (internal/tracer, bpf) onto the syscall
// tracepoints of write, pwrite64, writev, pwritev, fsync, fdatasync and
// sync_file_range, selects an etcd process in the kernel by name, pid, cgroup
// or executable file, and turns each completed call into a log record carrying the kernel's
// raw record and its decoded fields; with a metrics pipeline, it also exports the
// kernel's latency histograms. It measures and never interprets: no WAL parsing.
//
// The receiver runs on Linux only; elsewhere it builds and refuses to start.
// This package is the component: factory, configuration, and the lifecycle of
// one receiver shared by a logs and a metrics pipeline, over internal/controller,
// which runs the kernel session (internal/tracer, the only importer of bpf), the
// conversion to pdata (internal/convert) and the host watch (internal/hostwatch).
// internal/testing holds the tests' tooling; the nested module tooling/ the demo's,
// the bench's and the end-to-end tests'.
package etcdebpfreceiver
