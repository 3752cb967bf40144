//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/otlpsink"
)

// The collector-CPU phase: the write loop, named like the traced process, makes a
// fixed number of write(2) calls while the built collector traces it; the phase
// reads the collector's CPU time (utime+stime, all threads) from just before the
// loop to the moment the last record arrived, and divides by the records
// delivered. The receiver traces only the loop's executable, with a 256 MiB ring
// buffer and a budget that never limits it (collcpuBudget), so that normally no
// record is lost; whatever the kernel or the pipeline still loses is read from
// the collector's own counters and reported beside the figure, never waited for.
// Each exporter variant runs against each collector binary in turn (A B A B ...)
// so that both see the same machine.

// collcpuBudget charges every record, as the receiver's default does, but never
// limits the loop (the loop phase's chargedBudget): at the default 200,000
// records/s with a burst of 20,000, a tight loop of about 300,000 writes/s lost
// a third of its records as over budget, and the phase would wait for records
// that never come (637,952 of 1,000,000 delivered).
var collcpuBudget = collector.Budget{RecordsPerSecond: chargedBudget.RecordsPerSecond, Burst: chargedBudget.Burst}

// collcpuBatchSize is the batch processor's send_batch_size in the otlp_grpc
// variants (-collcpu-batch); 0 keeps its default.
var collcpuBatchSize int

// collVariant is one pipeline behind the receiver.
type collVariant struct {
	name        string
	key         string // as -collcpu-exporters names it
	compression string // "" for the debug exporter
}

func collVariants(list string) ([]collVariant, error) {
	var out []collVariant
	for _, v := range strings.Split(list, ",") {
		switch v = strings.TrimSpace(v); v {
		case "debug":
			out = append(out, collVariant{name: "debug (verbosity basic)", key: v})
		case "none", "snappy", "zstd", "gzip":
			out = append(out, collVariant{name: "otlp_grpc, compression " + v, key: v, compression: v})
		default:
			return nil, fmt.Errorf("-collcpu-exporters: %q: want debug, none, snappy, zstd or gzip", v)
		}
	}
	return out, nil
}

// collLosses are the records the collector's own counters say were lost, by where.
type collLosses struct {
	OverBudget, RingbufFull, InflightFull int64 // in the kernel, by reason
	Malformed                             int64 // read but not decodable
	Pipeline                              int64 // refused or failed between the receiver and the exporter's destination
}

// lossesFrom reads the losses from the collector's counters (collector.Telemetry's
// names). A failed export in a pipeline without a queue (the debug exporter's)
// is counted by the exporter and by the receiver that got the error: the larger
// side is the records lost.
func lossesFrom(c map[string]float64) collLosses {
	receiver := c["otelcol_receiver_refused_log_records"] + c["otelcol_receiver_failed_log_records"]
	exporter := c["otelcol_exporter_send_failed_log_records"] + c["otelcol_exporter_enqueue_failed_log_records"]
	return collLosses{
		OverBudget:   int64(c["otelcol_etcdebpf_records_lost_over_budget"]),
		RingbufFull:  int64(c["otelcol_etcdebpf_records_lost_ringbuf_full"]),
		InflightFull: int64(c["otelcol_etcdebpf_records_lost_inflight_full"]),
		Malformed:    int64(c["otelcol_etcdebpf_records_malformed"]),
		Pipeline:     int64(max(receiver, exporter)),
	}
}

func (l collLosses) total() int64 {
	return l.OverBudget + l.RingbufFull + l.InflightFull + l.Malformed + l.Pipeline
}

func (l collLosses) String() string {
	if l.total() == 0 {
		return "0"
	}
	var parts []string
	for _, p := range []struct {
		n    int64
		name string
	}{{l.OverBudget, "over budget"}, {l.RingbufFull, "ringbuf full"}, {l.InflightFull, "inflight full"}, {l.Malformed, "malformed"}, {l.Pipeline, "in the pipeline"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.name))
		}
	}
	return fmt.Sprintf("%d (%s)", l.total(), strings.Join(parts, ", "))
}

type collSample struct {
	Binary, Variant string
	Started         time.Time
	Load1           float64 // 1-minute load average at the start
	Produced        int64   // records the loop made: one per call, and one for its report line
	Read            int64   // records the receiver read from the ring buffer
	Arrived         int64   // records that reached the debug exporter or the sink (again when the exporter retried a batch)
	Delivered       int64   // records that arrived, each once
	Lost            collLosses
	CPUSecs         float64   // from just before the loop to the last arrival
	WireBytes       int64     // OTLP request bytes as they arrived (compressed)
	Short           string    // why the wait ended before every record was delivered or counted lost; "" when none is missing
	Profile         string    // the collector's CPU profile of the run (-collcpu-profile); "" for none
	ProfileTotal    float64   // its samples, in seconds
	ProfileParts    []float64 // profileParts' cumulative seconds in it
}

