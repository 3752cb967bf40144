//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

// nobody is the unprivileged user the collector runs as: no capabilities, so
// the kernel refuses to load BPF programs.
const nobody = 65534

// unprivileged prepares bin and a configuration with the given error_mode where
// nobody can read them, and returns the command that runs the collector as
// nobody (setuid from root clears every capability, as `setpriv --reuid` does).
func unprivileged(ctx context.Context, t *testing.T, bin, errorMode string) *exec.Cmd {
	t.Helper()
	dir, err := os.MkdirTemp("", "etcdebpf-nonroot-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))

	data, err := os.ReadFile(bin)
	require.NoError(t, err)
	copied := filepath.Join(dir, "otelcol-etcd")
	require.NoError(t, os.WriteFile(copied, data, 0o755))
	config := filepath.Join(dir, "collector.yaml")
	require.NoError(t, os.WriteFile(config, fmt.Appendf(nil, `receivers:
  etcdebpf:
    error_mode: %s
exporters:
  debug:
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [etcdebpf]
      exporters: [debug]
`, errorMode), 0o644))

	cmd := exec.CommandContext(ctx, copied, "--config", config)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}},
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd
}

// stackTraceLines returns the lines of a Go stack trace in out: zap prints a
// stack after an Error-level entry, as "pkg.func" and tab-indented "file:line".
func stackTraceLines(out string) []string {
	var lines []string
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "goroutine ") {
			lines = append(lines, strings.TrimRight(line, "\n"))
		}
	}
	return lines
}

// A collector that cannot trace exits at once under the default error_mode
// (propagate), with one line naming the cause and the fix; under
// error_mode: ignore it runs on with the receiver idle. Both without a stack
// trace: the failure is an expected condition of the host, not a bug.
func TestNonRootCollectorByErrorMode(t *testing.T) {
	bpftest.RequireBPF(t) // root, to drop it
	bin := collectorBinary(t)

	t.Run("propagate", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := unprivileged(ctx, t, bin, "propagate")
		start := time.Now()
		out, err := cmd.CombinedOutput()
		elapsed := time.Since(start)
		t.Logf("exit after %s: %v; output:\n%s", elapsed.Round(time.Millisecond), err, out)

		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "the collector must exit, and non-zero")
		assert.Equal(t, 1, exit.ExitCode())
		assert.Less(t, elapsed, 10*time.Second, "a failed start is reported at once")
		assert.Empty(t, stackTraceLines(string(out)), "no stack trace")

		var errorLines []string
		for line := range strings.Lines(string(out)) {
			if strings.HasPrefix(line, "Error: ") {
				errorLines = append(errorLines, line)
			}
		}
		require.Len(t, errorLines, 1, "one line names the failure")
		assert.Contains(t, errorLines[0], `failed to start "etcdebpf" receiver`, "the component")
		assert.Contains(t, errorLines[0], "loading BPF programs was refused", "the cause")
		assert.Contains(t, errorLines[0], "run the collector as root", "the fix")
		assert.Contains(t, errorLines[0], "error_mode: ignore", "the alternative")
	})

	t.Run("ignore", func(t *testing.T) {
		cmd := unprivileged(context.Background(), t, bin, "ignore")
		pr, pw, err := os.Pipe()
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = pw, pw
		require.NoError(t, cmd.Start())
		pw.Close()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })

		lines := make(chan string, 1024)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				lines <- sc.Text()
			}
			_, _ = io.Copy(io.Discard, pr)
		}()
		var out strings.Builder
		waitFor := func(substr string, within time.Duration) bool {
			deadline := time.After(within)
			for {
				select {
				case line, ok := <-lines:
					if !ok {
						return false
					}
					out.WriteString(line + "\n")
					if strings.Contains(line, substr) {
						return true
					}
				case <-deadline:
					return false
				}
			}
		}
		require.True(t, waitFor("Everything is ready", 30*time.Second), "the collector starts; output:\n%s", out.String())
		select {
		case err := <-exited:
			t.Fatalf("the collector exited (%v) under error_mode: ignore; output:\n%s", err, out.String())
		case <-time.After(2 * time.Second):
		}

		require.NoError(t, syscall.Kill(cmd.Process.Pid, syscall.SIGTERM))
		select {
		case err := <-exited:
			assert.NoError(t, err, "a clean shutdown")
		case <-time.After(15 * time.Second):
			t.Fatal("the collector did not stop on SIGTERM")
		}
		for line := range lines {
			out.WriteString(line + "\n")
		}
		t.Logf("output:\n%s", out.String())
		assert.Contains(t, out.String(), "Cannot trace etcd: this receiver stays idle, the rest of the collector runs on (error_mode: ignore)")
		assert.Contains(t, out.String(), "run the collector as root", "the fix is logged")
		assert.Empty(t, stackTraceLines(out.String()), "no stack trace")
	})
}
