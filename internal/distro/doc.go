// Package distro builds and runs otelcol-etcd, the collector distribution of
// builder-config.yaml, for the demo and the end-to-end test (Linux only).
package distro
