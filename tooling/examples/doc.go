// Package examples tests the example collector configurations of the etcdebpf
// receiver, which live in the repository's top-level examples folder: it loads
// each one with the collector's own config loader, so that they keep working as
// the receiver and the collector change.
package examples
