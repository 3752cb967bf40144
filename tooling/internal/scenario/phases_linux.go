//go:build linux

package scenario

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
)

// Target says which member a fault hits, chosen when its phase begins.
type Target int

const (
	// TheLeader is the member leading when the phase begins.
	TheLeader Target = iota
	// AFollower is the first member, in member order, not leading then.
	AFollower
)

// Phase is a stretch of the schedule: a fault (or none) for a while.
type Phase struct {
	Name     string // "healthy", "leader's disk throttled", "recovered", ...
	Fault    Fault
	Target   Target // whom the fault hits; the neighbour hits the disk, every member
	Duration time.Duration
}

// PhaseResult is a phase as it ran: when, whom its fault hit, and each
// member's own figures at its start and end.
type PhaseResult struct {
	Phase
	Start, End    time.Time
	Target        string // the member the fault hit; "" for none or all
	TargetPID     int
	FaultPIDs     []int      // the neighbour's or the CPU hogs' pids
	Before, After []Snapshot // per member, in member order
}

// Snapshot is what a member says of itself at one moment: its metrics and the
// warnings in its log so far.
type Snapshot struct {
	Member            string
	PID               int
	At                time.Time
	WALSyncs          float64            // etcd_disk_wal_fsync_duration_seconds_count
	WAL               etcdtest.Histogram // etcd_disk_wal_fsync_duration_seconds
	LeaderChanges     float64            // etcd_server_leader_changes_seen_total
	HeartbeatFailures float64            // etcd_server_heartbeat_send_failures_total
	Puts              float64            // etcd_mvcc_put_total: puts this member applied
	Leader            bool               // etcd_server_is_leader
	SlowFdatasyncs    int                // "slow fdatasync" warnings in its log
	LateHeartbeats    int                // "leader failed to send out heartbeat on time" warnings
}

// Log lines etcd writes when its disk is slow.
const (
	logSlowFdatasync = "slow fdatasync"
	logLateHeartbeat = "leader failed to send out heartbeat on time"
)

// snapshot reads m's figures now.
func snapshot(m *etcdtest.Server) (Snapshot, error) {
	s := Snapshot{Member: m.Name, PID: m.PID(), At: time.Now()}
	var errs []error
	read := func(name string, dst *float64) {
		v, err := m.Metric(name)
		errs = append(errs, err)
		*dst = v
	}
	read("etcd_disk_wal_fsync_duration_seconds_count", &s.WALSyncs)
	read("etcd_server_leader_changes_seen_total", &s.LeaderChanges)
	read("etcd_server_heartbeat_send_failures_total", &s.HeartbeatFailures)
	read("etcd_mvcc_put_total", &s.Puts)
	var leader float64
	read("etcd_server_is_leader", &leader)
	s.Leader = leader == 1
	var err error
	s.WAL, err = m.Histogram("etcd_disk_wal_fsync_duration_seconds")
	errs = append(errs, err)
	log, err := os.ReadFile(m.LogPath())
	errs = append(errs, err)
	s.SlowFdatasyncs = strings.Count(string(log), logSlowFdatasync)
	s.LateHeartbeats = strings.Count(string(log), logLateHeartbeat)
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("member %s: %w", m.Name, err)
	}
	return s, nil
}

