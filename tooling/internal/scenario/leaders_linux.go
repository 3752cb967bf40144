//go:build linux

package scenario

import (
	"sync"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
)

// LeaderChange is a moment a new member was seen leading.
type LeaderChange struct {
	At     time.Time
	Leader string // "" while no single member leads
}

// leaderWatch asks every member who leads, four times a second, and keeps
// the changes: the picture marks them on the time axis (etcd's counter
// etcd_server_leader_changes_seen_total says how many, not when).
type leaderWatch struct {
	mu      sync.Mutex
	changes []LeaderChange
	done    chan struct{}
	stopped sync.WaitGroup
}

func watchLeaders(c *etcdtest.Cluster) *leaderWatch {
	w := &leaderWatch{done: make(chan struct{})}
	w.stopped.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		last := "?"
		for {
			name := ""
			if m, err := c.Leader(); err == nil {
				name = m.Name
			}
			if name != last {
				w.mu.Lock()
				w.changes = append(w.changes, LeaderChange{At: time.Now(), Leader: name})
				w.mu.Unlock()
				last = name
			}
			select {
			case <-w.done:
				return
			case <-tick.C:
			}
		}
	})
	return w
}

func (w *leaderWatch) stop() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.stopped.Wait()
}

// LeaderChanges is who led since the collector started: the first entry is
// the leader then, each further one a change.
func (s *Scenario) LeaderChanges() []LeaderChange {
	s.leaders.mu.Lock()
	defer s.leaders.mu.Unlock()
	return append([]LeaderChange(nil), s.leaders.changes...)
}
