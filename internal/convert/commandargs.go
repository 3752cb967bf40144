//go:build linux && (amd64 || arm64)

package convert

import "go.opentelemetry.io/collector/pdata/pcommon"

// commandArgs is each traced process's command line, for the Resource's
// process.command_args: what tells apart processes of one executable, such as
// a cluster's members on one host (--name, --data-dir); and its container, for
// container.id and k8s.pod.uid. It is the process's identity, read once per
// process, and forgotten when the process is gone, since its pid can be reused.
type commandArgs struct {
	read      func(pid uint32) []string  // nil: no command_args
	container func(pid uint32) Container // nil: no container.id
	lookup    Lookup                     // for sweep; nil: the owner calls forget
	byPID     map[uint32]processIdentity
}

// Container is the container a process runs in, from its cgroup path.
type Container struct {
	ID     string // container.id
	PodUID string // k8s.pod.uid, where the path holds it
}

type processIdentity struct {
	process   uint64 // Process.ID: which process of that pid it was read of
	args      []string
	container Container
}

// put adds pid's command line and container to res, where it has them.
func (c *commandArgs) put(res pcommon.Map, pid uint32) {
	if c.read == nil && c.container == nil {
		return
	}
	if c.byPID == nil {
		c.byPID = map[uint32]processIdentity{}
	}
	id, ok := c.byPID[pid]
	if !ok {
		if c.lookup != nil {
			// Looked up before the reads: should the pid be reused between them,
			// sweep finds the newcomer's ID differs and reads again.
			p, _ := c.lookup(pid)
			id.process = p.ID
		}
		if c.read != nil {
			id.args = c.read(pid)
		}
		if c.container != nil {
			id.container = c.container(pid)
		}
		if len(id.args) > 0 || c.read == nil { // no command line: gone already, or a kernel thread; read again next time
			c.byPID[pid] = id
		}
	}
	if id.container.ID != "" {
		res.PutStr(AttrContainerID, id.container.ID)
	}
	if id.container.PodUID != "" {
		res.PutStr(AttrK8sPodUID, id.container.PodUID)
	}
	if len(id.args) == 0 {
		return
	}
	s := res.PutEmptySlice(AttrProcessCommandArgs)
	s.EnsureCapacity(len(id.args))
	for _, a := range id.args {
		s.AppendEmpty().SetStr(a)
	}
}

// sweep forgets the processes that are gone, and those whose pid another
// process has now.
func (c *commandArgs) sweep() {
	if c.lookup == nil {
		return
	}
	for pid, id := range c.byPID {
		if now, running := c.lookup(pid); !running || now.ID != id.process {
			delete(c.byPID, pid)
		}
	}
}

func (c *commandArgs) forget(pid uint32) { delete(c.byPID, pid) }
