//go:build linux

package convert

import "go.opentelemetry.io/collector/pdata/pcommon"

// commandArgs is each traced process's command line, for the Resource's
// process.command_args: what tells apart processes of one executable, such as
// a cluster's members on one host (--name, --data-dir). It is the process's
// identity, read once per process, and forgotten when the process is gone,
// since its pid can be reused.
type commandArgs struct {
	read   func(pid uint32) []string // nil: no command_args
	exited func(pid uint32) bool
	byPID  map[uint32][]string
}

// put adds pid's command line to res, if it has one.
func (c *commandArgs) put(res pcommon.Map, pid uint32) {
	if c.read == nil {
		return
	}
	args, ok := c.byPID[pid]
	if !ok {
		args = c.read(pid)
		if len(args) > 0 {
			c.byPID[pid] = args
		}
	}
	if len(args) == 0 {
		return // gone already, or a kernel thread
	}
	s := res.PutEmptySlice(AttrProcessCommandArgs)
	s.EnsureCapacity(len(args))
	for _, a := range args {
		s.AppendEmpty().SetStr(a)
	}
}

// sweep forgets the processes that are gone.
func (c *commandArgs) sweep() {
	for pid := range c.byPID {
		if c.exited(pid) {
			delete(c.byPID, pid)
		}
	}
}

func (c *commandArgs) forget(pid uint32) { delete(c.byPID, pid) }
