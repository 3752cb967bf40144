//go:build linux

package scenario

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// groupPrefix begins the name of every cgroup this package makes, followed by
// the making process's pid: a group left by a runner that was killed (SIGKILL
// gives it no chance to clean up) is recognised and removed by the next one.
const groupPrefix = "etcdebpf-scenario-"

// ioGroup is a cgroup with a write IOPS limit on one disk, made for a fault:
// the processes moved into it and where each came from, so that remove puts
// them back.
type ioGroup struct {
	dir   string
	v1    bool           // cgroup v1 blkio (threads move one by one) or v2 io
	homes map[int]string // pid -> the cgroup directory its threads came from
}

// hierarchy is where an I/O controller is mounted.
type hierarchy struct {
	root string // mount point
	v1   bool
}

// ioHierarchy finds the I/O controller: cgroup v1's blkio where it is mounted
// (a v2 hierarchy beside it then has no io controller), else cgroup v2's io.
func ioHierarchy() (hierarchy, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return hierarchy{}, err
	}
	defer f.Close()
	var v2 []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID parent major:minor root mountpoint options ... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(postFields) < 3 {
			continue
		}
		mount := fields[4]
		switch postFields[0] {
		case "cgroup":
			for _, opt := range strings.Split(postFields[2], ",") {
				if opt == "blkio" {
					return hierarchy{root: mount, v1: true}, nil
				}
			}
		case "cgroup2":
			v2 = append(v2, mount)
		}
	}
	for _, mount := range v2 {
		controllers, err := os.ReadFile(filepath.Join(mount, "cgroup.controllers"))
		if err == nil && slices.Contains(strings.Fields(string(controllers)), "io") {
			return hierarchy{root: mount}, nil
		}
	}
	return hierarchy{}, errors.New("no cgroup I/O controller: neither cgroup v1 blkio nor cgroup v2 io is mounted (mount -t cgroup -o blkio none /sys/fs/cgroup/blkio)")
}

// newIOGroup makes a cgroup named for this process and name that limits writes
// to disk (major:minor) to iops per second.
func newIOGroup(name string, disk string, iops int) (*ioGroup, error) {
	h, err := ioHierarchy()
	if err != nil {
		return nil, err
	}
	removeStaleGroups(h)
	g := &ioGroup{dir: filepath.Join(h.root, groupPrefix+strconv.Itoa(os.Getpid())+"-"+name), v1: h.v1, homes: map[int]string{}}
	if !h.v1 {
		// v2 limits a child only when its parent hands the io controller down.
		if err := os.WriteFile(filepath.Join(h.root, "cgroup.subtree_control"), []byte("+io"), 0); err != nil {
			return nil, fmt.Errorf("enabling the io controller in %s: %w", h.root, err)
		}
	}
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		return nil, fmt.Errorf("making cgroup %s: %w", g.dir, err)
	}
	file, limit := "io.max", fmt.Sprintf("%s wiops=%d", disk, iops)
	if h.v1 {
		file, limit = "blkio.throttle.write_iops_device", fmt.Sprintf("%s %d", disk, iops)
	}
	if err := os.WriteFile(filepath.Join(g.dir, file), []byte(limit), 0); err != nil {
		_ = os.Remove(g.dir)
		return nil, fmt.Errorf("writing %q to %s: %w (is %s a whole disk, not a partition?)", limit, filepath.Join(g.dir, file), err, disk)
	}
	return g, nil
}

// add moves the process pid into the group: on v1 thread by thread, again
// until no thread is left outside (a thread started meanwhile by one not yet
// moved stays where its creator was); on v2 the whole process at once.
func (g *ioGroup) add(pid int) error {
	home, err := cgroupOf(pid, g.v1)
	if err != nil {
		return err
	}
	g.homes[pid] = filepath.Join(filepath.Dir(g.dir), home)
	if !g.v1 {
		return writeID(filepath.Join(g.dir, "cgroup.procs"), pid)
	}
	return moveThreads(pid, filepath.Join(g.dir, "tasks"))
}

