//go:build linux && (amd64 || arm64)

package etcdtest_test

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
)

// Three members on loopback form one cluster: a put through one member is
// read back through another's revision, one leads, and Stop leaves no process.
func TestClusterOfThree(t *testing.T) {
	bin := bpftest.RequireEtcd(t)
	c, err := etcdtest.StartCluster(bin, t.TempDir(), 3)
	require.NoError(t, err)
	t.Cleanup(c.Stop)

	require.Len(t, c.Members, 3)
	names := map[string]bool{}
	for _, s := range c.Members {
		names[s.Name] = true
	}
	assert.Equal(t, map[string]bool{"etcd-1": true, "etcd-2": true, "etcd-3": true}, names)

	leader, err := c.Leader()
	require.NoError(t, err)
	t.Logf("leader %s (pid %d)", leader.Name, leader.PID())
	for _, s := range c.Members {
		has, err := s.Metric("etcd_server_has_leader")
		require.NoError(t, err)
		assert.Equal(t, 1.0, has, "member %s has a leader", s.Name)
	}

	rev, err := c.Members[0].Put("cluster/a", "1")
	require.NoError(t, err)
	rev2, err := c.Members[2].Put("cluster/b", "2")
	require.NoError(t, err)
	assert.Equal(t, rev+1, rev2, "one revision sequence across members: they are one cluster")

	pids := c.PIDs()
	c.Stop()
	for _, pid := range pids {
		assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "member pid %d is gone", pid)
	}
}
