//go:build linux

package scenario

import (
	"math"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
)

// MemberFigures is one member over one phase: what the receiver measured of
// its WAL fdatasyncs beside what etcd says of itself.
type MemberFigures struct {
	Member string
	PID    int
	Leader bool // at the phase's end
	Hit    bool // the phase's fault hit this member

	Receiver  WALPoint           // the receiver's histogram's growth over the phase
	EtcdSyncs float64            // etcd's own WAL fsync count's growth
	Etcd      etcdtest.Histogram // etcd's own histogram's growth

	LeaderChanges, HeartbeatFailures float64 // etcd's counters' growth
	SlowFdatasyncs, LateHeartbeats   int     // its log's warnings in the phase
	Puts                             float64 // puts it applied

	Slow Causes // its slow WAL syncs' (those the receiver sent records of) and where their time went
}

// Observed is what the receiver sent, read out of the sink: the WAL
// fdatasync histograms and the slow syncs' records.
type Observed struct {
	Series  map[int]WALSeries // by pid
	Slow    []SlowSync
	metrics []pmetric.Metrics
}

// Observed reads what the receiver sent so far.
func (s *Scenario) Observed() Observed {
	md := s.Sink.Metrics()
	return Observed{Series: WALSeriesByPID(md), Slow: SlowSyncs(s.Sink.Records()), metrics: md}
}

// Submitters is who submitted what to the disks over the phase, most first.
func (o Observed) Submitters(r PhaseResult) []Submitter {
	if len(r.Before) == 0 || len(r.After) == 0 {
		return nil
	}
	return SubmittersBetween(o.metrics, r.Before[0].At, r.After[0].At)
}

// Figures sets each member's figures over the phase beside the receiver's.
func (r PhaseResult) Figures(obs Observed) []MemberFigures {
	out := make([]MemberFigures, len(r.Before))
	for i, b := range r.Before {
		a := r.After[i]
		out[i] = MemberFigures{
			Member: b.Member, PID: b.PID, Leader: a.Leader, Hit: b.Member == r.Target,
			Receiver:          obs.Series[b.PID].Between(b.At, a.At),
			Slow:              causesOf(obs.Slow, b.PID, b.At, a.At),
			EtcdSyncs:         a.WALSyncs - b.WALSyncs,
			Etcd:              a.WAL.Since(b.WAL),
			LeaderChanges:     a.LeaderChanges - b.LeaderChanges,
			HeartbeatFailures: a.HeartbeatFailures - b.HeartbeatFailures,
			SlowFdatasyncs:    a.SlowFdatasyncs - b.SlowFdatasyncs,
			LateHeartbeats:    a.LateHeartbeats - b.LateHeartbeats,
			Puts:              a.Puts - b.Puts,
		}
	}
	return out
}

// Duration is the phase's length between its two reads of etcd's metrics.
func (r PhaseResult) Duration() time.Duration {
	if len(r.Before) == 0 || len(r.After) == 0 {
		return r.End.Sub(r.Start)
	}
	return r.After[0].At.Sub(r.Before[0].At)
}

// ThrottleFloor is the lower bound of the bucket, in an exponential
// histogram at scale (the receiver's), that holds 1/ThrottleIOPS seconds: a
// WAL sync of a throttled member waits for at least one write slot, so its p99
// lies in that bucket or above.
func ThrottleFloor(scale int32) float64 {
	return bucketLower(1/float64(ThrottleIOPS), scale)
}

// bucketLower is the lower bound of the exponential histogram bucket at
// scale holding v: buckets are (base^i, base^(i+1)], base 2^(2^-scale).
func bucketLower(v float64, scale int32) float64 {
	perOctave := math.Exp2(float64(scale))
	i := math.Ceil(math.Log2(v)*perOctave) - 1
	return math.Exp2(i / perOctave)
}
