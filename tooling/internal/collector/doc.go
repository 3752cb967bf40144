// Package collector builds and runs otelcol-etcd, the collector distribution of
// builder-config.yaml, for the demo, the bench and the end-to-end test (Linux only).
package collector
