package examples

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/otelcol/otelcoltest"
	"go.opentelemetry.io/collector/pipeline"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/processor/memorylimiterprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"

	"github.com/etcdebpf/etcdebpfreceiver"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/kube"
)

// TestMain runs the tests from the top-level examples folder, where users find
// the configurations this module's tests hold to.
func TestMain(m *testing.M) {
	if err := os.Chdir(filepath.Join("..", "..", "examples")); err != nil {
		fmt.Fprintln(os.Stderr, "examples: the examples folder is not at ../../examples:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// factories are the components of builder-config.yaml, the otelcol-etcd distribution.
func factories(t *testing.T) otelcol.Factories {
	t.Helper()
	var f otelcol.Factories
	var err1, err2, err3, err4 error
	f.Receivers, err1 = otelcol.MakeFactoryMap[receiver.Factory](etcdebpfreceiver.NewFactory(), otlpreceiver.NewFactory())
	f.Processors, err2 = otelcol.MakeFactoryMap[processor.Factory](batchprocessor.NewFactory(), memorylimiterprocessor.NewFactory(), resourceDetectionFactory)
	f.Exporters, err3 = otelcol.MakeFactoryMap[exporter.Factory](debugexporter.NewFactory(), otlpexporter.NewFactory(), otlphttpexporter.NewFactory())
	f.Extensions, err4 = otelcol.MakeFactoryMap[extension.Factory](fileStorageFactory)
	require.NoError(t, errors.Join(err1, err2, err3, err4))
	f.Telemetry = otelconftelemetry.NewFactory()
	return f
}

var receiverID = component.MustNewID("etcdebpf")

// resourceDetectionFactory loads contrib's resource_detection processor config
// for these tests: the fields they check, the rest kept as it is. This module
// cannot require the processor itself (contrib v0.165.1 declares go 1.26.9, and
// the repository's modules build with the installed Go; `make collector` fetches
// that toolchain for the distribution only). TestDistributionValidatesExamples
// has the built collector, which holds the real processor, validate every file.
var resourceDetectionFactory = processor.NewFactory(resourceDetectionType,
	func() component.Config { return &resourceDetectionConfig{} })

var resourceDetectionType = component.MustNewType("resource_detection")

// fileStorageFactory loads contrib's file_storage extension config, as
// resourceDetectionFactory does the processor's, and for the same reason.
var fileStorageFactory = extension.NewFactory(fileStorageType,
	func() component.Config { return &fileStorageConfig{} },
	func(context.Context, extension.Settings, component.Config) (extension.Extension, error) {
		return nil, errors.New("the file_storage stand-in only loads configs")
	}, component.StabilityLevelBeta)

var fileStorageType = component.MustNewType("file_storage")

type fileStorageConfig struct {
	Directory       string `mapstructure:"directory"`
	CreateDirectory bool   `mapstructure:"create_directory"`
	MaxSize         int64  `mapstructure:"max_size"`
	Compaction      struct {
		Directory string         `mapstructure:"directory"`
		Other     map[string]any `mapstructure:",remain"`
	} `mapstructure:"compaction"`
	Other map[string]any `mapstructure:",remain"`
}

type resourceDetectionConfig struct {
	Detectors []string `mapstructure:"detectors"`
	System    struct {
		HostnameSources []string       `mapstructure:"hostname_sources"`
		Other           map[string]any `mapstructure:",remain"`
	} `mapstructure:"system"`
	Other map[string]any `mapstructure:",remain"`
}

// load loads and validates a collector config and returns it with its etcdebpf receiver config.
func load(t *testing.T, path string) (*otelcol.Config, *etcdebpfreceiver.Config) {
	t.Helper()
	cfg, err := otelcoltest.LoadConfigAndValidate(path, factories(t))
	require.NoError(t, err, path)
	logs, ok := cfg.Service.Pipelines[pipeline.NewID(pipeline.SignalLogs)]
	require.True(t, ok, "%s has a logs pipeline", path)
	assert.Contains(t, logs.Receivers, receiverID, "%s: the logs pipeline starts at the etcdebpf receiver", path)
	rc, ok := cfg.Receivers[receiverID].(*etcdebpfreceiver.Config)
	require.True(t, ok, "%s configures the etcdebpf receiver", path)
	return cfg, rc
}

func TestDebugExample(t *testing.T) {
	cfg, rc := load(t, "debug.yaml")
	assert.Equal(t, "etcd", rc.Comm)
	assert.Contains(t, cfg.Exporters, component.MustNewID("debug"))
}

func TestOTLPExample(t *testing.T) {
	t.Setenv("OTLP_ENDPOINT", "otel-gateway.example:4317")
	cfg, rc := load(t, "otlp.yaml")
	assert.Equal(t, "etcd", rc.Comm)
	exp, ok := cfg.Exporters[component.MustNewID("otlp_grpc")].(*otlpexporter.Config)
	require.True(t, ok, "exports with the OTLP/gRPC exporter")
	assert.Equal(t, "otel-gateway.example:4317", exp.ClientConfig.Endpoint, "the endpoint comes from OTLP_ENDPOINT")
	assert.True(t, exp.ClientConfig.TLS.Insecure, "OTLP_INSECURE defaults to true")

	t.Setenv("OTLP_INSECURE", "false")
	cfg, _ = load(t, "otlp.yaml")
	assert.False(t, cfg.Exporters[component.MustNewID("otlp_grpc")].(*otlpexporter.Config).ClientConfig.TLS.Insecure)
}

// Every collector config here loads and validates, and starts at the etcdebpf receiver.
func TestEveryExampleLoads(t *testing.T) {
	t.Setenv("OTLP_ENDPOINT", "otel-gateway.example:4317")
	configs, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	configs = append(configs, "kubernetes/collector.yaml")
	require.GreaterOrEqual(t, len(configs), 5)
	for _, path := range configs {
		load(t, path)
	}
}

// The three choices of what to collect (README and docs/configuration.md: Choosing what to collect).
func TestChoiceExamples(t *testing.T) {
	t.Setenv("OTLP_ENDPOINT", "otel-gateway.example:4317")

	_, rc := load(t, "otlp.yaml")
	assert.Empty(t, rc.FDKinds, "every call: every fd kind")
	assert.Zero(t, rc.MinDuration, "every call: however fast")

	_, rc = load(t, "files-only.yaml")
	assert.Equal(t, []string{"file", "directory"}, rc.FDKinds)
	assert.Zero(t, rc.MinDuration)

	cfg, rc := load(t, "slow-calls-and-histograms.yaml")
	assert.Equal(t, 10*time.Millisecond, rc.MinDuration)
	assert.Equal(t, 10*time.Second, rc.CollectionInterval)
	metrics, ok := cfg.Service.Pipelines[pipeline.NewID(pipeline.SignalMetrics)]
	require.True(t, ok, "a metrics pipeline")
	assert.Contains(t, metrics.Receivers, receiverID, "the same etcdebpf receiver feeds the metrics pipeline")
}

func TestOTLPExampleNeedsEndpoint(t *testing.T) {
	t.Setenv("OTLP_ENDPOINT", "")
	_, err := otelcoltest.LoadConfigAndValidate("otlp.yaml", factories(t))
	require.Error(t, err, "without OTLP_ENDPOINT the collector must refuse to start")
}

func TestKubernetesCollectorConfig(t *testing.T) {
	t.Setenv("OTLP_ENDPOINT", "otel-gateway.observability.svc:4317")
	t.Setenv("ETCD_CGROUP_PATH", "")
	_, rc := load(t, "kubernetes/collector.yaml")
	assert.Equal(t, "etcd", rc.Comm)
	assert.Empty(t, rc.CgroupPath, "an empty ETCD_CGROUP_PATH means any cgroup")

	const scope = "/host/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podabc.slice/cri-containerd-0123.scope"
	t.Setenv("ETCD_CGROUP_PATH", scope)
	_, rc = load(t, "kubernetes/collector.yaml")
	assert.Equal(t, scope, rc.CgroupPath)
}

func TestKubernetesDaemonSet(t *testing.T) {
	objs := kubernetesObjects(t, "kubernetes/daemonset.yaml")
	cm, ok := objs["ConfigMap"]
	require.True(t, ok, "a ConfigMap holds the collector config")
	ds, ok := objs["DaemonSet"]
	require.True(t, ok, "a DaemonSet runs the collector")
	assert.Equal(t, cm.Metadata.Namespace, ds.Metadata.Namespace)

	want, err := os.ReadFile("kubernetes/collector.yaml")
	require.NoError(t, err)
	assert.Equal(t, string(want), cm.Data["collector.yaml"], "the ConfigMap is kubernetes/collector.yaml verbatim")

	pod := ds.Spec.Template.Spec
	assert.True(t, pod.HostPID, "hostPID: the kernel reports host pids")
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]

	// Unprivileged: what tooling/e2e's TestDaemonSetUnderPodman runs, and no more.
	sc := c.SecurityContext
	require.NotNil(t, sc.Privileged)
	assert.False(t, *sc.Privileged)
	require.NotNil(t, sc.AllowPrivilegeEscalation)
	assert.False(t, *sc.AllowPrivilegeEscalation)
	assert.True(t, sc.ReadOnlyRootFilesystem)
	assert.Equal(t, []string{"ALL"}, sc.Capabilities.Drop)
	assert.ElementsMatch(t, []string{"BPF", "PERFMON", "SYSLOG"}, sc.Capabilities.Add)
	require.NotNil(t, sc.SeccompProfile)
	assert.Equal(t, "Localhost", sc.SeccompProfile.Type)
	assert.FileExists(t, filepath.Join("kubernetes", "seccomp", sc.SeccompProfile.LocalhostProfile), "the profile ships beside the manifest")

	mounts := map[string]string{} // host path (or config) -> mount path
	for _, m := range c.VolumeMounts {
		v := pod.Volume(m.Name)
		require.NotNil(t, v, "volume %s", m.Name)
		switch m.MountPath {
		case queueDir:
			require.NotNil(t, v.HostPath, "the queue is on the node's disk")
			assert.Equal(t, "DirectoryOrCreate", v.HostPath.Type, "the kubelet creates the queue's directory")
		case bpffs:
			require.NotNil(t, v.HostPath, "the pins are in the node's BPF file system, outliving the pod")
			assert.Equal(t, "Directory", v.HostPath.Type, "the node's mount point, not one the kubelet creates")
		default:
			assert.True(t, m.ReadOnly, "%s is mounted read-only: only the queue's directory and the pins' are writable", m.Name)
		}
		switch {
		case v.ConfigMap != nil:
			assert.Equal(t, cm.Metadata.Name, v.ConfigMap.Name, "the config volume references the ConfigMap")
			mounts["config"] = m.MountPath
		case v.HostPath != nil:
			mounts[v.HostPath.Path] = m.MountPath
		}
	}
	assert.Equal(t, map[string]string{
		"config":              "/etc/otelcol-etcd",
		"/sys/kernel/tracing": "/sys/kernel/tracing", // the receiver looks there
		"/sys/fs/cgroup":      "/host/sys/fs/cgroup", // for ETCD_CGROUP_PATH
		queueDir:              queueDir,              // the exporters' queue, outliving the pod
		bpffs:                 bpffs,                 // pin_path's file system: the kernel side outliving the pod
	}, mounts, "the mounts it needs and no others (BTF is in the container's own sysfs)")
	assert.Contains(t, c.Args, "--config="+filepath.Join(mounts["config"], "collector.yaml"), "the collector reads the mounted ConfigMap")

	env := c.EnvMap()
	assert.NotEmpty(t, env["OTLP_ENDPOINT"], "the collector config needs OTLP_ENDPOINT")
	assert.Contains(t, env, "ETCD_CGROUP_PATH")
	if p := env["ETCD_CGROUP_PATH"]; p != "" {
		assert.True(t, strings.HasPrefix(p, mounts["/sys/fs/cgroup"]), "cgroup_path lies under the mounted cgroup root")
	}

	// The default pipeline is histograms and slow calls; every call is an opt-in.
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, rc := load(t, "kubernetes/collector.yaml")
	assert.Equal(t, 10*time.Millisecond, rc.MinDuration, "log records for slow calls only")
	assert.Contains(t, cfg.Service.Pipelines[pipeline.NewID(pipeline.SignalMetrics)].Receivers, receiverID, "histograms of every call")
	t.Setenv("ETCDEBPF_MIN_DURATION", "0s")
	_, rc = load(t, "kubernetes/collector.yaml")
	assert.Zero(t, rc.MinDuration, "ETCDEBPF_MIN_DURATION=0s: a record of every call")
	assert.True(t, strings.HasPrefix(rc.PinPath, bpffs+"/"), "pin_path %q lies in the mounted BPF file system", rc.PinPath)
	assert.False(t, rc.UnpinOnShutdown, "a rolling update leaves the kernel side to the next agent")
}

// queueDir is where the DaemonSet's agent keeps its exporters' queue, on the
// node and in the pod alike.
const queueDir = "/var/lib/otelcol-etcd/queue"

// bpffs is the BPF file system the DaemonSet's pin_path lies in, on the node and
// in the pod alike.
const bpffs = "/sys/fs/bpf"

// The DaemonSet's agent queues what it cannot send on the node's disk, bounded
// in bytes, and holds nothing it has accepted in memory only: the receiver's
// records and points go from memory_limiter and resource_detection straight to
// the exporter, which writes them to file_storage before it batches them.
func TestKubernetesCollectorQueue(t *testing.T) {
	t.Setenv("OTLP_ENDPOINT", "otel-gateway.observability.svc:4317")
	cfg, _ := load(t, "kubernetes/collector.yaml")
	storageID := component.NewID(fileStorageType)
	fs, ok := cfg.Extensions[storageID].(*fileStorageConfig)
	require.True(t, ok, "a file_storage extension")
	assert.Contains(t, cfg.Service.Extensions, storageID, "file_storage is started")
	assert.Equal(t, queueDir, fs.Directory, "the queue is in the DaemonSet's hostPath")
	assert.Equal(t, queueDir, fs.Compaction.Directory, "compaction's temporary file too: the root is read-only")
	assert.True(t, fs.CreateDirectory, "a node without the directory (outside Kubernetes) gets it")
	assert.Positive(t, fs.MaxSize, "each file is capped")

	exp, ok := cfg.Exporters[component.MustNewID("otlp_grpc")].(*otlpexporter.Config)
	require.True(t, ok)
	require.True(t, exp.QueueConfig.HasValue(), "a sending queue")
	q := exp.QueueConfig.Get()
	require.NotNil(t, q.StorageID, "the sending queue is persistent")
	assert.Equal(t, storageID, *q.StorageID)
	assert.Equal(t, "bytes", q.Sizer.String(), "bounded in bytes, whatever the records' sizes")
	assert.LessOrEqual(t, q.QueueSize, fs.MaxSize, "the queue fills before its file is capped: a full queue says so in enqueue_failed")
	require.True(t, q.Batch.HasValue(), "batches are made after the queue")
	assert.Equal(t, "items", q.Batch.Get().Sizer.String())
	assert.Positive(t, q.Batch.Get().MaxSize, "a batch in flight is bounded in memory")
	assert.LessOrEqual(t, q.NumConsumers, 4, "few batches in flight: each is held in memory while it is retried")
	assert.Zero(t, exp.RetryConfig.MaxElapsedTime, "a batch waits in the queue for the gateway, however long, instead of being dropped after 5 minutes")

	for id, p := range cfg.Service.Pipelines {
		assert.Equal(t, component.MustNewID("memory_limiter"), p.Processors[0], "%s: memory_limiter first", id)
		assert.NotContains(t, p.Processors, component.MustNewID("batch"), "%s: a batch processor would hold accepted records in memory, lost if the agent is killed", id)
		assert.Equal(t, []component.ID{component.MustNewID("otlp_grpc")}, p.Exporters, "%s", id)
	}
}

// The gateway relays the agents' OTLP to VictoriaLogs and VictoriaMetrics: each
// signal to its backend's OTLP/HTTP path, the addresses from the environment.
func TestKubernetesGatewayConfig(t *testing.T) {
	for _, tt := range []struct {
		env                 map[string]string
		grpc, logs, metrics string
	}{
		{
			grpc:    "0.0.0.0:4317",
			logs:    "http://victoria-logs.observability.svc:9428/insert/opentelemetry/v1/logs",
			metrics: "http://victoria-metrics.observability.svc:8428/opentelemetry/v1/metrics",
		},
		{
			env:     map[string]string{"GATEWAY_GRPC_ENDPOINT": "127.0.0.1:14317", "VICTORIALOGS_URL": "http://127.0.0.1:9428", "VICTORIAMETRICS_URL": "http://127.0.0.1:8428"},
			grpc:    "127.0.0.1:14317",
			logs:    "http://127.0.0.1:9428/insert/opentelemetry/v1/logs",
			metrics: "http://127.0.0.1:8428/opentelemetry/v1/metrics",
		},
	} {
		for k, v := range tt.env {
			t.Setenv(k, v)
		}
		cfg, err := otelcoltest.LoadConfigAndValidate(filepath.Join("kubernetes", "gateway.yaml"), factories(t))
		require.NoError(t, err)
		otlp, ok := cfg.Receivers[component.MustNewID("otlp")].(*otlpreceiver.Config)
		require.True(t, ok, "receives OTLP")
		assert.Equal(t, tt.grpc, otlp.Protocols.GRPC.Get().NetAddr.Endpoint)
		logs, ok := cfg.Exporters[component.MustNewIDWithName("otlp_http", "victorialogs")].(*otlphttpexporter.Config)
		require.True(t, ok)
		assert.Equal(t, tt.logs, logs.LogsEndpoint)
		metrics, ok := cfg.Exporters[component.MustNewIDWithName("otlp_http", "victoriametrics")].(*otlphttpexporter.Config)
		require.True(t, ok)
		assert.Equal(t, tt.metrics, metrics.MetricsEndpoint)
		for signal, exporter := range map[pipeline.Signal]string{pipeline.SignalLogs: "otlp_http/victorialogs", pipeline.SignalMetrics: "otlp_http/victoriametrics"} {
			p, ok := cfg.Service.Pipelines[pipeline.NewID(signal)]
			require.True(t, ok, "a %s pipeline", signal)
			assert.Equal(t, []component.ID{component.MustNewID("otlp")}, p.Receivers)
			assert.Equal(t, []component.ID{mustParseID(t, exporter)}, p.Exporters)
		}
	}
}

func mustParseID(t *testing.T, s string) component.ID {
	t.Helper()
	var id component.ID
	require.NoError(t, id.UnmarshalText([]byte(s)))
	return id
}

// kubernetesObjects decodes the manifests in path, by kind.
func kubernetesObjects(t *testing.T, path string) map[string]kube.Object {
	t.Helper()
	objs, err := kube.Decode(path)
	require.NoError(t, err)
	return objs
}

// The gateway's manifests: its config verbatim, unprivileged, and a Service where
// the DaemonSet's agents send (their OTLP_ENDPOINT).
func TestKubernetesGatewayDeployment(t *testing.T) {
	objs := kubernetesObjects(t, "kubernetes/gateway-deployment.yaml")
	cm, dep, svc := objs["ConfigMap"], objs["Deployment"], objs["Service"]
	want, err := os.ReadFile("kubernetes/gateway.yaml")
	require.NoError(t, err)
	assert.Equal(t, string(want), cm.Data["gateway.yaml"], "the ConfigMap is kubernetes/gateway.yaml verbatim")

	pod := dep.Spec.Template.Spec
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	assert.False(t, c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged, "a gateway only relays OTLP")
	assert.False(t, pod.HostPID)
	require.Len(t, pod.Volumes, 1)
	require.NotNil(t, pod.Volumes[0].ConfigMap)
	assert.Equal(t, cm.Metadata.Name, pod.Volumes[0].ConfigMap.Name)
	require.Len(t, c.VolumeMounts, 1)
	assert.Contains(t, c.Args, "--config="+filepath.Join(c.VolumeMounts[0].MountPath, "gateway.yaml"))

	var agentEndpoint string
	for _, e := range kubernetesObjects(t, "kubernetes/daemonset.yaml")["DaemonSet"].Spec.Template.Spec.Containers[0].Env {
		if e.Name == "OTLP_ENDPOINT" {
			agentEndpoint = e.Value
		}
	}
	require.Len(t, svc.Spec.Ports, 1)
	assert.Equal(t, fmt.Sprintf("%s.%s.svc:%d", svc.Metadata.Name, svc.Metadata.Namespace, svc.Spec.Ports[0].Port), agentEndpoint,
		"the agents send to this Service")
	for _, o := range []kube.Object{cm, dep, svc} {
		assert.Equal(t, svc.Metadata.Namespace, o.Metadata.Namespace)
	}
}

// agentExamples are the configs of collectors that trace etcd on a node.
var agentExamples = []string{
	"debug.yaml", "otlp.yaml", "files-only.yaml", "slow-calls-and-histograms.yaml", "kubernetes/collector.yaml",
}

// Every record and point an agent sends says which node it came from: each of
// its pipelines runs resource_detection with the env detector first (the
// DaemonSet's downward-API node name, or a name an operator sets, wins) and the
// system detector after it, reading the kernel's hostname rather than asking DNS.
func TestAgentExamplesNameTheirNode(t *testing.T) {
	t.Setenv("OTLP_ENDPOINT", "otel-gateway.example:4317")
	configs, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	assert.ElementsMatch(t, configs, agentExamples[:len(agentExamples)-1], "a new example is an agent: list it in agentExamples")
	id := component.NewID(resourceDetectionType)
	for _, path := range agentExamples {
		cfg, _ := load(t, path)
		rd, ok := cfg.Processors[id].(*resourceDetectionConfig)
		require.True(t, ok, "%s configures %s", path, id)
		assert.Equal(t, []string{"env", "system"}, rd.Detectors, "%s: env first, so OTEL_RESOURCE_ATTRIBUTES wins", path)
		assert.Equal(t, []string{"os"}, rd.System.HostnameSources, "%s: the kernel's hostname, no DNS lookup", path)
		for pid, p := range cfg.Service.Pipelines {
			assert.Contains(t, p.Processors, id, "%s: the %s pipeline names the node", path, pid)
			if i := slices.Index(p.Processors, component.MustNewID("batch")); i >= 0 {
				assert.Less(t, slices.Index(p.Processors, id), i, "%s: %s before batch, which would merge nodes' data otherwise", path, pid)
			}
		}
	}
}

// The DaemonSet gives the agent its node's name from the downward API, as
// host.name and k8s.node.name through the env detector.
func TestKubernetesDaemonSetNamesTheNode(t *testing.T) {
	containers := kubernetesObjects(t, "kubernetes/daemonset.yaml")["DaemonSet"].Spec.Template.Spec.Containers
	require.Len(t, containers, 1)
	env := containers[0].Env
	node := slices.IndexFunc(env, func(e kube.EnvVar) bool { return e.Name == "NODE_NAME" })
	require.GreaterOrEqual(t, node, 0, "NODE_NAME in the DaemonSet's env")
	require.NotNil(t, env[node].ValueFrom)
	assert.Equal(t, "spec.nodeName", env[node].ValueFrom.FieldRef.FieldPath, "NODE_NAME from the downward API")
	attrs := slices.IndexFunc(env, func(e kube.EnvVar) bool { return e.Name == "OTEL_RESOURCE_ATTRIBUTES" })
	require.GreaterOrEqual(t, attrs, 0, "OTEL_RESOURCE_ATTRIBUTES in the DaemonSet's env")
	assert.Less(t, node, attrs, "Kubernetes expands $(NODE_NAME) only from a variable defined before it")
	pairs := map[string]string{}
	for kv := range strings.SplitSeq(env[attrs].Value, ",") {
		k, v, _ := strings.Cut(kv, "=")
		pairs[k] = v
	}
	assert.Equal(t, map[string]string{"host.name": "$(NODE_NAME)", "k8s.node.name": "$(NODE_NAME)"}, pairs)
}
