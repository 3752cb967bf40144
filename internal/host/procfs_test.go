//go:build linux && (amd64 || arm64)

package host

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The command line read from /proc is the process's own argv, arguments with
// spaces and empty ones kept apart.
func TestCommandArgs(t *testing.T) {
	assert.Equal(t, os.Args, Proc.CommandArgs(os.Getpid()))
	argv := []string{"sh", "-c", "while :; do sleep 1; done", "", "a b"}
	cmd := exec.Command(argv[0], argv[1:]...)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	assert.Eventually(t, func() bool {
		return assert.ObjectsAreEqual(argv, Proc.CommandArgs(cmd.Process.Pid))
	}, 5*time.Second, 10*time.Millisecond, "the child's argv after exec")
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	assert.Nil(t, Proc.CommandArgs(cmd.Process.Pid), "gone")
}

func TestParseStat(t *testing.T) {
	for _, tt := range []struct {
		name, stat string
		start      uint64
		state      byte
		err        bool
	}{
		{"etcd", "42 (etcd) S 1 42 42 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 12 0 1234567 1000 100 18446744073709551615", 1234567, 'S', false},
		{"spaces and parentheses in comm", "7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0", 99, 'R', false},
		{"zombie", "8 (etcd) Z 1 8 8 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0", 5, 'Z', false},
		{"truncated", "9 (etcd) S 1 9", 0, 0, true},
		{"no comm", "garbage", 0, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start, state, err := parseStat(tt.stat)
			if tt.err {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.start, start)
			assert.Equal(t, tt.state, state)
		})
	}
}
