//go:build linux && (amd64 || arm64)

package tracer

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// initPIDNamespace is the inode of the kernel's initial PID namespace
// (PROC_PID_INIT_INO, fixed in include/linux/proc_ns.h): the namespace of the
// pids the BPF programs see and record.
const initPIDNamespace = 0xEFFFFFFC

// pidNamespacePath is the collector's own PID namespace, a variable for the tests.
var pidNamespacePath = "/proc/self/ns/pid"

// checkPIDNamespace fails unless the collector shares the kernel's initial PID
// namespace: the programs record host pids, and in another namespace /proc
// would read those numbers as other processes, or none, and every target
// would look gone.
func checkPIDNamespace() error {
	var st unix.Stat_t
	if err := unix.Stat(pidNamespacePath, &st); err != nil {
		return fmt.Errorf("reading the collector's PID namespace (%s): %w", pidNamespacePath, err)
	}
	if st.Ino != initPIDNamespace {
		return fmt.Errorf("the collector is not in the host's PID namespace (%s is pid:[%d], the host's is pid:[%d]): "+
			"the kernel reports host pids, which this namespace cannot see; run it in the host's PID namespace "+
			"(Kubernetes: hostPID: true; podman or docker: --pid=host)", pidNamespacePath, st.Ino, uint64(initPIDNamespace))
	}
	return nil
}

// processStatus is what /proc/self/status says about the collector's privileges.
type processStatus struct {
	effective uint64 // CapEff, one bit per capability
	seccomp   int    // 0 none, 1 strict, 2 filter
}

// statusPath is read by readProcessStatus, a variable for the tests.
var statusPath = "/proc/self/status"

func readProcessStatus() (processStatus, error) {
	f, err := os.Open(statusPath)
	if err != nil {
		return processStatus{}, err
	}
	defer f.Close()
	var st processStatus
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, _ := strings.Cut(sc.Text(), ":")
		value = strings.TrimSpace(value)
		switch key {
		case "CapEff":
			if st.effective, err = strconv.ParseUint(value, 16, 64); err != nil {
				return processStatus{}, fmt.Errorf("%s: CapEff %q: %w", statusPath, value, err)
			}
		case "Seccomp":
			if st.seccomp, err = strconv.Atoi(value); err != nil {
				return processStatus{}, fmt.Errorf("%s: Seccomp %q: %w", statusPath, value, err)
			}
		}
	}
	return st, sc.Err()
}

func (st processStatus) has(capability int) bool { return st.effective&(1<<capability) != 0 }

// missingCapabilities are the capabilities loading and attaching need that st lacks.
func (st processStatus) missingCapabilities(before511 bool) []string {
	var missing []string
	for _, c := range []struct {
		bit  int
		name string
	}{{unix.CAP_BPF, "CAP_BPF"}, {unix.CAP_PERFMON, "CAP_PERFMON"}} {
		// CAP_SYS_ADMIN stands in for both (the kernel's bpf_capable and perfmon_capable).
		if !st.has(c.bit) && !st.has(unix.CAP_SYS_ADMIN) {
			missing = append(missing, c.name)
		}
	}
	if before511 && !st.has(unix.CAP_SYS_RESOURCE) {
		missing = append(missing, "CAP_SYS_RESOURCE")
	}
	return missing
}

// refusedBySeccomp reports whether a seccomp filter, not the kernel, refuses the
// system call sysno: called with arguments the kernel itself rejects as invalid
// (EINVAL, EFAULT), it gets EPERM or ENOSYS only from a filter that answered
// before the kernel looked (runtimes' default profiles answer EPERM, profiles
// that do not list a call ENOSYS). Asked only once the capabilities are there:
// before 6.x the kernel answers EPERM to any bpf(2) without CAP_BPF.
var refusedBySeccomp = func(sysno uintptr) bool {
	var errno unix.Errno
	switch sysno {
	case unix.SYS_BPF:
		const unknownCommand = 1 << 20
		_, _, errno = unix.Syscall(unix.SYS_BPF, unknownCommand, 0, 0)
	case unix.SYS_PERF_EVENT_OPEN:
		_, _, errno = unix.Syscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0) // no attr
	}
	return errno == unix.EPERM || errno == unix.ENOSYS
}

// seccompAdvice is what to do when the runtime's seccomp profile filters out
// bpf(2) or perf_event_open(2).
const seccompAdvice = "container runtimes' default seccomp profiles allow bpf and perf_event_open only with " +
	"CAP_SYS_ADMIN; run the collector with the seccomp profile examples/kubernetes/seccomp/etcdebpf.json " +
	"(Kubernetes: seccompProfile type Localhost; podman or docker: --security-opt seccomp=<file>; docs/kubernetes.md)"

// explainRefusal names what is missing when bpf(2) was refused with EPERM or
// EACCES: a capability, or the call itself, filtered by seccomp. Empty when
// neither explains it.
func explainRefusal() string {
	st, err := readProcessStatus()
	if err != nil {
		return ""
	}
	if missing := st.missingCapabilities(!kernelAtLeast(5, 11)); len(missing) > 0 {
		why := ""
		if slices.Contains(missing, "CAP_SYS_RESOURCE") {
			why = " (before Linux 5.11 BPF maps are charged to RLIMIT_MEMLOCK, which only CAP_SYS_RESOURCE may raise)"
		}
		return fmt.Sprintf("the collector lacks %s%s: run the collector as root, or grant it %s "+
			"(Kubernetes: securityContext.capabilities.add; podman or docker: --cap-add; docs/kubernetes.md)",
			joinNames(missing), why, joinNames(missing))
	}
	if st.seccomp == 2 && refusedBySeccomp(unix.SYS_BPF) {
		return "bpf(2) is refused by the collector's seccomp filter (/proc/self/status: Seccomp: 2), " +
			"not for a missing capability: " + seccompAdvice
	}
	return ""
}

// perfEventsFiltered reports whether a seccomp filter refuses perf_event_open(2).
func perfEventsFiltered() bool {
	st, err := readProcessStatus()
	return err == nil && st.seccomp == 2 && refusedBySeccomp(unix.SYS_PERF_EVENT_OPEN)
}

func joinNames(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// kernelAtLeast reports whether the running kernel is major.minor or newer.
func kernelAtLeast(major, minor int) bool {
	var maj, mnr int
	if _, err := fmt.Sscanf(kernelRelease(), "%d.%d", &maj, &mnr); err != nil {
		return true
	}
	return maj > major || maj == major && mnr >= minor
}

// probeBPF creates and closes a one-entry array map with a bare bpf(2) call, so
// that a refusal is reported as one: cilium/ebpf would fall back to raising
// RLIMIT_MEMLOCK (which from 5.11 does not matter) and blame the limit. The map
// fits in any memlock limit.
func probeBPF() error {
	attr := struct{ mapType, keySize, valueSize, maxEntries uint32 }{unix.BPF_MAP_TYPE_ARRAY, 4, 4, 1}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return fmt.Errorf("creating a BPF map: %w", errno)
	}
	return unix.Close(int(fd))
}

// isRefusal reports whether err is the kernel's (or a filter's) refusal.
func isRefusal(err error) bool { return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) }
