//go:build linux && (amd64 || arm64)

// Package subprocess starts and stops the long-running processes of the demo,
// the bench and the tests (the collector, bpftrace, strace): each in its own
// process group, dying with its parent, its output in a log file, ready when it
// prints a given line, stopped by a signal and then killed after a timeout.
package subprocess

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options of Start.
type Options struct {
	Name    string   // in messages, such as "the collector"; default the program's file name
	Path    string   // the program
	Args    []string // its arguments
	Env     []string // added to this process's environment
	LogPath string   // its stdout and stderr go here
	// Echo, if set, gets every output line too, after EchoPrefix.
	Echo       io.Writer
	EchoPrefix string
	// Ready is a piece of the line the process prints once it is ready; ""
	// for a process that is ready when started.
	Ready string
	// StopSignal asks it to stop (and is sent if this process dies); default SIGTERM.
	StopSignal syscall.Signal
}

// Process is a running subprocess.
type Process struct {
	name    string
	cmd     *exec.Cmd
	LogPath string
	stopSig syscall.Signal

	ready    chan struct{}
	exited   chan struct{}
	waitErr  error
	mu       sync.Mutex
	tail     []string // last lines of its output
	stopOnce sync.Once
}

// Start starts the program. It is sent StopSignal if this process dies
// (Pdeathsig), and Stop ends it and anything it started (its process group).
func Start(o Options) (*Process, error) {
	if o.Name == "" {
		o.Name = filepath.Base(o.Path)
	}
	if o.StopSignal == 0 {
		o.StopSignal = syscall.SIGTERM
	}
	logFile, err := os.Create(o.LogPath)
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	cmd := exec.Command(o.Path, o.Args...)
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: o.StopSignal}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", o.Name, o.Path, err)
	}
	pw.Close()
	p := &Process{name: o.Name, cmd: cmd, LogPath: o.LogPath, stopSig: o.StopSignal, ready: make(chan struct{}), exited: make(chan struct{})}
	if o.Ready == "" {
		close(p.ready)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		defer logFile.Close()
		defer pr.Close()
		var readyOnce sync.Once
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			if o.Echo != nil {
				fmt.Fprintln(o.Echo, o.EchoPrefix+line)
			}
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > 20 {
				p.tail = p.tail[len(p.tail)-20:]
			}
			p.mu.Unlock()
			if o.Ready != "" && strings.Contains(line, o.Ready) {
				readyOnce.Do(func() { close(p.ready) })
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		err := cmd.Wait()
		<-copied
		p.waitErr = err
		close(p.exited)
	}()
	return p, nil
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Tail is the last lines the process wrote.
func (p *Process) Tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// Log is all the process wrote, as far as it is in the log file.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// WaitReady waits until the process prints its ready line.
func (p *Process) WaitReady(ctx context.Context) error {
	select {
	case <-p.ready:
		return nil
	case <-p.exited:
		return fmt.Errorf("%s exited during start-up (%v); its last lines:\n%s", p.name, p.waitErr, p.Tail())
	case <-ctx.Done():
		return fmt.Errorf("%s did not become ready (%w); its last lines:\n%s", p.name, ctx.Err(), p.Tail())
	}
}

// Stop sends the stop signal to the process group and waits at most timeout
// before killing it. It returns the process's exit error, if any. It is safe to
// call more than once.
func (p *Process) Stop(timeout time.Duration) error {
	p.stopOnce.Do(func() {
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, p.stopSig)
		select {
		case <-p.exited:
		case <-time.After(timeout):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.exited
			p.waitErr = errors.Join(p.waitErr, fmt.Errorf("%s did not stop within %v of %v and was killed", p.name, timeout, p.stopSig))
		}
	})
	<-p.exited
	return p.waitErr
}

// FreePorts finds n distinct free TCP ports on loopback for a subprocess to
// listen on. Another process may take one before it does: a rare failed start.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
