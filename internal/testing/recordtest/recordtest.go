//go:build linux && (amd64 || arm64)

// Package recordtest lays out raw ring-buffer records as etcd_monitor.c writes
// them, for the tests and benchmarks of the code that reads them.
package recordtest

import (
	"encoding/binary"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

// Encode is the record the kernel writes for ev followed by payload: little
// endian, no padding (the layout has none).
func Encode(ev bpf.MonitorEvent, payload []byte) []byte {
	raw, err := binary.Append(nil, binary.LittleEndian, ev)
	if err != nil {
		panic(err) // a fixed-size struct always encodes
	}
	return append(raw, payload...)
}

// Chars is s as a NUL-padded C char array of n bytes, cut to n-1 bytes as the
// kernel cuts names: the form of MonitorEvent.Comm and FileName.
func Chars(s string, n int) []int8 {
	out := make([]int8, n)
	for i := range min(len(s), n-1) {
		out[i] = int8(s[i])
	}
	return out
}
