//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/otlpsink"
)

// The collector-CPU phase: the write loop, named like the traced process, makes a
// fixed number of write(2) calls while the built collector traces it; the phase
// reads the collector's CPU time (utime+stime, all threads) from just before the
// loop to the moment the last record has left the collector, and divides by the
// records. The ring buffer holds every record (256 MiB), so that no record is
// lost whatever the collector's speed. Each exporter variant runs against each
// collector binary in turn (A B A B ...) so that both see the same machine.

// collVariant is one pipeline behind the receiver.
type collVariant struct {
	name        string
	compression string // "" for the debug exporter
}

func collVariants(list string) ([]collVariant, error) {
	var out []collVariant
	for _, v := range strings.Split(list, ",") {
		switch v = strings.TrimSpace(v); v {
		case "debug":
			out = append(out, collVariant{name: "debug (verbosity basic)"})
		case "none", "snappy", "zstd", "gzip":
			out = append(out, collVariant{name: "otlp_grpc, compression " + v, compression: v})
		default:
			return nil, fmt.Errorf("-collcpu-exporters: %q: want debug, none, snappy, zstd or gzip", v)
		}
	}
	return out, nil
}

type collSample struct {
	Binary, Variant string
	Records         int64 // records the receiver produced: one per call
	Delivered       int64 // records that arrived (more than Records when the exporter retried a batch)
	CPUSecs         float64
	WireBytes       int64 // OTLP request bytes as they arrived (compressed)
}

func (s collSample) usPerRecord() float64 { return s.CPUSecs / float64(s.Records) * 1e6 }

// runCollectorCPU alternates the binaries for every variant, runs times.
func runCollectorCPU(work, writer string, binaries []string, variants []collVariant, runs, calls int) ([]collSample, error) {
	var out []collSample
	for i := 1; i <= runs; i++ {
		for _, v := range variants {
			for _, bin := range binaries {
				s, err := collectorCPUOnce(work, writer, bin, v, calls)
				if err != nil {
					return out, fmt.Errorf("%s, %s: %w", bin, v.name, err)
				}
				out = append(out, s)
				logf("  collcpu run %d/%d %-30s %-40s %d records (%d arrived)  %.2f s  %.3f µs/record", i, runs, v.name, bin, s.Records, s.Delivered, s.CPUSecs, s.usPerRecord())
			}
		}
	}
	return out, nil
}

func collectorCPUOnce(work, writer, bin string, v collVariant, calls int) (collSample, error) {
	s := collSample{Binary: bin, Variant: v.name}
	sink, err := otlpsink.Start("127.0.0.1:0", otlpsink.CountOnly())
	if err != nil {
		return s, err
	}
	defer sink.Stop()
	dir, err := os.MkdirTemp(work, "collcpu-")
	if err != nil {
		return s, err
	}
	defer os.RemoveAll(dir)
	// The receiver's defaults but a ring buffer that holds every record of the
	// run; the debug exporter, or a batch processor and otlp_grpc to the sink.
	p := collector.Pipeline{Comm: comm, RingBuffer: 256 << 20}
	if v.compression == "" {
		p.Debug = "basic"
	} else {
		p.OTLPEndpoint, p.Compression, p.Batch = sink.Endpoint(), v.compression, true
	}
	col, err := collector.Run(context.Background(), bin, p, dir, nil)
	if err != nil {
		return s, err
	}
	defer func() { _ = col.Stop(10 * time.Second) }()
	time.Sleep(200 * time.Millisecond) // start-up work done
	before, err := cpuSeconds(col.PID())
	if err != nil {
		return s, err
	}
	res, err := writeLoop(writer, etcdwriter.Options{Calls: int64(calls), Size: 64})
	if err != nil {
		return s, err
	}
	delivered := func() int64 {
		if v.compression != "" {
			return int64(sink.RecordCount())
		}
		var n int64
		for _, m := range debugRe.FindAllStringSubmatch(col.Log(), -1) {
			k, _ := strconv.ParseInt(m[1], 10, 64)
			n += k
		}
		return n
	}
	// Every call of the loop is a record; its final printf is one more write.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for delivered() < res.Calls+1 {
		if ctx.Err() != nil {
			return s, fmt.Errorf("%d of %d records delivered in 5 minutes", delivered(), res.Calls)
		}
		time.Sleep(20 * time.Millisecond)
	}
	after, err := cpuSeconds(col.PID())
	if err != nil {
		return s, err
	}
	s.Records, s.Delivered, s.CPUSecs, s.WireBytes = res.Calls+1, delivered(), after-before, sink.WireBytes()
	return s, nil
}

func (r *report) writeCollectorCPU(w func(string, ...any)) {
	if len(r.collcpu) == 0 {
		return
	}
	w("## Collector CPU per record\n\n")
	w("The write loop, named `%s` (the receiver's `comm`), makes %d write(2) calls of 64 bytes to /dev/null; the collector "+
		"traces it with the receiver's defaults (decode on, payload off) and a 256 MiB ring buffer that holds every record. "+
		"CPU = the collector's utime+stime (/proc/PID/stat, all threads, 10 ms ticks) from just before the loop until the last "+
		"record has reached the debug exporter's log or the OTLP sink (in the harness process, not counted); per record = CPU / "+
		"records produced (an exporter's retry of a batch the sink was slow to answer costs its CPU again but counts once). otlp_grpc variants: a `batch` processor and the exporter's defaults but `compression`. "+
		"Binaries and variants alternate; median (min–max) over %d runs.\n\n", comm, r.opts.collCalls, r.opts.collRuns)
	bins := []string{}
	seen := map[string]bool{}
	for _, s := range r.collcpu {
		if !seen[s.Binary] {
			seen[s.Binary] = true
			bins = append(bins, s.Binary)
		}
	}
	w("| exporter |")
	for _, b := range bins {
		w(" %s µs/record |", b)
	}
	if len(bins) == 2 {
		w(" ratio |")
	}
	w(" wire B/record |")
	w(" records/run, arrived (max) |\n|---|---|")
	for range bins {
		w("---|")
	}
	if len(bins) == 2 {
		w("---|")
	}
	w("---|\n")
	var variants []string
	seenV := map[string]bool{}
	for _, s := range r.collcpu {
		if !seenV[s.Variant] {
			seenV[s.Variant] = true
			variants = append(variants, s.Variant)
		}
	}
	for _, v := range variants {
		w("| %s |", v)
		var meds []float64
		var recs []float64
		var arrived int64
		perBin := map[string][]float64{}
		for _, b := range bins {
			var xs []float64
			for _, s := range r.collcpu {
				if s.Variant == v && s.Binary == b {
					xs = append(xs, s.usPerRecord())
					recs = append(recs, float64(s.Records))
					arrived = max(arrived, s.Delivered)
					if s.WireBytes > 0 {
						perBin[b] = append(perBin[b], float64(s.WireBytes)/float64(s.Delivered))
					}
				}
			}
			lo, hi := minMax(xs)
			meds = append(meds, median(xs))
			w(" %.2f (%.2f–%.2f) |", median(xs), lo, hi)
		}
		if len(bins) == 2 {
			w(" %.2f |", meds[1]/meds[0])
		}
		wire := "–"
		if len(perBin) > 0 {
			var ws []string
			for _, b := range bins {
				ws = append(ws, fmt.Sprintf("%.0f", median(perBin[b])))
			}
			wire = strings.Join(ws, " / ")
		}
		w(" %s | %.0f, %d |\n", wire, median(recs), arrived)
	}
	w("\n")
}
