// Package examples holds the example collector configurations of the etcdebpf
// receiver; its test loads each one with the collector's own config loader, so
// that they keep working as the receiver and the collector change.
package examples
