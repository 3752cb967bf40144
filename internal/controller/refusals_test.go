//go:build linux && (amd64 || arm64)

package controller

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// A pipeline refusing every batch gets a warning at once, then one per
// refusalLogInterval carrying what was refused in between.
func TestRefusalLogIsRateLimited(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	r := &refusalLog{logger: zap.New(core), message: "The pipeline refused records", unit: "records"}
	refused := errors.New("queue is full")
	start := time.Unix(1000, 0)
	for i := range 25 { // a batch every second for 25 s
		r.add(100, refused, start.Add(time.Duration(i)*time.Second))
	}
	lines := logs.All()
	require.Len(t, lines, 3, "at 0 s, 10 s and 20 s")
	for i, want := range []struct {
		records, batches int64
		since            time.Duration
	}{{100, 1, 0}, {1000, 10, 10 * time.Second}, {1000, 10, 10 * time.Second}} {
		assert.Equal(t, zapcore.WarnLevel, lines[i].Level)
		assert.Equal(t, "The pipeline refused records", lines[i].Message)
		fields := lines[i].ContextMap()
		assert.Equal(t, want.records, fields["records"], "line %d", i)
		assert.Equal(t, want.batches, fields["batches"], "line %d", i)
		assert.Equal(t, want.since, fields["since"], "line %d", i)
		assert.Equal(t, "queue is full", fields["error"])
	}
	assert.Equal(t, 400, r.refused, "the last 4 batches wait for the next warning")
}
