//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/otlpsink"
)

// workload puts keys from clients loops until d has passed or ctx ends, and
// prints progress every second.
func workload(ctx context.Context, srv *etcdtest.Server, clients int, d time.Duration, out io.Writer, sink *otlpsink.Sink, pr *printer) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var puts atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	value := strings.Repeat("v", 256)
	for c := range clients {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				if _, err := srv.Put(fmt.Sprintf("demo/%d/%d", c, i), value); err != nil {
					if ctx.Err() == nil {
						errOnce.Do(func() { firstErr = fmt.Errorf("put: %w", err) })
						cancel()
					}
					return
				}
				puts.Add(1)
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			if err := context.Cause(ctx); firstErr == nil && err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return puts.Load(), fmt.Errorf("interrupted: %w", err)
			}
			return puts.Load(), firstErr
		case <-tick.C:
			fmt.Fprintf(out, "-- %s/%s: %d puts, %d records received (%d not shown: at most %d lines a second)\n",
				time.Since(start).Round(time.Second), d, puts.Load(), sink.RecordCount(), pr.takeSkipped(), pr.perSecond)
		}
	}
}
