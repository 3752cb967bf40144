//go:build linux && (amd64 || arm64)

package tracer

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Host probes, variables so that tests can stand in for a host that lacks them.
var (
	btfPath         = "/sys/kernel/btf/vmlinux"
	haveRingBuf     = func() error { return features.HaveMapType(ebpf.RingBuf) }
	haveTaskStorage = func() error {
		return errors.Join(features.HaveMapType(ebpf.TaskStorage),
			features.HaveProgramHelper(ebpf.TracePoint, asm.FnTaskStorageGet),
			features.HaveProgramHelper(ebpf.TracePoint, asm.FnGetCurrentTaskBtf))
	}
)

// minKernel is the oldest kernel the receiver is tested on (make kernels).
// Its features arrived earlier (ring buffer, CAP_BPF and CAP_PERFMON: 5.8), but
// nothing older is tested, and vendors' backports vary.
var minKernel = [2]int{5, 10}

func checkHost() error {
	if err := checkKernelVersion(kernelRelease()); err != nil {
		return err
	}
	if err := checkPIDNamespace(); err != nil {
		return err
	}
	if _, err := os.Stat(btfPath); err != nil {
		return fmt.Errorf("kernel BTF not found at %s (%w): the BPF program is compiled once and relocated with CO-RE, "+
			"which needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (the default on current distributions)", btfPath, err)
	}
	if err := probeBPF(); err != nil {
		return explainLoadError(err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		// Unprivileged, cilium/ebpf's memcg probe is refused too and it falls back to
		// the rlimit: the missing privilege is the real cause, so say that.
		return explainLoadError(fmt.Errorf("raising RLIMIT_MEMLOCK for BPF maps (kernels before 5.11 need it; CAP_SYS_RESOURCE there): %w", err))
	}
	if err := haveRingBuf(); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("this kernel reports no BPF ring buffer (mainline has it since 5.8, and the receiver needs it "+
				"for its records): use a kernel built with CONFIG_BPF_SYSCALL and the ring buffer, 5.10 or newer: %w", err)
		}
		return explainLoadError(fmt.Errorf("probing for BPF ring buffer support: %w", err))
	}
	return ensureTracefs()
}

func checkKernelVersion(release string) error {
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return fmt.Errorf("cannot read the kernel version from uname's release %q: %w", release, err)
	}
	if major < minKernel[0] || major == minKernel[0] && minor < minKernel[1] {
		return fmt.Errorf("this kernel is Linux %s: the receiver needs Linux %d.%d or newer "+
			"(the oldest kernel it is tested on; it needs BTF, the BPF ring buffer, CAP_BPF and CAP_PERFMON)",
			release, minKernel[0], minKernel[1])
	}
	return nil
}

// cgroupID is the id bpf_get_current_cgroup_id returns for tasks in dir: the
// inode number of the cgroup v2 directory.
func cgroupID(dir string) (uint64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return 0, fmt.Errorf("cgroup_path %q: %w; give an existing cgroup v2 directory (see /proc/<etcd pid>/cgroup)", dir, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, fmt.Errorf("cgroup_path %q is not on a cgroup v2 file system; give a directory under the unified hierarchy (usually /sys/fs/cgroup)", dir)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("cgroup_path %q: %w", dir, err)
	}
	return st.Ino, nil
}

// kernelRelease is uname -r, a variable so that tests can stand in for another kernel.
var kernelRelease = func() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "(unknown release)"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// perfEventParanoid is kernel.perf_event_paranoid, or 0 where it cannot be read.
var perfEventParanoid = func() int {
	data, err := os.ReadFile("/proc/sys/kernel/perf_event_paranoid")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return n
}

// haveSchedInfo checks that the kernel keeps each thread's run delay
// (task_struct.sched_info, CONFIG_SCHED_INFO): the scheduler part reads it.
var haveSchedInfo = func() error {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("scheduler: reading the kernel's BTF: %w", err)
	}
	var task *btf.Struct
	if err := spec.TypeByName("task_struct", &task); err != nil {
		return fmt.Errorf("scheduler: the kernel's BTF has no task_struct: %w", err)
	}
	for _, m := range task.Members {
		if m.Name == "sched_info" {
			return nil
		}
	}
	return fmt.Errorf("scheduler: this kernel keeps no run delay per thread (task_struct.sched_info, CONFIG_SCHED_INFO, " +
		"which CONFIG_SCHEDSTATS or CONFIG_TASK_DELAY_ACCT select; /proc/<pid>/schedstat is missing too): " +
		"set scheduler: false, or use a kernel built with CONFIG_SCHEDSTATS=y")
}
