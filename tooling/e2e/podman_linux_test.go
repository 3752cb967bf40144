//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/checkout"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/kube"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/otlpsink"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/podman"
)

// shippedPod is the DaemonSet of examples/kubernetes/daemonset.yaml, ready to
// run under podman: its pod spec, its one container, and its ConfigMap written
// out as the volume shows it.
type shippedPod struct {
	pod       kube.PodSpec
	container kube.Container
	host      podman.Host
}

func readShippedPod(t *testing.T) shippedPod {
	t.Helper()
	root, err := checkout.Root()
	require.NoError(t, err)
	dir := filepath.Join(root, "examples", "kubernetes")
	objs, err := kube.Decode(filepath.Join(dir, "daemonset.yaml"))
	require.NoError(t, err)
	ds, cm := objs["DaemonSet"], objs["ConfigMap"]
	require.Len(t, ds.Spec.Template.Spec.Containers, 1)
	configDir := t.TempDir()
	require.NoError(t, os.Chmod(configDir, 0o755))
	require.NoError(t, podman.WriteConfigMap(cm, configDir))
	// The writable hostPaths (the exporters' queue) in a directory of the test's;
	// the BPF file system's (pin_path's) in a directory of the test's on the host's.
	hostPaths := map[string]string{}
	for _, m := range ds.Spec.Template.Spec.Containers[0].VolumeMounts {
		if v := ds.Spec.Template.Spec.Volume(m.Name); v != nil && v.HostPath != nil && !m.ReadOnly {
			if v.HostPath.Path == bpffsRoot {
				hostPaths[v.HostPath.Path] = testBPFFSDir(t)
				continue
			}
			hostPaths[v.HostPath.Path] = filepath.Join(t.TempDir(), m.Name)
		}
	}
	return shippedPod{
		pod:       ds.Spec.Template.Spec,
		container: ds.Spec.Template.Spec.Containers[0],
		host:      podman.Host{ConfigMaps: map[string]string{cm.Metadata.Name: configDir}, SeccompDir: filepath.Join(dir, "seccomp"), HostPaths: hostPaths},
	}
}

// bpffsRoot is where the host's BPF file system is mounted.
const bpffsRoot = "/sys/fs/bpf"

