//go:build linux && (amd64 || arm64)

package hostwatch

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
func TestProcessCommandArgs(t *testing.T) {
	assert.Equal(t, os.Args, ProcessCommandArgs(os.Getpid()))
	argv := []string{"sh", "-c", "while :; do sleep 1; done", "", "a b"}
	cmd := exec.Command(argv[0], argv[1:]...)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	assert.Eventually(t, func() bool {
		return assert.ObjectsAreEqual(argv, ProcessCommandArgs(cmd.Process.Pid))
	}, 5*time.Second, 10*time.Millisecond, "the child's argv after exec")
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	assert.Nil(t, ProcessCommandArgs(cmd.Process.Pid), "gone")
}
