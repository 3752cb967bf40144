//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/checkout"
)

// A collector's CPU profile (-collcpu-profile) read per record: the cumulative
// seconds of the functions that tell where the record path's time goes, each
// over the records delivered. The parts overlap where one calls another (the
// allocator runs inside the conversion and the marshalling alike); the
// profile covers the collector's whole life, so its start-up, outside the
// measured CPU, is a row of its own.
var profileParts = []struct {
	name string
	fn   *regexp.Regexp // matches the whole function name (fullName)
}{
	{"start-up: loading the BPF programs (not in the measured CPU)", fullName(`.*/internal/tracer\.Start`)},
	{"receiver: the reading goroutine, all of it", fullName(`.*/internal/controller\.\(\*Controller\)\.readRecords`)},
	{"receiver: converting records (LogBuilder.Append: decode, pdata)", fullName(`.*/internal/convert\.\(\*LogBuilder\)\.Append`)},
	{"receiver: reading the ring buffer", fullName(`.*/ringbuf\.\(\*Reader\)\.ReadInto`)},
	{"receiver: handing batches on (with the debug exporter: its work)", fullName(`.*/internal/controller\.\(\*Controller\)\.send`)},
	{"otlp_grpc exporter: a request (marshal, compress, send)", fullName(`.*/otlpexporter\.\(\*baseExporter\)\.pushLogs`)},
	{"otlp_grpc exporter: marshalling", fullName(`.*/otelgrpc\.\(\*codecV2\)\.Marshal`)},
	{"zstd's encoder goroutines", fullName(`.*/zstd\.\(\*Encoder\)\.nextBlock\.func1`)},
	{"allocation (runtime.mallocgc, every caller)", fullName(`runtime\.mallocgc`)},
	{"garbage collector's background marking", fullName(`runtime\.gcBgMarkWorker`)},
}

// fullName matches a function's whole name: one part's function must not
// also count its callees named after it (runtime.mallocgc's mallocgcTiny).
func fullName(expr string) *regexp.Regexp { return regexp.MustCompile(`^(?:` + expr + `)$`) }

// profileSeconds reads profile with `go tool pprof` and returns its total
// samples and each of profileParts' cumulative seconds, in that order.
func profileSeconds(profile string) (total float64, parts []float64, err error) {
	cmd := exec.Command(checkout.GoTool(), "tool", "pprof", "-top", "-cum", "-nodecount=100000", profile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, nil, fmt.Errorf("go tool pprof %s: %w: %s", profile, err, strings.TrimSpace(stderr.String()))
	}
	return parsePprofTop(string(out))
}

var (
	pprofTotal = regexp.MustCompile(`Total samples = ([\d.]+)(m?s)`)
	pprofRow   = regexp.MustCompile(`^\s*[\d.]+(?:m?s)?\s+[\d.]+%\s+[\d.]+%\s+([\d.]+)(m?s)\s+[\d.]+%\s+(.+)$`)
)

func pprofSecs(v, unit string) float64 {
	x, _ := strconv.ParseFloat(v, 64)
	if unit == "ms" {
		x /= 1000
	}
	return x
}

// parsePprofTop reads `go tool pprof -top -cum` output.
func parsePprofTop(out string) (total float64, parts []float64, err error) {
	parts = make([]float64, len(profileParts))
	found := false
	for line := range strings.Lines(out) {
		line = strings.TrimRight(line, "\n")
		if m := pprofTotal.FindStringSubmatch(line); m != nil {
			total, found = pprofSecs(m[1], m[2]), true
			continue
		}
		m := pprofRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := strings.TrimSuffix(strings.TrimSpace(m[3]), " (inline)")
		for i, p := range profileParts {
			if p.fn.MatchString(name) {
				parts[i] += pprofSecs(m[1], m[2])
			}
		}
	}
	if !found {
		return 0, nil, fmt.Errorf("no total in pprof's output")
	}
	return total, parts, nil
}
