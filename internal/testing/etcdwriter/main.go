//go:build linux

// Command etcdwriter makes a known number of write(2) calls as fast as it can, for
// tests and benchmarks that need a process named etcd with an exact syscall count:
// install it under the name etcd. It waits for a byte on stdin before it starts,
// so that a tracer can be given its pid first, and it reports nothing through
// write(2) afterwards, so that every write it makes is one of the n.
package main

import (
	"flag"
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

func main() {
	n := flag.Int("n", 100000, "write(2) calls to make")
	size := flag.Int("size", 64, "bytes per call")
	path := flag.String("path", "/dev/null", "file to write to")
	flag.Parse()

	fd, err := syscall.Open(*path, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcdwriter: %v\n", err)
		os.Exit(2)
	}
	var start [1]byte
	if _, err := syscall.Read(0, start[:]); err != nil {
		os.Exit(3)
	}
	buf := make([]byte, max(*size, 1))
	for range *n {
		_, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(*size))
		if errno != 0 {
			os.Exit(4)
		}
	}
	os.Exit(0)
}