// Missing are the records neither delivered nor counted lost: 0 unless a
// counter is wrong.
func (s collSample) Missing() int64 { return max(0, s.Produced-s.Delivered-s.Lost.total()) }

func (s collSample) usPerRecord() float64 {
	if s.Delivered == 0 {
		return 0
	}
	return s.CPUSecs / float64(s.Delivered) * 1e6
}

// account fills in what the collector's counters say: the records read, the
// losses, and the records delivered (each once: a retried batch arrives twice).
func (s *collSample) account(counters map[string]float64) {
	s.Read = int64(counters["otelcol_etcdebpf_records_read"])
	s.Lost = lossesFrom(counters)
	s.Delivered = min(s.Arrived, max(0, s.Read-s.Lost.Malformed-s.Lost.Pipeline))
}

// runCollectorCPU alternates the binaries for every variant, runs times. With
// profileDir, each run leaves the collector's CPU profile there, named by the
// binary's place in binaries, the variant and the run.
func runCollectorCPU(work, writer string, binaries []string, variants []collVariant, runs, calls int, profileDir string) ([]collSample, error) {
	var out []collSample
	for i := 1; i <= runs; i++ {
		for _, v := range variants {
			for b, bin := range binaries {
				profile := ""
				if profileDir != "" {
					profile = filepath.Join(profileDir, fmt.Sprintf("collcpu-bin%d-%s-run%d.pprof", b+1, v.key, i))
				}
				s, err := collectorCPUOnce(work, writer, bin, v, calls, collcpuBudget, collcpuWait, profile)
				if err != nil {
					return out, fmt.Errorf("%s, %s: %w", bin, v.name, err)
				}
				out = append(out, s)
				logf("  collcpu run %d/%d %-30s %-40s load %.1f  %d records: %d delivered (%d arrived), lost %v, missing %d  %.2f s  %.3f µs/record delivered",
					i, runs, v.name, bin, s.Load1, s.Produced, s.Delivered, s.Arrived, s.Lost, s.Missing(), s.CPUSecs, s.usPerRecord())
				if s.Short != "" {
					logf("  collcpu: %s", s.Short)
				}
				if s.Profile != "" {
					logf("  collcpu: profile %s (go tool pprof -top %s %s)", s.Profile, bin, s.Profile)
				}
			}
		}
	}
	return out, nil
}

// collWait is how the phase waits for the records after the loop: it polls the
// arrivals, reads the counters once arrivals have paused for settle, and stops
// when every record is delivered or counted lost, when nothing has arrived for
// stall, or after limit.
type collWait struct{ poll, settle, stall, limit time.Duration }

var collcpuWait = collWait{poll: 20 * time.Millisecond, settle: time.Second, stall: 10 * time.Second, limit: 5 * time.Minute}

// collProbes read the running collector: the records that arrived, its own
// counters, its CPU seconds.
type collProbes struct {
	arrived  func() int64
	counters func() (map[string]float64, error)
	cpu      func() (float64, error)
}

// await waits for s.Produced records as w says, then fills in s: the records
// that arrived and what the counters say of the rest, the collector's CPU
// seconds from before (its reading when the loop started) to the last arrival,
// and why it stopped short. The counters are read only while nothing arrives,
// and after the CPU reading that counts: serving them costs the collector CPU.
func (w collWait) await(s *collSample, before float64, p collProbes) error {
	start := time.Now()
	cpuAt, err := p.cpu()
	if err != nil {
		return err
	}
	last, lastMove, lastRead := int64(0), start, time.Time{}
	var counters map[string]float64
	for {
		n := p.arrived()
		if n != last {
			if cpuAt, err = p.cpu(); err != nil {
				return err
			}
			last, lastMove = n, time.Now()
		}
		if n >= s.Produced {
			break
		}
		if quiet := time.Since(lastMove); quiet >= w.settle && time.Since(lastRead) >= w.settle {
			if counters, err = p.counters(); err != nil {
				return err
			}
			lastRead = time.Now()
			s.Arrived = n
			s.account(counters)
			if s.Missing() == 0 {
				break
			}
			if quiet >= w.stall {
				s.Short = fmt.Sprintf("nothing arrived for %v: %d of %d records neither delivered nor counted lost", w.stall, s.Missing(), s.Produced)
				break
			}
		}
		if time.Since(start) >= w.limit {
			s.Short = fmt.Sprintf("stopped waiting after %v, records still arriving", w.limit)
			break
		}
		time.Sleep(w.poll)
	}
	if counters, err = p.counters(); err != nil {
		return err
	}
	s.Arrived, s.CPUSecs = p.arrived(), cpuAt-before
	s.account(counters)
	if s.Short == "" && s.Missing() > 0 {
		s.Short = fmt.Sprintf("%d of %d records neither delivered nor counted lost", s.Missing(), s.Produced)
	}
	return nil
}

