//go:build linux && (amd64 || arm64)

package convert

import (
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/etcdebpf/etcdebpfreceiver/internal/process"
)

// Processes tells which process runs as a pid, whether it still does, and what
// it is: the process registry (process.Registry), which the records, the
// metrics and the host watch share, so that they agree on when a process ended.
type Processes interface {
	// Check reads each process asked about once; the answers hold until the next.
	Check()
	Lookup(pid int) (process.Process, bool)
	Running(process.Process) bool
	Describe(process.Process) process.Description
}

// putDescription adds a process's command line and container to its Resource,
// where it has them: process.command_args tells apart processes of one
// executable, such as a cluster's members on one host (--name, --data-dir);
// container.id and k8s.pod.uid are what contrib's k8sattributes processor
// needs to add the pod, its namespace and its node.
func putDescription(res pcommon.Map, d process.Description) {
	if d.Container.ID != "" {
		res.PutStr(AttrContainerID, d.Container.ID)
	}
	if d.Container.PodUID != "" {
		res.PutStr(AttrK8sPodUID, d.Container.PodUID)
	}
	if len(d.Args) == 0 {
		return
	}
	s := res.PutEmptySlice(AttrProcessCommandArgs)
	s.EnsureCapacity(len(d.Args))
	for _, a := range d.Args {
		s.AppendEmpty().SetStr(a)
	}
}
