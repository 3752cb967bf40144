//go:build linux

package scenario

import (
	"strings"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/convert"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/logtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// SlowSync is one WAL fdatasync the receiver sent a record of (those of at
// least Options.MinDuration) with where its time went (docs/why-slow.md).
type SlowSync struct {
	PID        int
	At         time.Time // the call's entry
	DurationNs int64
	Parts      [tracer.PartCount]int64 // its time by part, adding up to DurationNs
	Cause      string                  // the largest part's name
}

// SlowSyncs picks the WAL fdatasyncs out of the records.
func SlowSyncs(records []logtest.Record) []SlowSync {
	var out []SlowSync
	for _, r := range records {
		if r.Str(convert.AttrName) != "fdatasync" || !strings.HasSuffix(r.Str(convert.AttrFileName), ".wal") {
			continue
		}
		s := SlowSync{PID: int(r.Int(convert.AttrProcessPID)), At: r.Timestamp().AsTime(),
			DurationNs: r.Int(convert.AttrDurationNs), Cause: r.Str(convert.AttrCause)}
		for p := range tracer.PartCount {
			s.Parts[p] = r.Int(convert.AttrTimeNs(p))
		}
		out = append(out, s)
	}
	return out
}

// Causes adds up a member's slow WAL syncs over a phase: how many, and where
// their time went.
type Causes struct {
	Syncs      int
	DurationNs int64
	Parts      [tracer.PartCount]int64
	// ByCause counts the syncs by their largest part.
	ByCause map[string]int
}

// Share is a part's share of the slow syncs' time, 0 when there were none.
func (c Causes) Share(p tracer.Part) float64 {
	if c.DurationNs == 0 {
		return 0
	}
	return float64(c.Parts[p]) / float64(c.DurationNs)
}

// Dominant is the part that took most of the slow syncs' time.
func (c Causes) Dominant() tracer.Part {
	best := tracer.PartCPU
	for p := range tracer.PartCount {
		if c.Parts[p] > c.Parts[best] {
			best = p
		}
	}
	return best
}

// causesOf adds up pid's slow syncs that began in [from, to).
func causesOf(slow []SlowSync, pid int, from, to time.Time) Causes {
	c := Causes{ByCause: map[string]int{}}
	for _, s := range slow {
		if s.PID != pid || s.At.Before(from) || !s.At.Before(to) {
			continue
		}
		c.Syncs++
		c.DurationNs += s.DurationNs
		for p, ns := range s.Parts {
			c.Parts[p] += ns
		}
		c.ByCause[s.Cause]++
	}
	return c
}
