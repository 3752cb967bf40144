//go:build linux && (amd64 || arm64)

package bpf

import "unsafe"

// The record layout, as etcd_monitor.c defines it: internal/tracer decodes it.
const (
	RecordVersion = uint16(MonitorRecordLayoutRECORD_VERSION)
	PayloadMax    = int(MonitorRecordLayoutPAYLOAD_MAX)
	// EventSize is the size of the fixed part of every record.
	EventSize = int(unsafe.Sizeof(MonitorEvent{}))
)
