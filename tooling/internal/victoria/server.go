//go:build linux

package victoria

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
)

// Server is a running backend on loopback.
type Server struct {
	Product Product
	URL     string // http://127.0.0.1:<port>
	LogPath string // its stdout and stderr

	proc *subprocess.Process
}

// Start runs the backend at bin with its data and log in dataDir, on a free
// loopback port, and waits until it answers its health check.
// extra are more flags, after p.Args.
func Start(ctx context.Context, p Product, bin, dataDir string, extra ...string) (*Server, error) {
	ports, err := subprocess.FreePorts(1)
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	args := []string{
		p.ListenFlag + "=" + addr,
		p.DataFlag + "=" + filepath.Join(dataDir, "data"),
	}
	args = append(append(args, p.Args...), extra...)
	proc, err := subprocess.Start(subprocess.Options{
		Name:    p.Name,
		Path:    bin,
		Args:    args,
		LogPath: filepath.Join(dataDir, p.Name+".log"),
	})
	if err != nil {
		return nil, err
	}
	s := &Server{Product: p, URL: "http://" + addr, LogPath: proc.LogPath, proc: proc}
	if err := s.waitReady(ctx, 30*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		err := s.get(ctx, s.Product.HealthPath, nil, io.Discard)
		if err == nil {
			return nil
		}
		select {
		case <-s.proc.Exited():
			return fmt.Errorf("%s exited during start-up; its last lines:\n%s", s.Product.Name, s.proc.Tail())
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer %s%s within %s (%w); its last lines:\n%s", s.Product.Name, s.URL, s.Product.HealthPath, within, err, s.proc.Tail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PID is the backend's process id.
func (s *Server) PID() int { return s.proc.PID() }

// Stop ends the backend: SIGTERM, then SIGKILL after 10 s.
func (s *Server) Stop() { _ = s.proc.Stop(10 * time.Second) }

// Flush makes everything ingested so far searchable at once, instead of after
// the backend's own flush interval (about a second).
func (s *Server) Flush(ctx context.Context) error {
	return s.get(ctx, "/internal/force_flush", nil, io.Discard)
}

// get fetches path with the query q and copies the body to w.
func (s *Server) get(ctx context.Context, path string, q url.Values, w io.Writer) error {
	u := s.URL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s: %s", s.Product.Name, path, resp.Status, strings.TrimSpace(string(body)))
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// --- VictoriaLogs ---------------------------------------------------------

// OTLPLogsEndpoint is the URL the collector's otlp_http exporter sends logs to
// (its logs_endpoint).
func (s *Server) OTLPLogsEndpoint() string { return s.URL + "/insert/opentelemetry/v1/logs" }

// LogsQL runs a LogsQL query and returns one map of fields per result row.
// VictoriaLogs keeps every field as a string: integers in decimal, bytes in
// standard base64.
func (s *Server) LogsQL(ctx context.Context, query string) ([]map[string]string, error) {
	var body bytes.Buffer
	if err := s.get(ctx, "/select/logsql/query", url.Values{"query": {query}}, &body); err != nil {
		return nil, fmt.Errorf("LogsQL %q: %w", query, err)
	}
	var rows []map[string]string
	sc := bufio.NewScanner(&body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		row := map[string]string{}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, fmt.Errorf("LogsQL %q: a result row is not a JSON object of strings: %w", query, err)
		}
		rows = append(rows, row)
	}
	return rows, sc.Err()
}

// --- VictoriaMetrics --------------------------------------------------------

// OTLPMetricsEndpoint is the URL the collector's otlp_http exporter sends
// metrics to (its metrics_endpoint).
func (s *Server) OTLPMetricsEndpoint() string { return s.URL + s.Product.OTLPMetricsPath }

// Sample is one series of a PromQL instant query's result. A native
// histogram's Value is its count.
type Sample struct {
	Labels    map[string]string
	Value     float64
	Histogram *Histogram // the native histogram, when the result is one
}

// Histogram is a native histogram as Prometheus's query API returns it.
type Histogram struct {
	Count, Sum float64
	// Buckets are [boundary rule, lower, upper, count]: boundary rule 0 is
	// (lower, upper], 1 [lower, upper), 2 (lower, upper), 3 [lower, upper].
	Buckets [][4]float64
}

// PromQL runs an instant PromQL (MetricsQL) query at time at.
func (s *Server) PromQL(ctx context.Context, query string, at time.Time) ([]Sample, error) {
	var body bytes.Buffer
	q := url.Values{"query": {query}, "time": {strconv.FormatFloat(float64(at.UnixNano())/1e9, 'f', 3, 64)}}
	if err := s.get(ctx, "/api/v1/query", q, &body); err != nil {
		return nil, fmt.Errorf("PromQL %q: %w", query, err)
	}
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
				// A native histogram comes as [time, {count, sum, buckets}].
				Histogram *[2]json.RawMessage `json:"histogram"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body.Bytes(), &resp); err != nil {
		return nil, fmt.Errorf("PromQL %q: %w", query, err)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("PromQL %q: %s", query, resp.Error)
	}
	samples := make([]Sample, 0, len(resp.Data.Result))
	for _, r := range resp.Data.Result {
		if r.Histogram != nil {
			h, err := parseHistogram(r.Histogram[1])
			if err != nil {
				return nil, fmt.Errorf("PromQL %q: %w", query, err)
			}
			samples = append(samples, Sample{Labels: r.Metric, Value: h.Count, Histogram: h})
			continue
		}
		str, ok := r.Value[1].(string)
		if !ok {
			return nil, fmt.Errorf("PromQL %q: value %v is not a string", query, r.Value[1])
		}
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("PromQL %q: %w", query, err)
		}
		samples = append(samples, Sample{Labels: r.Metric, Value: v})
	}
	return samples, nil
}

// parseHistogram reads the query API's native histogram, whose numbers are strings.
func parseHistogram(raw json.RawMessage) (*Histogram, error) {
	var h struct {
		Count   string  `json:"count"`
		Sum     string  `json:"sum"`
		Buckets [][]any `json:"buckets"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("a native histogram: %w", err)
	}
	num := func(v any) (float64, error) {
		switch v := v.(type) {
		case float64:
			return v, nil
		case string:
			return strconv.ParseFloat(v, 64)
		}
		return 0, fmt.Errorf("%v is neither a number nor a string", v)
	}
	var out Histogram
	var err error
	if out.Count, err = num(h.Count); err != nil {
		return nil, err
	}
	if out.Sum, err = num(h.Sum); err != nil {
		return nil, err
	}
	for _, b := range h.Buckets {
		if len(b) != 4 {
			return nil, fmt.Errorf("a native histogram bucket of %d fields: %v", len(b), b)
		}
		var bucket [4]float64
		for i, v := range b {
			if bucket[i], err = num(v); err != nil {
				return nil, err
			}
		}
		out.Buckets = append(out.Buckets, bucket)
	}
	return &out, nil
}
