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

	"golang.org/x/sys/unix"
)

// Undos restore what the harness changed on the host (and stop its in-process
// receivers), last in first out, at exit, on error and on Ctrl-C. The processes
// it starts need no such list: each dies with the harness (Pdeathsig).
var (
	undosMu sync.Mutex
	undos   []func()
)

// onCleanup registers a restore to run at exit.
func onCleanup(f func()) {
	undosMu.Lock()
	undos = append(undos, f)
	undosMu.Unlock()
}

// cleanupMu makes a second cleanup (Ctrl-C while main is already cleaning up)
// wait for the first to finish instead of exiting under it.
var cleanupMu sync.Mutex

// cleanup runs the undos.
func cleanup() {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	undosMu.Lock()
	u := undos
	undos = nil
	undosMu.Unlock()
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
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

// ownCPU is this process's own utime+stime: the simulated agents' CPU, as
// getrusage counts it (to the microsecond, finer than /proc's ticks).
func ownCPU() float64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
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
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(errb.Bytes(), 2000))
	}
	return out.String(), nil
}
