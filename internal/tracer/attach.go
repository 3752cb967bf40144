//go:build linux && (amd64 || arm64)

package tracer

import (
	"errors"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// tracepoint pairs a traced syscall with its enter and exit programs.
type tracepoint struct {
	syscall     Syscall
	enter, exit *ebpf.Program
}

// tracepoints lists every syscall the BPF object can trace.
func (t *Tracer) tracepoints() []tracepoint {
	p := &t.objs.MonitorPrograms
	return []tracepoint{
		{SyscallWrite, p.EnterWrite, p.ExitWrite},
		{SyscallPwrite64, p.EnterPwrite64, p.ExitPwrite64},
		{SyscallWritev, p.EnterWritev, p.ExitWritev},
		{SyscallPwritev, p.EnterPwritev, p.ExitPwritev},
		{SyscallFsync, p.EnterFsync, p.ExitFsync},
		{SyscallFdatasync, p.EnterFdatasync, p.ExitFdatasync},
		{SyscallSyncFileRange, p.EnterSyncFileRange, p.ExitSyncFileRange},
	}
}

// attach attaches every exit program before any enter program, so that a call
// parked by an enter always meets its exit and no inflight entry is left behind.
// Taking over, it opens the pinned links instead.
func (t *Tracer) attach() error {
	selected, err := selectedSyscalls(t.opts.Syscalls)
	if err != nil {
		return err
	}
	tps := slices.DeleteFunc(t.tracepoints(), func(tp tracepoint) bool { return len(selected) > 0 && !selected[tp.syscall.String()] })
	for _, tp := range tps {
		if err := attachTo(t.pin, "sys_exit_"+tp.syscall.String(), tp.exit, &t.exits); err != nil {
			return err
		}
	}
	if t.opts.Scheduler {
		if err := hold(t.pin, "sched_switch", func() (link.Link, error) {
			l, err := link.AttachTracing(link.TracingOptions{Program: t.objs.OnSwitch})
			if err != nil {
				return nil, explainAttachError("sched:sched_switch (tp_btf)", err)
			}
			return l, nil
		}, &t.sched); err != nil {
			return err
		}
	}
	for _, tp := range tps {
		if err := attachTo(t.pin, "sys_enter_"+tp.syscall.String(), tp.enter, &t.enters); err != nil {
			return err
		}
	}
	return nil
}

// hold appends to links the link of the attachment point name: attach's, pinned
// at p when there is one, or the one pinned there when p is taken over.
func hold(p *pinned, name string, attach func() (link.Link, error), links *[]link.Link) error {
	if p != nil && p.takeover {
		l, err := p.loadLink(name)
		if err != nil {
			return err
		}
		*links = append(*links, l)
		return nil
	}
	l, err := attach()
	if err != nil {
		return err
	}
	*links = append(*links, l)
	return p.pinLink(name, l)
}

func attachTo(p *pinned, tracepoint string, prog *ebpf.Program, links *[]link.Link) error {
	return hold(p, tracepoint, func() (link.Link, error) {
		l, err := link.Tracepoint("syscalls", tracepoint, prog, nil)
		if err != nil {
			return nil, explainAttachError("syscalls:"+tracepoint, err)
		}
		return l, nil
	}, links)
}

// Detach stops new records: all enter programs go first, then the exits, so a
// parked call still meets its exit. Records already in the ring stay readable.
// A pinned session is only let go of: the programs count on for the next agent,
// unless Options.Pin.Release, which removes the pins first.
//
// Links within a phase are closed concurrently: each close waits for an RCU grace
// period (tracepoint unregistration), and concurrent waits share one.
func (t *Tracer) Detach() error {
	var err error
	if t.pin != nil && t.opts.Pin.Release {
		err = t.pin.clear()
	}
	err = errors.Join(err, closeAll(t.enters), closeAll(t.sched), closeAll(t.exits))
	t.enters, t.sched, t.exits = nil, nil, nil
	if t.block != nil {
		err = errors.Join(err, t.block.detach())
	}
	return err
}

func closeAll(links []link.Link) error {
	errs := make([]error, len(links))
	var wg sync.WaitGroup
	for i, l := range links {
		wg.Go(func() { errs[i] = l.Close() })
	}
	wg.Wait()
	return errors.Join(errs...)
}