// remove moves every process back where it came from and removes the group.
func (g *ioGroup) remove() error {
	var errs []error
	for pid, home := range g.homes {
		var err error
		if g.v1 {
			err = moveThreads(pid, filepath.Join(home, "tasks"))
		} else {
			err = writeID(filepath.Join(home, "cgroup.procs"), pid)
		}
		if err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("moving pid %d back to %s: %w", pid, home, err))
		}
	}
	return errors.Join(append(errs, removeGroupDir(g.dir))...)
}

// removeGroupDir removes an emptied cgroup, waiting a little for exiting
// threads to leave it (EBUSY).
func removeGroupDir(dir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("removing cgroup %s: %w", dir, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeStaleGroups removes the groups of runners that are gone, moving what
// is still in one to the hierarchy's root.
func removeStaleGroups(h hierarchy) {
	dirs, _ := filepath.Glob(filepath.Join(h.root, groupPrefix+"*"))
	for _, dir := range dirs {
		owner, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), groupPrefix), "-")
		pid, err := strconv.Atoi(owner)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		tasks := "cgroup.procs"
		if h.v1 {
			tasks = "tasks"
		}
		ids, _ := os.ReadFile(filepath.Join(dir, tasks))
		for _, id := range strings.Fields(string(ids)) {
			n, _ := strconv.Atoi(id)
			_ = writeID(filepath.Join(h.root, tasks), n)
		}
		_ = removeGroupDir(dir)
	}
}

// moveThreads writes every thread of pid into a v1 tasks file.
func moveThreads(pid int, tasks string) error {
	return eachThread(pid, func(tid int) error {
		if err := writeID(tasks, tid); err != nil {
			return fmt.Errorf("moving thread %d of pid %d into %s: %w", tid, pid, tasks, err)
		}
		return nil
	})
}

// eachThread calls fn for every thread of pid, and again for those started
// meanwhile (by a thread not yet done, which they take after), until a pass
// finds none new. A thread that exits meanwhile (ESRCH) is no error.
func eachThread(pid int, fn func(tid int) error) error {
	done := map[int]bool{}
	for range 10 {
		tids, err := threads(pid)
		if err != nil {
			return err
		}
		fresh := 0
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			if err := fn(tid); err != nil && !errors.Is(err, syscall.ESRCH) {
				return err
			}
			done[tid] = true
			fresh++
		}
		if fresh == 0 {
			return nil
		}
	}
	return fmt.Errorf("pid %d kept starting threads", pid)
}

// threads lists the thread ids of pid.
func threads(pid int) ([]int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	var tids []int
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// cgroupOf is pid's cgroup path in the I/O hierarchy, as /proc/pid/cgroup says.
func cgroupOf(pid int, v1 bool) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(data)) {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if (v1 && slices.Contains(strings.Split(parts[1], ","), "blkio")) || (!v1 && parts[0] == "0") {
			return parts[2], nil
		}
	}
	return "", fmt.Errorf("pid %d: no I/O cgroup in /proc/%d/cgroup", pid, pid)
}

func writeID(path string, id int) error {
	return os.WriteFile(path, []byte(strconv.Itoa(id)), 0)
}

// diskOf is the whole disk (major:minor) holding path's file system: a
// throttle applies to disks, and a partition's writes are the disk's.
func diskOf(path string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", err
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	sys, err := filepath.EvalSymlinks("/sys/dev/block/" + dev)
	if err != nil {
		return "", fmt.Errorf("%s is on device %s, which is not a block device (a tmpfs or overlay?): put the cluster's data on a disk", path, dev)
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		parent, err := os.ReadFile(filepath.Join(filepath.Dir(sys), "dev"))
		if err != nil {
			return "", fmt.Errorf("the disk of partition %s: %w", dev, err)
		}
		return strings.TrimSpace(string(parent)), nil
	}
	return dev, nil
}
