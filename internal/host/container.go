//go:build linux && (amd64 || arm64)

package host

import (
	"os"
	"path"
	"regexp"
	"strings"
)

// Container is the container a process runs in, as its cgroup path names it:
// what contrib's k8sattributes processor needs to add the pod, its namespace
// and its node.
type Container struct {
	ID     string // the runtime's 64-hex id: container.id
	PodUID string // the pod's uid where the path holds it (kubelet's cgroups): k8s.pod.uid
}

var (
	// The last directory of a container's cgroup: the id alone (cgroupfs
	// drivers), or after the runtime's prefix and before ".scope" (systemd:
	// cri-containerd-, crio-, docker-, libpod-).
	containerCgroup = regexp.MustCompile(`^(?:[a-z]+(?:-[a-z]+)*-)?([0-9a-f]{64})(?:\.scope)?$`)
	// kubelet's pod directory: pod<uid>, with '_' for '-' under systemd.
	podCgroup = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?(?:/|$)`)
)

// Container is the container of process pid; empty outside containers or if it is gone.
func (fs Procfs) Container(pid int) Container {
	data, err := os.ReadFile(fs.path(pid, "cgroup"))
	if err != nil {
		return Container{}
	}
	return parseCgroups(string(data))
}

// parseCgroups reads /proc/<pid>/cgroup: the unified hierarchy's line ("0::")
// first, then the v1 hierarchies', for hosts that keep containers there.
func parseCgroups(data string) Container {
	var found Container
	for line := range strings.Lines(data) {
		hierarchy, rest, _ := strings.Cut(strings.TrimSpace(line), ":")
		_, cgroup, _ := strings.Cut(rest, ":")
		c := parseCgroup(cgroup)
		if c.ID == "" {
			continue
		}
		if hierarchy == "0" {
			return c
		}
		if found.ID == "" {
			found = c
		}
	}
	return found
}

func parseCgroup(cgroup string) Container {
	m := containerCgroup.FindStringSubmatch(path.Base(cgroup))
	if m == nil {
		return Container{}
	}
	c := Container{ID: m[1]}
	if p := podCgroup.FindStringSubmatch(cgroup); p != nil {
		c.PodUID = strings.ReplaceAll(p[1], "_", "-")
	}
	return c
}
