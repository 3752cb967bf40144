// Package victoria installs and runs the real backends that the end-to-end test
// and the demo store the collector's output in: VictoriaLogs for logs (OTLP/HTTP
// in, LogsQL out), VictoriaMetrics for metrics (OTLP/HTTP in, PromQL out), and
// Prometheus (OTLP/HTTP in, native histograms, PromQL and rules out) with its
// promtool.
//
// Each is built once from the Go module proxy into a cache directory and run on
// a free loopback port with its data in a temporary directory.
package victoria
