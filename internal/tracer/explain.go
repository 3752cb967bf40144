//go:build linux && (amd64 || arm64)

package tracer

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// verifierLogLines is how much of the verifier's log an error carries: its
// verdict is at the end, after the instructions it walked.
const verifierLogLines = 12

func explainLoadError(err error) error {
	// The verifier refuses with EACCES too: a log means it was the verifier,
	// which no privilege would change.
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) && len(ve.Log) > 0 {
		return fmt.Errorf("the kernel's verifier rejected the BPF program on Linux %s: this build of the receiver "+
			"does not support this kernel; please report it with this message: %w; last lines of the verifier log: %s",
			kernelRelease(), err, strings.Join(lastLines(ve.Log, verifierLogLines), " | "))
	}
	if isRefusal(err) {
		if why := explainRefusal(); why != "" {
			// The cause is known: keep the kernel's errno, not cilium/ebpf's
			// guess at memlock that it appends to every EPERM.
			var errno unix.Errno
			if errors.As(err, &errno) {
				err = errno
			}
			return fmt.Errorf("loading BPF programs was refused: %s: %w", why, err)
		}
		return fmt.Errorf("loading BPF programs was refused: run the collector as root, or grant it CAP_BPF, CAP_PERFMON "+
			"and CAP_SYS_RESOURCE (docs/privileges-and-security.md): %w", err)
	}
	return fmt.Errorf("loading BPF programs: %w", err)
}

func lastLines(lines []string, n int) []string {
	return lines[max(0, len(lines)-n):]
}

// explainAttachError names what a refused tracepoint perf event needs on this host.
func explainAttachError(tracepoint string, err error) error {
	if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("attaching to tracepoint %s: %w", tracepoint, err)
	}
	if perfEventsFiltered() {
		return fmt.Errorf("attaching to tracepoint syscalls:%s was refused: perf_event_open(2) is refused by the "+
			"collector's seccomp filter (/proc/self/status: Seccomp: 2): %s: %w", tracepoint, seccompAdvice, err)
	}
	if level := perfEventParanoid(); level > 2 {
		// Debian's kernels add level 3 (their default): no perf event without CAP_SYS_ADMIN.
		return fmt.Errorf("attaching to tracepoint %s was refused: kernel.perf_event_paranoid is %d, which lets "+
			"only CAP_SYS_ADMIN open perf events: run the collector as root or with CAP_SYS_ADMIN, or lower the setting "+
			"to 2 (sysctl kernel.perf_event_paranoid=2), where CAP_PERFMON is enough: %w", tracepoint, level, err)
	}
	return fmt.Errorf("attaching to tracepoint %s was refused: run the collector as root, or grant it CAP_PERFMON: %w",
		tracepoint, err)
}
