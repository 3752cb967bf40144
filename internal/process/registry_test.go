//go:build linux && (amd64 || arm64)

package process

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/proctest"
)

// What the registry says of a process after what happened to it, and after
// how many checks since: the answers hold from one check to the next.
func TestRegistryIdentity(t *testing.T) {
	const pid, start = 100, 500
	for _, tt := range []struct {
		name        string
		then        func(fs *proctest.Procfs)
		checks      int
		wantRunning bool
		wantNow     uint64 // the start of what Lookup finds as the pid; 0: nothing
		wantHeld    int    // the entries the registry holds at the end
	}{
		{name: "runs", then: func(*proctest.Procfs) {}, checks: 1, wantRunning: true, wantNow: start, wantHeld: 1},
		{name: "exited", then: func(fs *proctest.Procfs) { fs.Exit(pid) }, checks: 1, wantRunning: false, wantHeld: 1},
		{name: "exited, forgotten a check later", then: func(fs *proctest.Procfs) { fs.Exit(pid) }, checks: 2, wantRunning: false, wantHeld: 0},
		{name: "a zombie has exited", then: func(fs *proctest.Procfs) { fs.Zombie(pid) }, checks: 1, wantRunning: false, wantHeld: 1},
		{name: "pid given to another process", then: func(fs *proctest.Procfs) { fs.Run(pid, 900, "sleep", "sleep", "60") },
			checks: 1, wantRunning: false, wantNow: 900, wantHeld: 1},
		{name: "pid given again, the old one forgotten", then: func(fs *proctest.Procfs) { fs.Run(pid, 900, "sleep", "sleep", "60") },
			checks: 2, wantRunning: false, wantNow: 900, wantHeld: 1},
		{name: "exited, not checked yet: as of the last check", then: func(fs *proctest.Procfs) { fs.Exit(pid) },
			checks: 0, wantRunning: true, wantNow: start, wantHeld: 1},
		{name: "pid given again, not checked yet", then: func(fs *proctest.Procfs) { fs.Run(pid, 900, "sleep") },
			checks: 0, wantRunning: true, wantNow: start, wantHeld: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := proctest.NewProcfs(t)
			fs.Run(pid, start, "etcd", "etcd", "--name", "etcd-1")
			r := NewRegistry(fs.FS())
			p, ok := r.Lookup(pid)
			require.True(t, ok)
			require.Equal(t, Process{PID: pid, Start: start}, p)

			tt.then(fs)
			for range tt.checks {
				r.Check()
			}
			assert.Equal(t, tt.wantRunning, r.Running(p), "Running")
			// Lookup last: it holds the newcomer it finds.
			now, ok := r.Lookup(pid)
			assert.Equal(t, tt.wantNow != 0, ok, "Lookup finds a process")
			assert.Equal(t, tt.wantNow, now.Start, "Lookup's process")
			assert.Len(t, r.byPID, tt.wantHeld, "entries held")
		})
	}
}

// Running of a process the registry does not hold reads procfs, and holds it
// only if it is that process.
func TestRegistryRunningUnheld(t *testing.T) {
	fs := proctest.NewProcfs(t)
	fs.Run(7, 50, "etcd", "etcd")
	for _, tt := range []struct {
		name string
		p    Process
		want bool
		held int
	}{
		{"the process", Process{PID: 7, Start: 50}, true, 1},
		{"an older one of its pid", Process{PID: 7, Start: 10}, false, 0},
		{"a pid nothing runs as", Process{PID: 8, Start: 50}, false, 0},
		{"the zero process", Process{}, false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRegistry(fs.FS())
			assert.Equal(t, tt.want, r.Running(tt.p))
			assert.Len(t, r.byPID, tt.held)
		})
	}
}