// Snapshots reads every member's figures.
func (s *Scenario) Snapshots() ([]Snapshot, error) {
	out := make([]Snapshot, len(s.Cluster.Members))
	var errs []error
	for i, m := range s.Cluster.Members {
		var err error
		out[i], err = snapshot(m)
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// Run runs the phases in order, each fault injected at its phase's start and
// removed at its end; onPhase (if set) gets each result as its phase ends.
// Each phase begins and ends just after a collection of the receiver's
// histograms, where etcd's metrics are read, so that the two count over the
// same stretch to a few milliseconds. When ctx ends, the fault in place is
// removed and Run returns ctx's error.
func (s *Scenario) Run(ctx context.Context, phases []Phase, onPhase func(PhaseResult)) ([]PhaseResult, error) {
	var results []PhaseResult
	var before []Snapshot
	for _, p := range phases {
		if before == nil {
			var err error
			if before, err = s.alignedSnapshots(ctx); err != nil {
				return results, err
			}
		}
		r, err := s.runPhase(ctx, p, before)
		if err != nil {
			return results, fmt.Errorf("phase %q: %w", p.Name, err)
		}
		results = append(results, r)
		before = r.After
		if onPhase != nil {
			onPhase(r)
		}
	}
	return results, nil
}

func (s *Scenario) runPhase(ctx context.Context, p Phase, before []Snapshot) (PhaseResult, error) {
	r := PhaseResult{Phase: p, Before: before, Start: time.Now()}
	if p.Fault != NoFault {
		if err := s.inject(&r); err != nil {
			return r, err
		}
	}
	fmt.Fprintf(s.progress, "phase %q (%s) for %s%s\n", p.Name, p.Fault, p.Duration, targetNote(r))
	timer := time.NewTimer(p.Duration)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
	undoErr := s.removeFault()
	r.End = time.Now()
	if ctx.Err() != nil {
		return r, errors.Join(context.Cause(ctx), undoErr)
	}
	if undoErr != nil {
		return r, undoErr
	}
	var err error
	r.After, err = s.alignedSnapshots(ctx)
	return r, err
}

// alignedSnapshots waits until just after the receiver's next collection and
// reads every member's figures then.
func (s *Scenario) alignedSnapshots(ctx context.Context) ([]Snapshot, error) {
	if err := sleepCtx(ctx, time.Until(s.nextCollection(time.Now()).Add(collectionSlack))); err != nil {
		return nil, err
	}
	return s.Snapshots()
}

// collectionSlack is how long after a collection etcd's metrics are read:
// the receiver reads its maps in well under this.
const collectionSlack = 20 * time.Millisecond

// nextCollection predicts the receiver's first collection after t from the
// last one in the sink: its ticker fires every CollectionInterval. Before
// any has arrived, it is t.
func (s *Scenario) nextCollection(t time.Time) time.Time {
	last := lastCollection(s.Sink.Metrics())
	if last.IsZero() {
		return t
	}
	ticks := t.Sub(last)/CollectionInterval + 1
	return last.Add(ticks * CollectionInterval)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-timer.C:
		return nil
	}
}

func targetNote(r PhaseResult) string {
	switch {
	case r.Target != "":
		return fmt.Sprintf(", on member %s (pid %d)", r.Target, r.TargetPID)
	case len(r.FaultPIDs) > 0:
		return fmt.Sprintf(", pids %v", r.FaultPIDs)
	}
	return ""
}

// inject puts r's fault in place.
func (s *Scenario) inject(r *PhaseResult) error {
	var in *injected
	var err error
	if r.Fault == Neighbour {
		in, err = neighbour(s.dir)
	} else {
		target, terr := s.pick(r.Phase.Target)
		if terr != nil {
			return terr
		}
		r.Target, r.TargetPID = target.Name, target.PID()
		switch r.Fault {
		case DiskThrottle:
			in, err = throttle(target.PID(), target.DataDir)
		case CPUContention:
			in, err = contend(target.PID(), s.dir)
		default:
			err = fmt.Errorf("unknown fault %v", r.Fault)
		}
	}
	if err != nil {
		return fmt.Errorf("injecting %s: %w", r.Fault, err)
	}
	r.FaultPIDs = in.pids
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped { // Stop ran meanwhile (Ctrl-C): it found no fault to undo
		return errors.Join(errors.New("stopped"), in.undo())
	}
	s.fault = in
	return nil
}

func (s *Scenario) removeFault() error {
	s.mu.Lock()
	in := s.fault
	s.fault = nil
	s.mu.Unlock()
	if in == nil {
		return nil
	}
	return in.undo()
}

func (s *Scenario) pick(t Target) (*etcdtest.Server, error) {
	leader, err := s.Cluster.WaitLeader(10 * time.Second)
	if err != nil {
		return nil, err
	}
	if t == TheLeader {
		return leader, nil
	}
	for _, m := range s.Cluster.Members {
		if m != leader {
			return m, nil
		}
	}
	return nil, errors.New("a cluster of one has no follower")
}
