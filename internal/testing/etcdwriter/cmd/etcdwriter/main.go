//go:build linux && (amd64 || arm64)

// Command etcdwriter makes an exact number of write(2) calls as fast as it can,
// or at a given rate, from one or more threads: the load of the tests that count
// records and of the bench's tight-loop and ceiling phases. Installed under the
// name etcd it is matched by the receiver's default comm. Package etcdwriter
// builds and drives it; its flags are described there.
//
// Between its start and its last write it makes no other write(2) (the Go
// runtime makes none), so every write it makes is one of the n; with -report it
// makes one more, the result line.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	n := flag.Int64("n", 100000, "write(2) calls to make, shared by the threads")
	size := flag.Int("size", 64, "bytes per call, 1 to 4096; with -direct a multiple of 4096 up to 1 MiB")
	path := flag.String("path", "/dev/null", "file to write to; a regular file is rewound every 16384 writes (lseek, not traced)")
	rate := flag.Float64("rate", 0, "calls per second, all threads together; 0: as fast as possible")
	threads := flag.Int("threads", 1, "threads sharing the calls, each with its own fd")
	wait := flag.Bool("wait", false, "read a byte from stdin before the first write, so that a tracer can be given the pid first")
	report := flag.Bool("report", false, "print calls=, elapsed_ns=, ns_per_call=, cpu_ns_per_call= and threads= when done")
	direct := flag.Bool("direct", false, "open the file with O_DIRECT: each write goes to the disk as it is, bypassing the page cache")
	dsync := flag.Bool("dsync", false, "open the file with O_DSYNC: each write returns once it is on the disk")
	fdatasync := flag.Bool("fdatasync", false, "fdatasync(2) after each write, as etcd syncs its WAL")
	flag.Parse()
	maxSize := 4096
	if *direct {
		maxSize = 1 << 20
	}
	if *size < 1 || *size > maxSize || *direct && *size%4096 != 0 || *threads < 1 || *threads > 64 || *n < 0 {
		fail(2, "-size must be 1..4096 (with -direct a multiple of 4096 up to 1 MiB), -threads 1..64, -n >= 0")
	}
	flags := syscall.O_WRONLY | syscall.O_CREAT | syscall.O_CLOEXEC
	if *direct {
		flags |= syscall.O_DIRECT
	}
	if *dsync {
		flags |= syscall.O_DSYNC
	}

	fds := make([]int, *threads)
	for i := range fds {
		fd, err := syscall.Open(*path, flags, 0o644)
		if err != nil {
			fail(2, err.Error())
		}
		fds[i] = fd
	}
	regular := *path != "/dev/null"
	if *wait {
		var start [1]byte
		if _, err := syscall.Read(0, start[:]); err != nil {
			os.Exit(3)
		}
	}

	perThread := *n / int64(*threads)
	cpuStart, start := cpuTime(), time.Now()
	var wg sync.WaitGroup
	for _, fd := range fds {
		wg.Go(func() {
			runtime.LockOSThread()
			writeLoop(fd, perThread, *size, regular, *fdatasync, *rate/float64(*threads))
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpuStart
	if *report {
		done := perThread * int64(*threads)
		fmt.Printf("calls=%d elapsed_ns=%d ns_per_call=%.1f cpu_ns_per_call=%.1f threads=%d\n", done, elapsed.Nanoseconds(),
			float64(elapsed.Nanoseconds())*float64(*threads)/float64(done), float64(cpu.Nanoseconds())/float64(done), *threads)
	}
}

// writeLoop makes n writes of size bytes to fd, at rate calls per second if
// rate > 0. The writes are raw syscalls: nothing of the Go runtime in between.
func writeLoop(fd int, n int64, size int, regular, sync bool, rate float64) {
	buf := aligned(size)
	for i := range buf { // the alphabet, repeated (bpftest.WriterData): a captured payload can be checked
		buf[i] = 'a' + byte(i%26)
	}
	start := time.Now()
	for i := range n {
		if _, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(size)); errno != 0 {
			os.Exit(4)
		}
		if sync {
			if _, _, errno := syscall.RawSyscall(syscall.SYS_FDATASYNC, uintptr(fd), 0, 0); errno != 0 {
				os.Exit(5)
			}
		}
		if regular && i&16383 == 16383 {
			_, _ = syscall.Seek(fd, 0, 0)
		}
		if rate > 0 && i&255 == 255 {
			due := start.Add(time.Duration(float64(i+1) * 1e9 / rate))
			for wait := time.Until(due); wait > 0; wait = time.Until(due) {
				if wait > 200*time.Microsecond {
					time.Sleep(wait / 2)
				}
			}
		}
	}
}

// aligned is a buffer of size bytes at a 4 KiB boundary, as O_DIRECT needs.
func aligned(size int) []byte {
	buf := make([]byte, size+4096)
	off := (4096 - int(uintptr(unsafe.Pointer(&buf[0]))&4095)) & 4095
	return buf[off : off+size]
}

// cpuTime is the CPU time of the whole process (user and system, all threads):
// what the calls cost the writer, without the time it waited for a CPU.
func cpuTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

func fail(code int, msg string) {
	fmt.Fprintln(os.Stderr, "etcdwriter:", msg)
	os.Exit(code)
}
