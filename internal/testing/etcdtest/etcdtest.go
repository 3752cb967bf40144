//go:build linux && (amd64 || arm64)

// Package etcdtest runs a real etcd server on loopback for tests and benchmarks,
// and talks to it over its JSON gateway so that no etcd client library is needed.
package etcdtest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
)

// DefaultCache is where scripts/install-etcd.sh installs etcd.
const DefaultCache = "/var/cache/etcdebpf/etcd-v3.6.14/bin"

// Binary finds an etcd server binary named exactly "etcd" (the receiver matches
// the process name): $ETCD_BIN (a directory), then the install script's cache.
func Binary() (string, error) {
	var tried []string
	for _, dir := range []string{os.Getenv("ETCD_BIN"), DefaultCache} {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, "etcd")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("no etcd binary at %s: run scripts/install-etcd.sh, or set ETCD_BIN to the directory holding etcd", strings.Join(tried, ", "))
}

// Server is a running single-member etcd.
type Server struct {
	Name      string // the member's name (--name)
	Cmd       *exec.Cmd
	DataDir   string
	ClientURL string
	log       *os.File
	binary    string
	args      []string
}

// Start runs etcd with its data in dataDir and waits until it serves requests.
func Start(binary, dataDir string) (*Server, error) {
	ports, err := subprocess.FreePorts(2)
	if err != nil {
		return nil, err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	logFile, err := os.Create(filepath.Join(dataDir, "etcd.log"))
	if err != nil {
		return nil, err
	}
	args := []string{
		"--name", "etcdtest",
		"--data-dir", filepath.Join(dataDir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "etcdtest=" + peer,
		"--log-outputs", "stderr",
	}
	s := &Server{Name: "etcdtest", DataDir: filepath.Join(dataDir, "data"), ClientURL: client, log: logFile, binary: binary, args: args}
	if err := s.start(); err != nil {
		logFile.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	if err := s.launch(); err != nil {
		return err
	}
	return s.waitServing(20 * time.Second)
}

// launch starts the process without waiting: a cluster's members serve only
// once a quorum of them runs.
func (s *Server) launch() error {
	s.Cmd = exec.Command(s.binary, s.args...)
	s.Cmd.Stdout, s.Cmd.Stderr = s.log, s.log
	s.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.Cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.binary, err)
	}
	return nil
}

// waitServing waits until a put through the server succeeds, and kills it if
// none does within timeout.
func (s *Server) waitServing(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := s.Put("etcdtest/ready", "1"); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			_ = s.Cmd.Process.Kill()
			_ = s.Cmd.Wait()
			return fmt.Errorf("etcd did not serve within %s (%v); its log is %s", timeout, err, s.log.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// LogPath is the file holding etcd's log (its stderr).
func (s *Server) LogPath() string { return s.log.Name() }

// PID is the server's process id.
func (s *Server) PID() int { return s.Cmd.Process.Pid }

// Kill kills the server with SIGKILL, as a crash would, and waits for it to exit.
func (s *Server) Kill() {
	_ = s.Cmd.Process.Kill()
	_ = s.Cmd.Wait()
}

// Restart starts the server again on the same data and ports, after Kill.
func (s *Server) Restart() error { return s.start() }

// Stop kills the server and waits for it.
func (s *Server) Stop() {
	_ = s.Cmd.Process.Kill()
	_ = s.Cmd.Wait()
	s.log.Close()
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// Put writes key=value through the v3 JSON gateway and returns the new revision.
func (s *Server) Put(key, value string) (int64, error) {
	body, _ := json.Marshal(map[string]string{
		"key":   base64.StdEncoding.EncodeToString([]byte(key)),
		"value": base64.StdEncoding.EncodeToString([]byte(value)),
	})
	resp, err := httpClient.Post(s.ClientURL+"/v3/kv/put", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("put %q: HTTP %s", key, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("put %q: %w", key, err)
	}
	return strconv.ParseInt(out.Header.Revision, 10, 64)
}

// Metric reads one unlabelled sample (a counter, or a histogram's _count) from /metrics.
func (s *Server) Metric(name string) (float64, error) {
	resp, err := httpClient.Get(s.ClientURL + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("metric %s not found at %s/metrics", name, s.ClientURL)
}

// Histogram reads a histogram's cumulative buckets.
func (s *Server) Histogram(name string) (Histogram, error) {
	resp, err := httpClient.Get(s.ClientURL + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	buckets := Histogram{}
	sc := bufio.NewScanner(resp.Body)
	prefix := name + `_bucket{le="`
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		bound, err1 := strconv.ParseFloat(le, 64)
		n, err2 := strconv.ParseFloat(count, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("parsing %q: %w", sc.Text(), err)
		}
		buckets[bound] = n
	}
	return buckets, sc.Err()
}

// PutN puts n keys named prefix-0 ... prefix-(n-1), each with a value of valueSize bytes.
func (s *Server) PutN(prefix string, n, valueSize int) error {
	value := strings.Repeat("v", valueSize)
	for i := range n {
		if _, err := s.Put(fmt.Sprintf("%s-%d", prefix, i), value); err != nil {
			return err
		}
	}
	return nil
}

// WALSyncWindow is a stretch of time bracketed by two reads of etcd's own count
// of WAL syncs, so that a tracer's count can be set beside etcd's.
type WALSyncWindow struct {
	Start, End time.Time
	Syncs      int // etcd_disk_wal_fsync_duration_seconds_count, End minus Start
}

// Contains reports whether t lies inside the window.
func (w WALSyncWindow) Contains(t time.Time) bool { return t.After(w.Start) && t.Before(w.End) }

// MeasureWALSyncs runs work inside a window and returns it.
func (s *Server) MeasureWALSyncs(work func() error) (WALSyncWindow, error) {
	const metric = "etcd_disk_wal_fsync_duration_seconds_count"
	before, err := s.Metric(metric)
	if err != nil {
		return WALSyncWindow{}, err
	}
	w := WALSyncWindow{Start: time.Now()}
	if err := work(); err != nil {
		return w, err
	}
	after, err := s.Metric(metric)
	if err != nil {
		return w, err
	}
	w.End, w.Syncs = time.Now(), int(after-before)
	return w, nil
}