// collectorCPUOnce runs one collector; with profile, the pprof extension writes
// its CPU profile there when it stops (the binary must have the extension).
func collectorCPUOnce(work, writer, bin string, v collVariant, calls int, budget collector.Budget, wait collWait, profile string) (collSample, error) {
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
	ports, err := subprocess.FreePorts(2)
	if err != nil {
		return s, err
	}
	// The receiver's defaults but a ring buffer that holds every record of the
	// run, the budget and the loop's executable (no other process named comm on
	// the machine is traced); the debug exporter, or a batch processor and
	// otlp_grpc to the sink; the collector's own counters on a loopback port.
	p := collector.Pipeline{Comm: comm, Executable: writer, RingBuffer: 256 << 20, Budget: &budget, TelemetryPort: ports[0]}
	if profile != "" {
		// The collector's whole life: the extension has no window to match the
		// measured one, so the start-up (loading the BPF programs, some tenths
		// of a second) is in the profile too, in its own call tree.
		p.PprofFile, p.PprofPort = profile, ports[1]
	}
	if v.compression == "" {
		p.Debug = "basic"
	} else {
		p.OTLPEndpoint, p.Compression, p.Batch, p.BatchSize = sink.Endpoint(), v.compression, true, collcpuBatchSize
	}
	col, err := collector.Run(context.Background(), bin, p, dir, nil)
	if err != nil {
		return s, err
	}
	defer func() { _ = col.Stop(10 * time.Second) }()
	time.Sleep(200 * time.Millisecond) // start-up work done
	s.Started, s.Load1 = time.Now(), loadAvg()
	before, err := cpuSeconds(col.PID())
	if err != nil {
		return s, err
	}
	res, err := writeLoop(writer, etcdwriter.Options{Calls: int64(calls), Size: 64})
	if err != nil {
		return s, err
	}
	s.Produced = res.Calls + 1 // every call of the loop is a record; its final printf is one more write
	err = wait.await(&s, before, collProbes{
		arrived: func() int64 {
			if v.compression != "" {
				return int64(sink.RecordCount())
			}
			var n int64
			for _, m := range debugRe.FindAllStringSubmatch(col.Log(), -1) {
				k, _ := strconv.ParseInt(m[1], 10, 64)
				n += k
			}
			return n
		},
		counters: func() (map[string]float64, error) { return collector.Telemetry(p.TelemetryURL()) },
		cpu:      func() (float64, error) { return cpuSeconds(col.PID()) },
	})
	s.WireBytes = sink.WireBytes()
	if err == nil && profile != "" {
		// The extension writes the profile as the collector shuts down.
		if err = col.Stop(10 * time.Second); err == nil {
			if _, err = os.Stat(profile); err != nil {
				err = fmt.Errorf("no CPU profile after the collector stopped (build it with `make collector-pprof`): %w", err)
			}
			s.Profile = profile
			s.ProfileTotal, s.ProfileParts, err = profileSeconds(profile)
		}
	}
	return s, err
}

