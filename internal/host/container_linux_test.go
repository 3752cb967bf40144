//go:build linux && (amd64 || arm64)

package host

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParseCgroups(t *testing.T) {
	const id = "fe52c3a559cc88ebbda0324f7272028e40c3121dbfd39b41d4fb658043105597"
	const uid = "0d3c1a52-7d4e-4b8f-9a51-3c2f6a1e9b70"
	for _, tt := range []struct {
		name, cgroup string
		want         Container
	}{
		{"kubeadm, systemd driver, containerd", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0d3c1a52_7d4e_4b8f_9a51_3c2f6a1e9b70.slice/cri-containerd-" + id + ".scope\n",
			Container{ID: id, PodUID: uid}},
		{"cgroupfs driver, guaranteed pod", "0::/kubepods/pod" + uid + "/" + id + "\n", Container{ID: id, PodUID: uid}},
		{"CRI-O", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0d3c1a52_7d4e_4b8f_9a51_3c2f6a1e9b70.slice/crio-" + id + ".scope\n",
			Container{ID: id, PodUID: uid}},
		{"docker, systemd", "0::/system.slice/docker-" + id + ".scope\n", Container{ID: id}},
		{"podman, hybrid hierarchy (this machine)", "9:name=systemd:/libpod_parent/libpod-" + id + "\n1:cpu:/libpod_parent/libpod-" + id + "\n0::/libpod_parent/libpod-" + id + "\n",
			Container{ID: id}},
		{"v1 only", "4:memory:/docker/" + id + "\n1:name=systemd:/docker/" + id + "\n", Container{ID: id}},
		{"a host service", "0::/system.slice/etcd.service\n", Container{}},
		{"a user session", "0::/user.slice/user-0.slice/session-1.scope\n", Container{}},
		{"a pod's own cgroup, no container", "0::/kubepods/pod" + uid + "\n", Container{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, parseCgroups(tt.cgroup))
		})
	}
}

func TestProcessContainerOfThisProcess(t *testing.T) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	assert.Equal(t, parseCgroups(string(data)), Proc.Container(os.Getpid()))
	assert.Equal(t, Container{}, Proc.Container(-1), "no process")
}
