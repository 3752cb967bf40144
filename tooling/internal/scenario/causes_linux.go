//go:build linux

package scenario

import (
	"strings"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/logtest"
)

// SlowSync is one WAL fdatasync the receiver sent a record of (those of at
// least Options.MinDuration) with where its time went (docs/why-slow.md).
type SlowSync struct {
	PID                                    int
	At                                     time.Time // the call's entry
	OnDisk                                 bool      // it carries what its disk did (the receiver's block view)
	DurationNs, BlockedNs, RunnableNs      int64
	DeviceNs, DiskOwnBytes, DiskOtherBytes int64
}

// SlowSyncs picks the WAL fdatasyncs out of the records.
func SlowSyncs(records []logtest.Record) []SlowSync {
	var out []SlowSync
	for _, r := range records {
		if r.Str("etcd.syscall.name") != "fdatasync" || !strings.HasSuffix(r.Str("file.name"), ".wal") {
			continue
		}
		out = append(out, SlowSync{
			PID: int(r.Int("process.pid")), At: r.Timestamp().AsTime(), OnDisk: r.Str("system.device") != "",
			DurationNs: r.Int("etcd.syscall.duration_ns"), BlockedNs: r.Int("etcd.syscall.blocked_ns"), RunnableNs: r.Int("etcd.syscall.runnable_ns"),
			DeviceNs: r.Int("etcd.syscall.disk.device_ns"), DiskOwnBytes: r.Int("etcd.syscall.disk.own_bytes"), DiskOtherBytes: r.Int("etcd.syscall.disk.others_bytes"),
		})
	}
	return out
}

// Causes adds up a member's slow WAL syncs over a phase: how many, and where
// their time went.
type Causes struct {
	Syncs, OnDisk                          int // OnDisk: of them, those carrying their disk's figures
	DurationNs, BlockedNs, RunnableNs      int64
	DeviceNs, DiskOwnBytes, DiskOtherBytes int64
}

// Share is part's share of the slow syncs' time, 0 when there were none.
func (c Causes) Share(part int64) float64 {
	if c.DurationNs == 0 {
		return 0
	}
	return float64(part) / float64(c.DurationNs)
}

// OnCPUNs is the slow syncs' time neither blocked nor runnable: the kernel
// working on them.
func (c Causes) OnCPUNs() int64 { return c.DurationNs - c.BlockedNs - c.RunnableNs }

// causesOf adds up pid's slow syncs that began in [from, to).
func causesOf(slow []SlowSync, pid int, from, to time.Time) Causes {
	var c Causes
	for _, s := range slow {
		if s.PID != pid || s.At.Before(from) || !s.At.Before(to) {
			continue
		}
		c.Syncs++
		if s.OnDisk {
			c.OnDisk++
		}
		c.DurationNs += s.DurationNs
		c.BlockedNs += s.BlockedNs
		c.RunnableNs += s.RunnableNs
		c.DeviceNs += s.DeviceNs
		c.DiskOwnBytes += s.DiskOwnBytes
		c.DiskOtherBytes += s.DiskOtherBytes
	}
	return c
}
