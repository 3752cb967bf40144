//go:build linux && (amd64 || arm64)

// Package etcdwriter builds and runs cmd/etcdwriter, the one program the tests
// and the bench use as a process named etcd that makes a known number of
// write(2) calls.
package etcdwriter

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

const importPath = "github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdwriter/cmd/etcdwriter"

// PrebuiltEnv names a prebuilt writer that Build copies instead of compiling,
// for hosts without a Go toolchain (make kernels' virtual machines).
const PrebuiltEnv = "ETCDEBPF_ETCDWRITER"

// Build compiles the writer into dir under name, which becomes its process
// name (comm): "etcd" to be traced by default.
func Build(dir, name string) (string, error) {
	bin := filepath.Join(dir, name)
	if prebuilt := os.Getenv(PrebuiltEnv); prebuilt != "" {
		data, err := os.ReadFile(prebuilt)
		if err != nil {
			return "", fmt.Errorf("%s: %w", PrebuiltEnv, err)
		}
		return bin, os.WriteFile(bin, data, 0o755)
	}
	out, err := exec.Command("go", "build", "-o", bin, importPath).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building etcdwriter: %w\n%s", err, out)
	}
	return bin, nil
}

// Options are the writer's flags.
type Options struct {
	Calls   int64   // write(2) calls, shared by the threads
	Size    int     // bytes per call
	Path    string  // file written to; "" for /dev/null
	Rate    float64 // calls per second, 0 for as fast as possible
	Threads int     // 0 for 1
	Wait    bool    // wait for a byte on stdin before the first write
	Report  bool    // print a Result line when done (one more write(2))

	Direct    bool // O_DIRECT: each write goes to the disk as it is (Size a multiple of 4096)
	DSync     bool // O_DSYNC: each write returns once on the disk
	Fdatasync bool // fdatasync(2) after each write
}

// Args are the command-line arguments for o.
func (o Options) Args() []string {
	args := []string{"-n", strconv.FormatInt(o.Calls, 10), "-size", strconv.Itoa(o.Size)}
	if o.Path != "" {
		args = append(args, "-path", o.Path)
	}
	if o.Rate > 0 {
		args = append(args, "-rate", strconv.FormatFloat(o.Rate, 'f', 0, 64))
	}
	if o.Threads > 1 {
		args = append(args, "-threads", strconv.Itoa(o.Threads))
	}
	if o.Wait {
		args = append(args, "-wait")
	}
	if o.Report {
		args = append(args, "-report")
	}
	for flag, on := range map[string]bool{"-direct": o.Direct, "-dsync": o.DSync, "-fdatasync": o.Fdatasync} {
		if on {
			args = append(args, flag)
		}
	}
	return args
}

// Result is what the writer reports with Options.Report.
type Result struct {
	Calls     int64
	Elapsed   time.Duration
	NsPerCall float64 // wall time per call and thread
	CPUNs     float64 // the process's CPU time per call
}

var resultRe = regexp.MustCompile(`calls=(\d+) elapsed_ns=(\d+) ns_per_call=([0-9.]+) cpu_ns_per_call=([0-9.]+)`)

// ParseResult reads the writer's result line from its output.
func ParseResult(out string) (Result, error) {
	m := resultRe.FindStringSubmatch(out)
	if m == nil {
		return Result{}, fmt.Errorf("etcdwriter printed no result: %q", out)
	}
	var r Result
	r.Calls, _ = strconv.ParseInt(m[1], 10, 64)
	ns, _ := strconv.ParseInt(m[2], 10, 64)
	r.Elapsed = time.Duration(ns)
	r.NsPerCall, _ = strconv.ParseFloat(m[3], 64)
	r.CPUNs, _ = strconv.ParseFloat(m[4], 64)
	return r, nil
}
