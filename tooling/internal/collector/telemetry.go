//go:build linux

package collector

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Telemetry reads a collector's own metrics in the Prometheus text format from
// url (Pipeline.TelemetryURL, or any collector serving them), each summed over
// its labels unless selector names some: then only the series whose labels
// include every one of them count. Names are the Prometheus ones without the
// _total suffix (otelcol_etcdebpf_records_read, otelcol_exporter_queue_size).
func Telemetry(url string, selector ...string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, fmt.Errorf("the collector's telemetry: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the collector's telemetry at %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "otelcol_") {
			continue
		}
		name, rest, hasLabels := strings.Cut(line, "{")
		labels := ""
		if hasLabels {
			i := strings.LastIndexByte(rest, '}')
			if i < 0 {
				continue
			}
			labels, rest = rest[:i], rest[i+1:]
		} else {
			name, rest, _ = strings.Cut(line, " ")
		}
		if !hasAll(labels, selector) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		out[strings.TrimSuffix(name, "_total")] += v
	}
	return out, sc.Err()
}

// hasAll reports whether the label list labels (a="b",c="d") holds each of want (a="b").
func hasAll(labels string, want []string) bool {
	for _, w := range want {
		found := false
		for l := range strings.SplitSeq(labels, ",") {
			if l == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
