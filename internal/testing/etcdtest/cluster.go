//go:build linux && (amd64 || arm64)

package etcdtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
)

// Cluster is etcd members on loopback joined in one raft group, each its own
// process with its own data directory and ports, as on separate machines.
type Cluster struct {
	Members []*Server // named etcd-1, etcd-2, ...
}

// StartCluster runs n members of a new cluster with their data under dir
// (dir/etcd-1, ...) and waits until each serves a put and one is the leader.
// On error nothing is left running.
func StartCluster(binary, dir string, n int) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("a cluster needs at least one member, not %d", n)
	}
	ports, err := subprocess.FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	names := make([]string, n)
	peers := make([]string, n)
	initial := make([]string, n)
	for i := range n {
		names[i] = "etcd-" + strconv.Itoa(i+1)
		peers[i] = "http://127.0.0.1:" + strconv.Itoa(ports[2*i+1])
		initial[i] = names[i] + "=" + peers[i]
	}
	c := &Cluster{}
	for i, name := range names {
		memberDir := filepath.Join(dir, name)
		if err := os.MkdirAll(memberDir, 0o755); err != nil {
			c.Stop()
			return nil, err
		}
		logFile, err := os.Create(filepath.Join(memberDir, "etcd.log"))
		if err != nil {
			c.Stop()
			return nil, err
		}
		client := "http://127.0.0.1:" + strconv.Itoa(ports[2*i])
		s := &Server{
			Name: name, DataDir: filepath.Join(memberDir, "data"), ClientURL: client, log: logFile, binary: binary,
			args: []string{
				"--name", name,
				"--data-dir", filepath.Join(memberDir, "data"),
				"--listen-client-urls", client, "--advertise-client-urls", client,
				"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
				"--initial-cluster", strings.Join(initial, ","),
				"--initial-cluster-state", "new",
				// Distinct per cluster: a member of another test's cluster that
				// reuses a port is refused rather than joined.
				"--initial-cluster-token", "etcdtest-" + filepath.Base(dir) + "-" + strconv.Itoa(os.Getpid()),
				"--log-outputs", "stderr",
			},
		}
		if err := s.launch(); err != nil {
			logFile.Close()
			c.Stop()
			return nil, err
		}
		c.Members = append(c.Members, s)
	}
	// A member serves once a quorum runs: all are launched, now wait for each.
	for _, s := range c.Members {
		if err := s.waitServing(30 * time.Second); err != nil {
			c.Stop()
			return nil, fmt.Errorf("member %s: %w", s.Name, err)
		}
	}
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// PIDs are the members' process ids, in member order.
func (c *Cluster) PIDs() []int {
	pids := make([]int, len(c.Members))
	for i, s := range c.Members {
		pids[i] = s.PID()
	}
	return pids
}

// Leader is the member that says it leads (etcd_server_is_leader 1), or an
// error when none or more than one does, as during an election.
func (c *Cluster) Leader() (*Server, error) {
	var leaders []*Server
	var errs []error
	for _, s := range c.Members {
		v, err := s.Metric("etcd_server_is_leader")
		if err != nil {
			errs = append(errs, fmt.Errorf("member %s: %w", s.Name, err))
			continue
		}
		if v == 1 {
			leaders = append(leaders, s)
		}
	}
	if len(leaders) == 1 {
		return leaders[0], nil
	}
	return nil, fmt.Errorf("%d of %d members say they lead: %w", len(leaders), len(c.Members), errors.Join(errs...))
}

// WaitLeader waits until exactly one member leads.
func (c *Cluster) WaitLeader(timeout time.Duration) (*Server, error) {
	deadline := time.Now().Add(timeout)
	for {
		s, err := c.Leader()
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no single leader within %s: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop kills every member and waits for it.
func (c *Cluster) Stop() {
	for _, s := range c.Members {
		s.Stop()
	}
}
