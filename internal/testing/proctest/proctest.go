//go:build linux && (amd64 || arm64)

// Package proctest stands in for the host's processes in tests: a procfs laid
// out in a directory, whose processes a test starts, replaces and ends at will,
// and real processes for the tests that need the kernel's own procfs.
package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
)

// Procfs is a procfs in a test's directory, of a host that booted at Boot.
type Procfs struct {
	t    testing.TB
	Root string
	Boot time.Time
}

// NewProcfs lays out an empty procfs of a host that booted at the Unix epoch:
// a process started n ticks after boot started n*10 ms after it.
func NewProcfs(t testing.TB) *Procfs {
	return &Procfs{t: t, Root: t.TempDir(), Boot: time.Unix(0, 0)}
}

// FS is the procfs as the host package reads it.
func (p *Procfs) FS() host.Procfs { return host.NewProcfs(p.Root, p.Boot) }

// Run makes a process run as pid, in place of any before it: started start
// clock ticks after boot, named comm, with argv args (none: a kernel thread's).
func (p *Procfs) Run(pid int, start uint64, comm string, args ...string) {
	p.t.Helper()
	p.write(pid, "stat", stat(pid, comm, 'S', start))
	p.write(pid, "comm", comm+"\n")
	cmdline := ""
	for _, a := range args {
		cmdline += a + "\x00"
	}
	p.write(pid, "cmdline", cmdline)
	p.write(pid, "cgroup", "0::/user.slice\n")
}

// Cgroup moves the process running as pid to the cgroup at path, under the
// unified hierarchy.
func (p *Procfs) Cgroup(pid int, path string) {
	p.t.Helper()
	p.write(pid, "cgroup", "0::"+path+"\n")
}

// Zombie makes the process running as pid a zombie: it exited, and its
// parent has not reaped it.
func (p *Procfs) Zombie(pid int) {
	p.t.Helper()
	data, err := os.ReadFile(filepath.Join(p.Root, strconv.Itoa(pid), "stat"))
	require.NoError(p.t, err)
	p.write(pid, "stat", strings.Replace(string(data), ") S ", ") Z ", 1))
	p.write(pid, "cmdline", "")
}

// Exit ends the process running as pid: nothing runs as pid any more.
func (p *Procfs) Exit(pid int) {
	p.t.Helper()
	require.NoError(p.t, os.RemoveAll(filepath.Join(p.Root, strconv.Itoa(pid))))
}

func (p *Procfs) write(pid int, file, data string) {
	p.t.Helper()
	dir := filepath.Join(p.Root, strconv.Itoa(pid))
	require.NoError(p.t, os.MkdirAll(dir, 0o755))
	require.NoError(p.t, os.WriteFile(filepath.Join(dir, file), []byte(data), 0o644))
}

// stat is a /proc/<pid>/stat line: starttime is field 22.
func stat(pid int, comm string, state byte, start uint64) string {
	return fmt.Sprintf("%d (%s) %c 1 %d %d 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", pid, comm, state, pid, pid, start)
}

// Sleeper runs sleep until the test ends: a real process to watch.
func Sleeper(t testing.TB) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// End kills cmd and reaps it: nothing, not even its zombie, runs as its pid.
func End(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait() // the error is the kill
}

// ReusePID starts a sleep that the kernel gives pid, whose process exited: it
// sets the host's kernel.ns_last_pid just below it, and tries again when
// another process's fork takes the number first. It needs root.
func ReusePID(t testing.TB, pid int) *exec.Cmd {
	t.Helper()
	const lastPID = "/proc/sys/kernel/ns_last_pid"
	for range 200 {
		if err := os.WriteFile(lastPID, []byte(strconv.Itoa(pid-1)), 0); err != nil {
			bpftest.SkipOrFail(t, "setting "+lastPID+" needs root (CAP_SYS_ADMIN): "+err.Error())
		}
		cmd := Sleeper(t)
		if cmd.Process.Pid == pid {
			return cmd
		}
		End(t, cmd)
	}
	t.Fatalf("pid %d was not given again in 200 tries", pid)
	return nil
}
