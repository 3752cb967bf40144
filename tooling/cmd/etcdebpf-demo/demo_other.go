//go:build !linux

package main

import (
	"context"
	"errors"
	"io"
	"time"
)

// Options of Run.
type Options struct {
	Duration   time.Duration
	Clients    int
	EtcdBin    string
	Collector  string
	Verbose    bool
	Lines      int
	Keep       bool
	Serve      bool
	Cluster    bool
	Report     string
	Prometheus bool
	Out        io.Writer
}

// Run fails: the receiver traces Linux syscalls.
func Run(context.Context, Options) error {
	return errors.New("the etcdebpf demo runs on Linux only (eBPF tracepoints)")
}
