// Package podman builds the collector's image and runs a Kubernetes pod spec's
// container under podman, translating its security context, mounts and
// environment into podman's flags: the tests run what the manifest says, not a
// second copy of it.
package podman

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/kube"
)

// globalFlags come before podman's command: crun refuses the hybrid cgroup
// layout of these machines, runc runs it.
var globalFlags = []string{"--runtime", "runc"}

// limitFlags keep the container's limits within the current hard limits: podman's
// defaults lie above them, and root without CAP_SYS_RESOURCE cannot raise them.
var limitFlags = []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

// Available reports why podman cannot run containers here, or nil.
func Available() error {
	for _, tool := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (apt-get install podman runc): %w", tool, err)
		}
	}
	return nil
}

// Args is podman's command line for args: the global flags, then args.
func Args(args ...string) []string { return append(append([]string{}, globalFlags...), args...) }

// Command is podman with args, after the global flags.
func Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "podman", Args(args...)...)
}

// Output runs podman with args and returns its stdout, or an error carrying its stderr.
func Output(ctx context.Context, args ...string) (string, error) {
	cmd := Command(ctx, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// BuildImage builds root's Containerfile around the collector binary bin as
// tag, offline: the build context holds bin alone, nothing is pulled and no
// step runs with a network (as `make image` does).
func BuildImage(ctx context.Context, root, bin, tag string) error {
	dir, err := os.MkdirTemp("", "otelcol-etcd-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "otelcol-etcd"), data, 0o755); err != nil {
		return err
	}
	_, err = Output(ctx, "build", "--pull=never", "--network=none", "-q", "-f", filepath.Join(root, "Containerfile"), "-t", tag, dir)
	return err
}

// Host is what a pod's volumes and profiles stand for on this machine.
type Host struct {
	ConfigMaps map[string]string // ConfigMap name -> a directory holding its data as files
	SeccompDir string            // where Localhost seccomp profiles are (kubelet's /var/lib/kubelet/seccomp)
	// HostPaths stand in for the pod's writable hostPath volumes (host path ->
	// a directory here), so that a test does not write into the machine's own.
	HostPaths map[string]string
}

// RunFlags are `podman run`'s flags for container c of pod: host PID
// namespace, user, capabilities, seccomp profile, read-only root, privilege
// escalation, mounts and environment. A field it cannot translate is an error,
// never silently left out.
func RunFlags(pod kube.PodSpec, c kube.Container, host Host) ([]string, error) {
	flags := append([]string{}, limitFlags...)
	if pod.HostPID {
		flags = append(flags, "--pid=host")
	}
	sc := c.SecurityContext
	if sc.Privileged != nil && *sc.Privileged {
		flags = append(flags, "--privileged")
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		flags = append(flags, "--security-opt=no-new-privileges")
	}
	if sc.ReadOnlyRootFilesystem {
		// Kubernetes mounts no tmpfs of its own on a read-only root; podman would.
		flags = append(flags, "--read-only", "--read-only-tmpfs=false")
	}
	if sc.RunAsUser != nil {
		user := fmt.Sprint(*sc.RunAsUser)
		if sc.RunAsGroup != nil {
			user += fmt.Sprintf(":%d", *sc.RunAsGroup)
		}
		flags = append(flags, "--user="+user)
	}
	for _, capability := range sc.Capabilities.Drop {
		flags = append(flags, "--cap-drop="+strings.ToLower(capability))
	}
	for _, capability := range sc.Capabilities.Add {
		flags = append(flags, "--cap-add="+capability)
	}
	if p := sc.SeccompProfile; p != nil {
		switch p.Type {
		case "RuntimeDefault": // podman's default profile
		case "Unconfined":
			flags = append(flags, "--security-opt=seccomp=unconfined")
		case "Localhost":
			if host.SeccompDir == "" || p.LocalhostProfile == "" {
				return nil, errors.New("seccompProfile Localhost: no profile directory or localhostProfile")
			}
			flags = append(flags, "--security-opt=seccomp="+filepath.Join(host.SeccompDir, p.LocalhostProfile))
		default:
			return nil, fmt.Errorf("seccompProfile type %q", p.Type)
		}
	}
	for _, m := range c.VolumeMounts {
		v := pod.Volume(m.Name)
		var source string
		switch {
		case v == nil:
			return nil, fmt.Errorf("volumeMount %s: no such volume", m.Name)
		case v.HostPath != nil:
			source = v.HostPath.Path
			if dir, ok := host.HostPaths[source]; ok {
				source = dir
			}
			switch v.HostPath.Type {
			case "":
			case "DirectoryOrCreate": // what the kubelet does before it mounts
				if err := os.MkdirAll(source, 0o755); err != nil {
					return nil, fmt.Errorf("volume %s: %w", m.Name, err)
				}
			case "Directory": // the kubelet refuses to start the pod without it
				if info, err := os.Stat(source); err != nil || !info.IsDir() {
					return nil, fmt.Errorf("volume %s: hostPath %s is not a directory (%v)", m.Name, source, err)
				}
			default:
				return nil, fmt.Errorf("volume %s: hostPath type %q", m.Name, v.HostPath.Type)
			}
		case v.ConfigMap != nil:
			dir, ok := host.ConfigMaps[v.ConfigMap.Name]
			if !ok {
				return nil, fmt.Errorf("volume %s: ConfigMap %s not given", m.Name, v.ConfigMap.Name)
			}
			source = dir
		default:
			return nil, fmt.Errorf("volume %s: only hostPath and configMap volumes are translated", m.Name)
		}
		mount := source + ":" + m.MountPath
		if m.ReadOnly || v.ConfigMap != nil { // ConfigMap volumes are read-only in Kubernetes
			mount += ":ro"
		}
		flags = append(flags, "-v", mount)
	}
	for _, e := range c.Env {
		flags = append(flags, "-e", e.Name+"="+e.Value)
	}
	return flags, nil
}

// WriteConfigMap writes cm's data into dir, one file per key, as a ConfigMap volume shows it.
func WriteConfigMap(cm kube.Object, dir string) error {
	for name, data := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}
