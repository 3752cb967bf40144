//go:build linux && (amd64 || arm64)

package tracer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// Tracepoint attachment looks up event ids under tracefs, which some hosts do not mount.
var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

func ensureTracefs() error {
	for _, dir := range tracefsDirs {
		_, err := os.Stat(dir + "/events/syscalls")
		if err == nil {
			return nil
		}
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("tracefs at %s cannot be read (%w): run the collector as root, or grant CAP_DAC_READ_SEARCH next to CAP_BPF and CAP_PERFMON", dir, err)
		}
	}
	dir := tracefsDirs[0]
	if err := unix.Mount("tracefs", dir, "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted and mounting it at %s failed (%w): mount it before starting the collector "+
			"(mount -t tracefs tracefs %s), or run the collector with CAP_SYS_ADMIN; in a container, mount the host's /sys/kernel/tracing", dir, err, dir)
	}
	if _, err := os.Stat(dir + "/events/syscalls"); err != nil {
		return fmt.Errorf("tracefs is mounted at %s but has no syscall tracepoints (%w): the kernel needs CONFIG_FTRACE_SYSCALLS=y", dir, err)
	}
	return nil
}
