//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Every process the harness starts is registered here, so that an exit, an error
// or Ctrl-C stops all of them (and nothing it did not start).
var (
	procsMu sync.Mutex
	procs   = map[*exec.Cmd]string{}
	undos   []func() // restores of host settings, run last-in first-out
)

// startProc starts name with args, stdout and stderr into logPath.
func startProc(logPath, name string, args ...string) (*exec.Cmd, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	f.Close() // the child holds its own copy
	track(cmd, name)
	return cmd, nil
}

func track(cmd *exec.Cmd, name string) {
	procsMu.Lock()
	procs[cmd] = name
	procsMu.Unlock()
}

// stopProc sends sig, waits up to 10 s, then kills. It is safe to call twice.
func stopProc(cmd *exec.Cmd, sig syscall.Signal) {
	procsMu.Lock()
	_, ok := procs[cmd]
	delete(procs, cmd)
	procsMu.Unlock()
	if !ok || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// onCleanup registers a restore to run at exit.
func onCleanup(f func()) {
	procsMu.Lock()
	undos = append(undos, f)
	procsMu.Unlock()
}

// cleanupMu makes a second cleanup (Ctrl-C while main is already cleaning up)
// wait for the first to finish instead of exiting under it.
var cleanupMu sync.Mutex

// cleanup stops every live process and undoes host changes.
func cleanup() {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	procsMu.Lock()
	live := make([]*exec.Cmd, 0, len(procs))
	for c := range procs {
		live = append(live, c)
	}
	u := undos
	undos = nil
	procsMu.Unlock()
	for _, c := range live {
		stopProc(c, syscall.SIGTERM)
	}
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// waitForLog polls path until it contains want, or fails after timeout or if cmd exits.
func waitForLog(cmd *exec.Cmd, path, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte(want)) {
			return nil
		}
		if cmd.ProcessState != nil || (cmd.Process != nil && cmd.Process.Signal(syscall.Signal(0)) != nil) {
			return fmt.Errorf("%s exited before logging %q; log %s:\n%s", cmd.Path, want, path, tail(b, 2000))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not log %q within %v; log %s:\n%s", cmd.Path, want, timeout, path, tail(b, 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// clkTck is USER_HZ: the unit of utime and stime in /proc/PID/stat (100 on every
// mainstream Linux architecture).
const clkTck = 100

// cpuSeconds is utime+stime of the whole process (all threads, live and exited).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	return float64(u+s) / clkTck, nil
}

// statusKB reads a "Vm...:  N kB" line of /proc/PID/status.
func statusKB(pid int, key string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

// run runs a command to completion and returns its stdout.
func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	track(cmd, name)
	err := cmd.Wait()
	procsMu.Lock()
	delete(procs, cmd)
	procsMu.Unlock()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(errb.Bytes(), 2000))
	}
	return out.String(), nil
}
