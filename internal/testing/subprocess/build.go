//go:build linux && (amd64 || arm64)

package subprocess

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// RunLong runs cmd, a build that may take minutes, to completion: its output
// goes to progress, with a line naming what every 15 s while it runs. It is
// killed with its process group when ctx ends or this process dies.
func RunLong(ctx context.Context, cmd *exec.Cmd, progress io.Writer, what string) error {
	cmd.Stdout, cmd.Stderr = progress, progress
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if ctx.Err() != nil {
				return fmt.Errorf("stopped after %s: %w", time.Since(start).Round(time.Second), context.Cause(ctx))
			}
			return err
		case <-tick.C:
			fmt.Fprintf(progress, "    ... still building %s(%s)\n", what, time.Since(start).Round(time.Second))
		}
	}
}

// Lock takes turns with other processes (a test and a demo) on the lock file
// at path, saying waiting to progress when it has to wait. unlock releases it.
func Lock(path string, progress io.Writer, waiting string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintln(progress, waiting)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, err
		}
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}
