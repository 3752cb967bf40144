// Package etcdebpfreceiver is the etcdebpf receiver of the OpenTelemetry
// Collector: it loads BPF programs (internal/tracer, bpf) onto the syscall
// tracepoints of write, pwrite64, writev, pwritev, fsync, fdatasync and
// sync_file_range, selects an etcd process in the kernel by name, pid, cgroup
// or executable file, and turns each completed call into a log record carrying the kernel's
// raw record and its decoded fields; with a metrics pipeline, it also exports the
// kernel's latency histograms. It measures and never interprets: no WAL parsing.
//
// The receiver runs on Linux only; elsewhere it builds and refuses to start.
// What ships is this package, bpf, internal/tracer and internal/metadata;
// internal/testing and cmd hold the tests', the demo's and the bench's tooling.
package etcdebpfreceiver