// A description is read once per process, and again for the newcomer on its
// pid; one without a command line is read again; an ended process keeps its
// description until it is forgotten, for its last report.
func TestRegistryDescribe(t *testing.T) {
	const id = "fe52c3a559cc88ebbda0324f7272028e40c3121dbfd39b41d4fb658043105597"
	fs := proctest.NewProcfs(t)
	fs.Run(7, 150, "etcd", "etcd", "--name", "etcd-1")
	fs.Cgroup(7, "/system.slice/docker-"+id+".scope")
	r := NewRegistry(fs.FS())
	old, ok := r.Lookup(7)
	require.True(t, ok)
	want := Description{Comm: "etcd", Args: []string{"etcd", "--name", "etcd-1"}, Container: host.Container{ID: id},
		Start: time.Unix(1, 500_000_000)}
	assert.Equal(t, want, r.Describe(old))
	assert.Equal(t, "etcd (unknown)", r.Name(old), "no executable to read in a laid-out procfs")

	fs.Run(7, 150, "etcd", "etcd", "--name", "rewritten") // the same process: its start time
	assert.Equal(t, want, r.Describe(old), "read once per process")

	fs.Run(7, 250, "etcd", "etcd", "--name", "etcd-9")
	r.Check()
	assert.Equal(t, want, r.Describe(old), "ended, still described until forgotten")
	now, ok := r.Lookup(7)
	require.True(t, ok)
	assert.Equal(t, []string{"etcd", "--name", "etcd-9"}, r.Describe(now).Args, "the newcomer, read afresh")
	assert.Equal(t, Description{}, r.Describe(old), "a process the registry no longer holds, and gone")

	fs.Run(8, 300, "kworker/0:1") // no command line
	p, ok := r.Lookup(8)
	require.True(t, ok)
	assert.Equal(t, Description{Comm: "kworker/0:1", Start: time.Unix(3, 0)}, r.Describe(p))
	fs.Run(8, 300, "etcd", "etcd") // exec'd
	assert.Equal(t, []string{"etcd"}, r.Describe(p).Args, "read again while it has no command line")
}

// Against the host's procfs: a real process's start time is when it started,
// and it is reported ended at the first check after it exits.
func TestRegistryRealProcess(t *testing.T) {
	r := NewRegistry(host.Proc)
	before := time.Now()
	cmd := proctest.Sleeper(t)
	after := time.Now()
	p, ok := r.Lookup(cmd.Process.Pid)
	require.True(t, ok)
	assert.True(t, r.Running(p))
	// Start returns at exec's point of no return, before the new program's
	// arguments are laid out: an empty command line is read again.
	var d Description
	require.Eventually(t, func() bool { d = r.Describe(p); return len(d.Args) > 0 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, "sleep", d.Comm)
	assert.Equal(t, []string{"sleep", "60"}, d.Args)
	sleep, err := exec.LookPath("sleep")
	require.NoError(t, err)
	sleep, err = filepath.EvalSymlinks(sleep)
	require.NoError(t, err)
	assert.Equal(t, "sleep ("+sleep+")", r.Name(p))
	assert.WithinRange(t, d.Start, before.Add(-20*time.Millisecond), after.Add(20*time.Millisecond), "procfs counts in 10 ms ticks")

	proctest.End(t, cmd)
	assert.True(t, r.Running(p), "as of the last check")
	r.Check()
	assert.False(t, r.Running(p))
	_, ok = r.Lookup(cmd.Process.Pid)
	assert.False(t, ok)
}

// A pid the kernel gives again is another process: the old one ended though
// kill(pid, 0) calls the number alive.
func TestRegistryReusedPID(t *testing.T) {
	r := NewRegistry(host.Proc)
	old := proctest.Sleeper(t)
	p, ok := r.Lookup(old.Process.Pid)
	require.True(t, ok)
	proctest.End(t, old)
	time.Sleep(30 * time.Millisecond) // more than a clock tick: the newcomer's start time differs
	newcomer := proctest.ReusePID(t, p.PID)
	t.Logf("pid %d given again (ns_last_pid)", newcomer.Process.Pid)

	r.Check()
	assert.False(t, r.Running(p), "the old process ended")
	now, ok := r.Lookup(p.PID)
	require.True(t, ok)
	assert.NotEqual(t, p.Start, now.Start)
	assert.True(t, r.Running(now))
}

// The records' reader, the metrics' collection and the host watch ask at once.
func TestRegistryConcurrentUse(t *testing.T) {
	fs := proctest.NewProcfs(t)
	fs.Run(7, 50, "etcd", "etcd")
	r := NewRegistry(fs.FS())
	done := make(chan struct{})
	for range 3 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 200 {
				r.Check()
				if p, ok := r.Lookup(7); ok {
					r.Describe(p)
					r.Running(p)
				}
			}
		}()
	}
	for range 3 {
		<-done
	}
	p, ok := r.Lookup(7)
	assert.True(t, ok)
	assert.True(t, r.Running(p))
}
