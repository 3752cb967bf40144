//go:build linux

package tracer

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Tracepoint attachment looks up event ids under tracefs, which some hosts do not mount.
var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

func ensureTracefs() error {
	for _, dir := range tracefsDirs {
		if _, err := os.Stat(dir + "/events/syscalls"); err == nil {
			return nil
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
