//go:build linux

package scenario

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
)

// Fault is what a phase does to the cluster, undone when the phase ends.
type Fault int

const (
	NoFault Fault = iota
	// DiskThrottle limits the target member's writes to its disk to
	// ThrottleIOPS per second, through a cgroup I/O limit.
	DiskThrottle
	// Neighbour runs a process beside the cluster writing to the same disk:
	// 64 KiB O_DIRECT|O_DSYNC writes, each a write and a cache flush, like a
	// second database's log.
	Neighbour
	// CPUContention pins the target member to one CPU and runs CPUHogs busy
	// loops on that CPU.
	CPUContention
)

func (f Fault) String() string {
	switch f {
	case NoFault:
		return "none"
	case DiskThrottle:
		return "disk throttled"
	case Neighbour:
		return "noisy neighbour"
	case CPUContention:
		return "CPU contention"
	}
	return "Fault(" + strconv.Itoa(int(f)) + ")"
}

// The faults' strength.
const (
	// ThrottleIOPS is the throttled member's write IOPS: every WAL sync waits
	// for at least one write slot, a fifth of a second. At 10 the leader
	// moved in some runs of 25 s here, at 5 in every one.
	ThrottleIOPS = 5
	// CPUHogs busy loops share the contended CPU with the member.
	CPUHogs = 3
	// neighbourBytes caps the neighbour's file: at ~16 MB/s here (64 KiB
	// synchronous writes) it lasts a minute, longer than a phase.
	neighbourBytes = 1 << 30
)

// injected is a fault in place: how to undo it, and the processes it started.
type injected struct {
	undo func() error
	pids []int // the neighbour's or the hogs' pids
}

// throttle moves pid into a new cgroup limiting its writes to the disk holding
// dataDir.
func throttle(pid int, dataDir string) (*injected, error) {
	disk, err := diskOf(dataDir)
	if err != nil {
		return nil, err
	}
	g, err := newIOGroup(strconv.Itoa(pid), disk, ThrottleIOPS)
	if err != nil {
		return nil, err
	}
	if err := g.add(pid); err != nil {
		return nil, errors.Join(err, g.remove())
	}
	return &injected{undo: g.remove}, nil
}

// neighbour starts dd writing synchronously into dir, on the cluster's disk.
func neighbour(dir string) (*injected, error) {
	path := filepath.Join(dir, "neighbour.data")
	p, err := subprocess.Start(subprocess.Options{
		Name: "the noisy neighbour (dd)",
		Path: "dd",
		Args: []string{"if=/dev/zero", "of=" + path, "bs=64k", "count=" + strconv.Itoa(neighbourBytes/(64<<10)),
			"oflag=direct,dsync", "status=none"},
		LogPath: filepath.Join(dir, "neighbour.log"),
	})
	if err != nil {
		return nil, err
	}
	return &injected{
		pids: []int{p.PID()},
		undo: func() error {
			// dd ends on SIGTERM; its exit status then says so, which is no error here.
			_ = p.Stop(5 * time.Second)
			return removeIfExists(path)
		},
	}, nil
}

// contend pins every thread of pid to one CPU (the last) and starts CPUHogs
// busy loops there; undoing stops them and gives pid's threads back the CPUs
// its main thread had.
func contend(pid int, dir string) (*injected, error) {
	var before unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &before); err != nil {
		return nil, fmt.Errorf("reading pid %d's CPUs: %w", pid, err)
	}
	cpu := lastCPU(before)
	if cpu < 0 {
		return nil, fmt.Errorf("pid %d may run on no CPU", pid)
	}
	var one unix.CPUSet
	one.Set(cpu)
	in := &injected{}
	var hogs []*subprocess.Process
	in.undo = func() error {
		for _, h := range hogs {
			_ = h.Stop(5 * time.Second) // killed by its signal: no error here
		}
		err := setThreadsAffinity(pid, &before)
		if errors.Is(err, syscall.ESRCH) || errors.Is(err, os.ErrNotExist) {
			return nil // the member is gone
		}
		return err
	}
	if err := setThreadsAffinity(pid, &one); err != nil {
		return nil, errors.Join(err, in.undo())
	}
	for i := range CPUHogs {
		h, err := subprocess.Start(subprocess.Options{
			Name:    "a CPU hog",
			Path:    "/bin/sh",
			Args:    []string{"-c", "while :; do :; done"},
			LogPath: filepath.Join(dir, fmt.Sprintf("cpuhog-%d.log", i)),
		})
		if err != nil {
			return nil, errors.Join(err, in.undo())
		}
		hogs = append(hogs, h)
		in.pids = append(in.pids, h.PID())
		if err := unix.SchedSetaffinity(h.PID(), &one); err != nil {
			return nil, errors.Join(fmt.Errorf("pinning a CPU hog: %w", err), in.undo())
		}
	}
	return in, nil
}

func lastCPU(set unix.CPUSet) int {
	last := -1
	for cpu := range len(set) * 64 {
		if set.IsSet(cpu) {
			last = cpu
		}
	}
	return last
}

// setThreadsAffinity sets every thread of pid to set.
func setThreadsAffinity(pid int, set *unix.CPUSet) error {
	return eachThread(pid, func(tid int) error {
		if err := unix.SchedSetaffinity(tid, set); err != nil {
			return fmt.Errorf("setting the CPUs of thread %d of pid %d: %w", tid, pid, err)
		}
		return nil
	})
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
