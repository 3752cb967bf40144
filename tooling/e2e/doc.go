// Package e2e holds the end-to-end test: the otelcol-etcd distribution, built
// with ocb from this checkout, traces a real etcd and exports over OTLP/gRPC to
// an in-test backend, and the test checks what arrives. Linux only, as root.
package e2e
