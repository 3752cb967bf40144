//go:build linux && (amd64 || arm64)

package hostwatch

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/etcdebpf/etcdebpfreceiver/internal/process"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/proctest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

type lossTable struct {
	losses    map[int]tracer.Loss
	forgotten []int
}

func (l *lossTable) Losses() (map[int]tracer.Loss, error) { return l.losses, nil }
func (l *lossTable) ForgetLosses(pid int) error           { l.forgotten = append(l.forgotten, pid); return nil }

// A process that lost records is named as it ran, and its last losses are
// logged and its entry freed once it ended, however it ended.
func TestLossReporterEnds(t *testing.T) {
	for _, tt := range []struct {
		name  string
		then  func(fs *proctest.Procfs)
		ended bool
	}{
		{"runs", func(*proctest.Procfs) {}, false},
		{"exits", func(fs *proctest.Procfs) { fs.Exit(7) }, true},
		{"its pid given to another", func(fs *proctest.Procfs) { fs.Run(7, 90, "sh", "sh") }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := proctest.NewProcfs(t)
			fs.Run(7, 50, "etcd", "etcd")
			registry := process.NewRegistry(fs.FS())
			core, logs := observer.New(zap.WarnLevel)
			r := NewLossReporter(registry, zap.New(core))
			table := &lossTable{losses: map[int]tracer.Loss{7: {OverBudget: 3}}}
			start := time.Now()
			registry.Check()
			r.Check(table, start)
			assert.Equal(t, 1, logs.Len())
			assert.Equal(t, "etcd (unknown)", logs.All()[0].ContextMap()["process"], "named while it runs")

			tt.then(fs)
			table.losses[7] = tracer.Loss{OverBudget: 5}
			registry.Check()
			r.Check(table, start.Add(time.Second)) // within the log interval
			if !tt.ended {
				assert.Equal(t, 1, logs.Len(), "one line a minute")
				assert.Empty(t, table.forgotten)
				return
			}
			assert.Equal(t, 2, logs.Len(), "the last word on an ended process")
			last := logs.All()[1].ContextMap()
			assert.Equal(t, true, last["exited"])
			assert.Equal(t, "etcd (unknown)", last["process"])
			assert.Equal(t, []int{7}, table.forgotten)
			assert.Empty(t, r.processes)
		})
	}
}