// testBPFFSDir is a directory of the test's in the host's BPF file system,
// mounted first where it is not (as systemd does at boot), removed with what is
// pinned in it when the test ends.
func testBPFFSDir(t *testing.T) string {
	t.Helper()
	var fs unix.Statfs_t
	require.NoError(t, unix.Statfs(bpffsRoot, &fs))
	if fs.Type != unix.BPF_FS_MAGIC {
		require.NoError(t, unix.Mount("bpf", bpffsRoot, "bpf", 0, "mode=0700"), "mounting the host's BPF file system")
	}
	dir := filepath.Join(bpffsRoot, containerName(t))
	require.NoError(t, os.MkdirAll(dir, 0o700))
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// setEnv sets the container's variable name to value.
func (p *shippedPod) setEnv(name, value string) {
	p.container.Env = append(p.container.Env, kube.EnvVar{Name: name, Value: value}) // podman: the last -e wins
}

// podmanArgs is `podman run` for p with image. Beyond the manifest it adds only
// what a test on one machine needs: the host's network, to reach the test's
// OTLP sink on loopback, and a second config turning off the collector's own
// metrics listener (:8888), which on the host's network would collide with
// other collectors'.
func podmanArgs(t *testing.T, p shippedPod, name, image string) []string {
	t.Helper()
	flags, err := podman.RunFlags(p.pod, p.container, p.host)
	require.NoError(t, err)
	overlay := t.TempDir()
	require.NoError(t, os.Chmod(overlay, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(overlay, "test.yaml"), []byte("service:\n  telemetry:\n    metrics:\n      level: none\n"), 0o644))
	args := append([]string{"run", "--rm", "--name", name, "--network=host", "-v", overlay + ":/etc/otelcol-etcd-test:ro"}, flags...)
	args = append(args, image)
	return append(append(args, p.container.Args...), "--config=/etc/otelcol-etcd-test/test.yaml")
}

// requirePodman skips (or fails, in CI) without podman, and returns the image
// of the collector built from this checkout, removed when the test ends.
func requirePodman(t *testing.T) string {
	t.Helper()
	bpftest.RequireBPF(t)
	if err := podman.Available(); err != nil {
		bpftest.SkipOrFail(t, err.Error())
	}
	bin := collectorBinary(t)
	root, err := checkout.Root()
	require.NoError(t, err)
	image := fmt.Sprintf("localhost/otelcol-etcd:e2e-%d", os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	require.NoError(t, podman.BuildImage(ctx, root, bin, image))
	t.Cleanup(func() { _, _ = podman.Output(context.Background(), "rmi", "-f", image) })
	return image
}

// notInName is what podman refuses in a container name.
var notInName = regexp.MustCompile(`[^a-z0-9_.-]+`)

// containerName is unique to this test run, so that cleanup removes only ours.
func containerName(t *testing.T) string {
	return fmt.Sprintf("etcdebpf-e2e-%d-%s", os.Getpid(), notInName.ReplaceAllString(strings.ToLower(t.Name()), "-"))
}

// The DaemonSet as shipped, under podman with its own security context (host
// PID namespace, root with CAP_BPF, CAP_PERFMON and CAP_SYSLOG only, the shipped seccomp
// profile, a read-only root, no privilege escalation) and its own collector
// config (histograms and slow calls): it traces a real etcd 3.6 on the host,
// and its WAL fdatasync histogram counts every sync etcd counted.
func TestDaemonSetUnderPodman(t *testing.T) {
	image := requirePodman(t)
	etcdBin := bpftest.RequireEtcd(t)
	sink, err := otlpsink.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(sink.Stop)

	startShippedCollector(t, image, sink)

	// etcd starts after the collector is tracing: every WAL sync of its life is
	// seen, and its counter is the kernel's fdatasyncs on *.wal plus one (the
	// member directory's fsync at the WAL's creation, field notes).
	srv, err := etcdtest.Start(etcdBin, t.TempDir())
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	const puts = 200
	require.NoError(t, srv.PutN("podman", puts, 256))
	etcdSyncs, err := srv.Metric("etcd_disk_wal_fsync_duration_seconds_count")
	require.NoError(t, err)
	require.GreaterOrEqual(t, int(etcdSyncs), puts/2, "each put is a raft entry that etcd syncs")

	want := uint64(etcdSyncs) - 1
	var got uint64
	deadline := time.Now().Add(40 * time.Second) // collection_interval is 10s
	for time.Now().Before(deadline) {
		if got = walSyncCount(sink.Metrics(), srv.PID()); got >= want {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("etcd pid %d: %d WAL fdatasyncs in the receiver's histogram, etcd_disk_wal_fsync_duration_seconds_count %d",
		srv.PID(), got, int(etcdSyncs))
	assert.Equal(t, want, got, "WAL fdatasyncs vs etcd's own counter minus its directory fsync")
}

// startShippedCollector runs the DaemonSet's container as shipped, exporting to
// sink, until the test ends; it must stop cleanly on SIGTERM. With the shipped
// capabilities it runs every part of the receiver: it warns of nothing missing.
func startShippedCollector(t *testing.T, image string, sink *otlpsink.Sink) {
	t.Helper()
	p := readShippedPod(t)
	p.setEnv("OTLP_ENDPOINT", sink.Endpoint())
	name := containerName(t)
	col, err := subprocess.Start(subprocess.Options{
		Name:    "the collector's container",
		Path:    "podman",
		Args:    podman.Args(podmanArgs(t, p, name, image)...),
		LogPath: filepath.Join(t.TempDir(), "container.log"),
		Ready:   "Everything is ready",
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NotContains(t, col.Log(), "runs without part of what it was asked for", "the shipped capabilities suffice (CAP_SYSLOG names the waits)")
		assert.NoError(t, col.Stop(20*time.Second), "the collector stops cleanly on SIGTERM; container log:\n%s", col.Tail())
		_, _ = podman.Output(context.Background(), "rm", "-f", "-t", "0", name)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, col.WaitReady(ctx))
}

// An etcd in a container carries that container's id on its Resource: the id
// podman reports, read from the process's cgroup path by the DaemonSet's
// collector in another container.
func TestContainerIdentityUnderPodman(t *testing.T) {
	image := requirePodman(t)
	etcdBin := bpftest.RequireEtcd(t)
	sink, err := otlpsink.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(sink.Stop)
	startShippedCollector(t, image, sink)

	// etcd 3.6 is a static binary: the collector's FROM scratch image runs it.
	ports, err := subprocess.FreePorts(2)
	require.NoError(t, err)
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	data := t.TempDir()
	name := containerName(t) + "-etcd"
	id, err := podman.Output(context.Background(), "run", "-d", "--name", name, "--network=host",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"-v", filepath.Dir(etcdBin)+":/etcd-bin:ro", "-v", data+":/data", "--entrypoint", "/etcd-bin/etcd", image,
		"--name", "contained", "--data-dir", "/data/etcd",
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "contained="+peer)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = podman.Output(context.Background(), "rm", "-f", "-t", "2", name) })
	pidText, err := podman.Output(context.Background(), "inspect", "--format", "{{.State.Pid}}", name)
	require.NoError(t, err)
	pid, err := strconv.Atoi(pidText)
	require.NoError(t, err)

	srv := &etcdtest.Server{ClientURL: client}
	deadline := time.Now().Add(20 * time.Second)
	for _, err := srv.Put("ready", "1"); err != nil; _, err = srv.Put("ready", "1") {
		require.True(t, time.Now().Before(deadline), "etcd in its container does not serve: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, srv.PutN("contained", 50, 64))

	var res map[string]any
	for deadline := time.Now().Add(40 * time.Second); res == nil && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		res = resourceOf(sink.Metrics(), pid)
	}
	require.NotNil(t, res, "no metrics of etcd's host pid %d", pid)
	t.Logf("etcd in container %s (host pid %d): Resource %v", id[:12], pid, res)
	assert.Equal(t, id, res["container.id"], "the id podman reports")
	assert.NotContains(t, res, "k8s.pod.uid", "podman's cgroup path names no pod")
}

// resourceOf is the Resource attributes of pid's metrics, or nil.
func resourceOf(batches []pmetric.Metrics, pid int) map[string]any {
	for _, md := range batches {
		for _, rm := range md.ResourceMetrics().All() {
			if v, ok := rm.Resource().Attributes().Get("process.pid"); ok && v.Int() == int64(pid) {
				return rm.Resource().Attributes().AsRaw()
			}
		}
	}
	return nil
}

// walSyncCount is the latest cumulative count of etcd.syscall.duration for
// fdatasync on WAL files of process pid.
func walSyncCount(batches []pmetric.Metrics, pid int) uint64 {
	var latest uint64
	for _, md := range batches {
		for i := 0; i < md.ResourceMetrics().Len(); i++ {
			rm := md.ResourceMetrics().At(i)
			if v, ok := rm.Resource().Attributes().Get("process.pid"); !ok || v.Int() != int64(pid) {
				continue
			}
			for j := 0; j < rm.ScopeMetrics().Len(); j++ {
				ms := rm.ScopeMetrics().At(j).Metrics()
				for k := 0; k < ms.Len(); k++ {
					if ms.At(k).Name() != "etcd.syscall.duration" {
						continue
					}
					dps := ms.At(k).ExponentialHistogram().DataPoints()
					for l := 0; l < dps.Len(); l++ {
						attrs := dps.At(l).Attributes()
						name, _ := attrs.Get("etcd.syscall.name")
						kind, _ := attrs.Get("etcd.syscall.fd_kind")
						class, _ := attrs.Get("etcd.syscall.file_class")
						if name.Str() == "fdatasync" && kind.Str() == "file" && class.Str() == "wal" {
							latest = max(latest, dps.At(l).Count())
						}
					}
				}
			}
		}
	}
	return latest
}

// Each way the DaemonSet can be deployed short of what it needs, in the same
// runtime: the collector exits 1 at Start with one line naming the cause and
// the fix.
func TestDaemonSetUnderPodmanRefusals(t *testing.T) {
	image := requirePodman(t)
	shipped := readShippedPod(t)
	type refusal struct {
		name   string
		change func(*shippedPod)
		want   []string
	}
	refusals := []refusal{
		{"without hostPID", func(p *shippedPod) { p.pod.HostPID = false },
			[]string{"not in the host's PID namespace", "hostPID: true"}},
		{"without the tracefs mount", func(p *shippedPod) {
			p.container.VolumeMounts = slices.DeleteFunc(p.container.VolumeMounts, func(m kube.VolumeMount) bool { return m.Name == "tracefs" })
		}, []string{"tracefs is not mounted", "mount it before starting the collector"}},
		{"under the runtime's default seccomp profile", func(p *shippedPod) {
			p.container.SecurityContext.SeccompProfile.Type = "RuntimeDefault"
		}, []string{"seccomp", "Seccomp: 2", "examples/kubernetes/seccomp/etcdebpf.json"}},
	}
	// Every capability the manifest adds is needed: without any one, Start names it.
	// But SYSLOG: without it the receiver runs and warns that it cannot name the
	// waits of slow calls (tracer's TestWaitsWithoutKernelAddresses).
	for i, capability := range shipped.container.SecurityContext.Capabilities.Add {
		if capability == "SYSLOG" {
			continue
		}
		refusals = append(refusals, refusal{"without " + capability, func(p *shippedPod) {
			add := p.container.SecurityContext.Capabilities.Add
			p.container.SecurityContext.Capabilities.Add = append(append([]string{}, add[:i]...), add[i+1:]...)
		}, []string{"lacks CAP_" + capability, "grant it CAP_" + capability}})
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			p := readShippedPod(t)
			p.setEnv("OTLP_ENDPOINT", "127.0.0.1:1") // never reached: Start fails first
			r.change(&p)
			name := containerName(t)
			t.Cleanup(func() { _, _ = podman.Output(context.Background(), "rm", "-f", "-t", "0", name) })
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			out, err := podman.Command(ctx, podmanArgs(t, p, name, image)...).CombinedOutput()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "the collector must fail: %s", out)
			assert.Equal(t, 1, exit.ExitCode(), "%s", out)
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			t.Logf("last line: %s", last)
			assert.True(t, strings.HasPrefix(last, "Error: "), "the collector's last line is its error: %s", out)
			for _, w := range r.want {
				assert.Contains(t, last, w)
			}
			assert.NotContains(t, last, "MEMLOCK", "the cause, not cilium/ebpf's fallback")
		})
	}
}