func (r *report) writeCollectorCPU(w func(string, ...any)) {
	if len(r.collcpu) == 0 {
		return
	}
	w("## Collector CPU per record\n\n")
	w("The write loop, named `%s` (the receiver's `comm`), makes %d write(2) calls of 64 bytes to /dev/null; the collector "+
		"traces it with the receiver's defaults (decode on, payload off, scheduler and block on) but a 256 MiB ring buffer, `executable` "+
		"set to the loop's binary (no other process is traced) and a budget that is charged on every record but never limits the loop "+
		"(%d records/s, burst %d; the default 200,000/s drops a third of a tight loop's records). "+
		"CPU = the collector's utime+stime (/proc/PID/stat, all threads, 10 ms ticks) from just before the loop until the last "+
		"record has reached the debug exporter's log or the OTLP sink (in the harness process, not counted); per record = CPU / "+
		"records delivered (each once: an exporter's retry of a batch costs its CPU again but counts once). "+
		"Lost = what the collector's own counters (its telemetry at level normal, read after the CPU) say was dropped: "+
		"in the kernel over budget, ring buffer full or pairing map full, malformed, or refused or failed in the pipeline. "+
		"Missing = records neither delivered nor counted lost (0 unless a counter is wrong). otlp_grpc variants: a `batch` processor (%s) and the exporter's defaults but `compression`. "+
		"Binaries and variants alternate; median (min–max) over %d runs.\n\n",
		comm, r.opts.collCalls, collcpuBudget.RecordsPerSecond, collcpuBudget.Burst, batchSizeText(collcpuBatchSize), r.opts.collRuns)
	var bins, variants []string
	for _, s := range r.collcpu {
		if !slices.Contains(bins, s.Binary) {
			bins = append(bins, s.Binary)
		}
		if !slices.Contains(variants, s.Variant) {
			variants = append(variants, s.Variant)
		}
	}
	w("| exporter |")
	for _, b := range bins {
		w(" %s µs/record delivered |", b)
	}
	if len(bins) == 2 {
		w(" ratio |")
	}
	w(" wire B/record | records delivered/run (median) | lost (most in a run) | missing (most) |\n|---|")
	for range bins {
		w("---|")
	}
	if len(bins) == 2 {
		w("---|")
	}
	w("---|---|---|---|\n")
	for _, v := range variants {
		w("| %s |", v)
		var meds, delivered []float64
		var mostLost collLosses
		var missing int64
		perBin := map[string][]float64{}
		for _, b := range bins {
			var xs []float64
			for _, s := range r.collcpu {
				if s.Variant != v || s.Binary != b {
					continue
				}
				xs = append(xs, s.usPerRecord())
				delivered = append(delivered, float64(s.Delivered))
				if s.Lost.total() > mostLost.total() {
					mostLost = s.Lost
				}
				missing = max(missing, s.Missing())
				if s.WireBytes > 0 && s.Arrived > 0 {
					perBin[b] = append(perBin[b], float64(s.WireBytes)/float64(s.Arrived))
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
		w(" %s | %.0f | %v | %d |\n", wire, median(delivered), mostLost, missing)
	}
	w("\nEvery run:\n\n| started (UTC) | load avg (1 min) | binary | exporter | records | delivered | arrived | lost | missing | CPU s | µs/record delivered |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.collcpu {
		w("| %s | %.2f | %s | %s | %d | %d | %d | %v | %d | %.2f | %.3f |\n", s.Started.UTC().Format(time.TimeOnly), s.Load1, s.Binary, s.Variant,
			s.Produced, s.Delivered, s.Arrived, s.Lost, s.Missing(), s.CPUSecs, s.usPerRecord())
	}
	for _, s := range r.collcpu {
		if s.Short != "" {
			w("\n**%s, %s, started %s: %s.**\n", s.Variant, s.Binary, s.Started.UTC().Format(time.TimeOnly), s.Short)
		}
	}
	w("\n")
	r.writeCollectorProfiles(w, bins, variants)
}

// writeCollectorProfiles writes, when the runs were profiled, where the
// collector's CPU went per record delivered: each part's median over the runs.
func (r *report) writeCollectorProfiles(w func(string, ...any), bins, variants []string) {
	profiled := false
	for _, s := range r.collcpu {
		profiled = profiled || s.ProfileParts != nil
	}
	if !profiled {
		return
	}
	w("### Where the collector's CPU goes (pprof)\n\nEach run's CPU profile (contrib's pprof extension, `-collcpu-profile`, " +
		"a build from `make collector-pprof`): the cumulative seconds of a few functions over the records delivered, µs a record, " +
		"median (min–max) over the profiled runs. Parts overlap where one calls another (allocation happens inside conversion and " +
		"marshalling alike). The profile spans the collector's whole life, so it holds the start-up that the measured CPU leaves out.\n\n")
	for _, v := range variants {
		w("%s:\n\n| part |", v)
		for _, b := range bins {
			w(" %s |", b)
		}
		w("\n|---|")
		for range bins {
			w("---|")
		}
		w("\n")
		for i := -1; i < len(profileParts); i++ {
			name := "all samples"
			if i >= 0 {
				name = profileParts[i].name
			}
			w("| %s |", name)
			for _, b := range bins {
				var xs []float64
				for _, s := range r.collcpu {
					if s.Variant != v || s.Binary != b || s.ProfileParts == nil || s.Delivered == 0 {
						continue
					}
					secs := s.ProfileTotal
					if i >= 0 {
						secs = s.ProfileParts[i]
					}
					xs = append(xs, secs/float64(s.Delivered)*1e6)
				}
				if len(xs) == 0 {
					w(" – |")
					continue
				}
				lo, hi := minMax(xs)
				w(" %.2f (%.2f–%.2f) |", median(xs), lo, hi)
			}
			w("\n")
		}
		w("\n")
	}
}

func batchSizeText(n int) string {
	if n == 0 {
		return "its defaults"
	}
	return fmt.Sprintf("send_batch_size %d", n)
}
