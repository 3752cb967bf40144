package podman

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/kube"
)

func TestRunFlags(t *testing.T) {
	no, zero := false, 0
	pod := kube.PodSpec{
		HostPID: true,
		Volumes: []kube.Volume{
			{Name: "config", ConfigMap: &kube.ConfigMapSource{Name: "cm"}},
			{Name: "tracefs", HostPath: &kube.HostPathSource{Path: "/sys/kernel/tracing"}},
			{Name: "queue", HostPath: &kube.HostPathSource{Path: "/var/lib/q", Type: "DirectoryOrCreate"}},
		},
	}
	c := kube.Container{
		Env: []kube.EnvVar{{Name: "A", Value: "b"}},
		VolumeMounts: []kube.VolumeMount{
			{Name: "config", MountPath: "/etc/otelcol-etcd"},
			{Name: "tracefs", MountPath: "/sys/kernel/tracing", ReadOnly: true},
			{Name: "queue", MountPath: "/var/lib/q"},
		},
	}
	sc := &c.SecurityContext
	sc.Privileged, sc.AllowPrivilegeEscalation, sc.ReadOnlyRootFilesystem = &no, &no, true
	sc.RunAsUser, sc.RunAsGroup = &zero, &zero
	sc.Capabilities.Drop, sc.Capabilities.Add = []string{"ALL"}, []string{"BPF", "PERFMON"}
	sc.SeccompProfile = &kube.SeccompProfile{Type: "Localhost", LocalhostProfile: "etcdebpf.json"}
	queue := filepath.Join(t.TempDir(), "queue")
	host := Host{ConfigMaps: map[string]string{"cm": "/tmp/cm"}, SeccompDir: "/profiles", HostPaths: map[string]string{"/var/lib/q": queue}}

	flags, err := RunFlags(pod, c, host)
	require.NoError(t, err)
	assert.Equal(t, append(append([]string{}, limitFlags...),
		"--pid=host", "--security-opt=no-new-privileges", "--read-only", "--read-only-tmpfs=false", "--user=0:0",
		"--cap-drop=all", "--cap-add=BPF", "--cap-add=PERFMON",
		"--security-opt=seccomp="+filepath.Join("/profiles", "etcdebpf.json"),
		"-v", "/tmp/cm:/etc/otelcol-etcd:ro", "-v", "/sys/kernel/tracing:/sys/kernel/tracing:ro", "-v", queue+":/var/lib/q",
		"-e", "A=b"), flags)
	assert.DirExists(t, queue, "DirectoryOrCreate: created, in the directory standing in for the host's")

	for name, change := range map[string]func(*kube.PodSpec, *kube.Container){
		"an unknown seccomp type": func(_ *kube.PodSpec, c *kube.Container) { c.SecurityContext.SeccompProfile.Type = "Other" },
		"a mount of no volume": func(_ *kube.PodSpec, c *kube.Container) {
			c.VolumeMounts = append(c.VolumeMounts, kube.VolumeMount{Name: "nowhere", MountPath: "/x"})
		},
		"a hostPath type not translated": func(p *kube.PodSpec, _ *kube.Container) {
			p.Volumes[1] = kube.Volume{Name: "tracefs", HostPath: &kube.HostPathSource{Path: "/sys/kernel/tracing", Type: "Socket"}}
		},
		"a volume of another kind": func(p *kube.PodSpec, c *kube.Container) {
			p.Volumes = append(p.Volumes, kube.Volume{Name: "empty"})
			c.VolumeMounts = append(c.VolumeMounts, kube.VolumeMount{Name: "empty", MountPath: "/x"})
		},
	} {
		t.Run(name, func(t *testing.T) {
			p, cc := pod, c
			p.Volumes = append([]kube.Volume{}, pod.Volumes...)
			cc.VolumeMounts = append([]kube.VolumeMount{}, c.VolumeMounts...)
			profile := *c.SecurityContext.SeccompProfile
			cc.SecurityContext.SeccompProfile = &profile
			change(&p, &cc)
			_, err := RunFlags(p, cc, host)
			assert.Error(t, err, "what cannot be translated is an error, not left out")
		})
	}
}
