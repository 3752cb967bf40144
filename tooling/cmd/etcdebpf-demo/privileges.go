//go:build linux

package main

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
)

// checkPrivileges fails early, with the fix, where the collector could not load BPF.
func checkPrivileges() error {
	if os.Geteuid() == 0 {
		return nil
	}
	const capPerfmon, capBPF = 38, 39
	if caps, err := effectiveCaps(); err == nil && caps&(1<<capBPF) != 0 && caps&(1<<capPerfmon) != 0 {
		return nil
	}
	return errors.New("run with sudo; loading BPF needs root or CAP_BPF+CAP_PERFMON (try: sudo make demo)")
}

func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}
