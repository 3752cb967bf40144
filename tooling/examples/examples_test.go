package examples

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/otelcol/otelcoltest"
	"go.opentelemetry.io/collector/pipeline"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/processor/memorylimiterprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
	"go.yaml.in/yaml/v3"

	"github.com/etcdebpf/etcdebpfreceiver"
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
	var err1, err2, err3 error
	f.Receivers, err1 = otelcol.MakeFactoryMap[receiver.Factory](etcdebpfreceiver.NewFactory(), otlpreceiver.NewFactory())
	f.Processors, err2 = otelcol.MakeFactoryMap[processor.Factory](batchprocessor.NewFactory(), memorylimiterprocessor.NewFactory())
	f.Exporters, err3 = otelcol.MakeFactoryMap[exporter.Factory](debugexporter.NewFactory(), otlpexporter.NewFactory(), otlphttpexporter.NewFactory())
	require.NoError(t, errors.Join(err1, err2, err3))
	f.Telemetry = otelconftelemetry.NewFactory()
	return f
}

var receiverID = component.MustNewID("etcdebpf")

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

// Just the parts of the Kubernetes objects the test checks.
type (
	object struct {
		Kind     string            `yaml:"kind"`
		Metadata metadata          `yaml:"metadata"`
		Data     map[string]string `yaml:"data"`
		Spec     struct {
			Template struct {
				Spec podSpec `yaml:"spec"`
			} `yaml:"template"`
			Ports []struct {
				Port int `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	metadata struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	}
	podSpec struct {
		HostPID    bool        `yaml:"hostPID"`
		Containers []container `yaml:"containers"`
		Volumes    []struct {
			Name      string `yaml:"name"`
			ConfigMap *struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
			HostPath *struct {
				Path string `yaml:"path"`
			} `yaml:"hostPath"`
		} `yaml:"volumes"`
	}
	container struct {
		Args []string `yaml:"args"`
		Env  []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		SecurityContext struct {
			Privileged   bool `yaml:"privileged"`
			Capabilities struct {
				Add []string `yaml:"add"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
	}
)

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
	assert.True(t, pod.HostPID, "hostPID: the receiver filters on host PIDs and needs etcd's process visible")
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	sc := c.SecurityContext
	assert.True(t, sc.Privileged || (slices.Contains(sc.Capabilities.Add, "BPF") && slices.Contains(sc.Capabilities.Add, "PERFMON")),
		"loading BPF needs privileged, or CAP_BPF and CAP_PERFMON")

	hostPaths := map[string]string{} // volume name -> host path
	configVolume := ""
	for _, v := range pod.Volumes {
		switch {
		case v.HostPath != nil:
			hostPaths[v.Name] = v.HostPath.Path
		case v.ConfigMap != nil:
			assert.Equal(t, cm.Metadata.Name, v.ConfigMap.Name, "the config volume references the ConfigMap")
			configVolume = v.Name
		}
	}
	require.NotEmpty(t, configVolume, "a volume mounts the ConfigMap")
	mounts := map[string]string{} // host path (or config) -> mount path
	for _, m := range c.VolumeMounts {
		if m.Name == configVolume {
			mounts["config"] = m.MountPath
		} else if hp, ok := hostPaths[m.Name]; ok {
			mounts[hp] = m.MountPath
		}
	}
	assert.Equal(t, "/sys/kernel/tracing", mounts["/sys/kernel/tracing"], "tracefs at its usual place: the receiver looks there")
	assert.Equal(t, "/sys/kernel/btf", mounts["/sys/kernel/btf"], "kernel BTF for CO-RE")
	assert.NotEmpty(t, mounts["/sys/fs/cgroup"], "the host's cgroup v2 root, for cgroup_path")
	require.NotEmpty(t, mounts["config"])
	assert.Contains(t, c.Args, "--config="+filepath.Join(mounts["config"], "collector.yaml"), "the collector reads the mounted ConfigMap")

	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	assert.NotEmpty(t, env["OTLP_ENDPOINT"], "the collector config needs OTLP_ENDPOINT")
	assert.Contains(t, env, "ETCD_CGROUP_PATH")
	if p := env["ETCD_CGROUP_PATH"]; p != "" {
		assert.True(t, strings.HasPrefix(p, mounts["/sys/fs/cgroup"]), "cgroup_path lies under the mounted cgroup root")
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
func kubernetesObjects(t *testing.T, path string) map[string]object {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	objs := map[string]object{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var o object
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err, path)
		}
		objs[o.Kind] = o
	}
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
	assert.False(t, c.SecurityContext.Privileged, "a gateway only relays OTLP")
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
	for _, o := range []object{cm, dep, svc} {
		assert.Equal(t, svc.Metadata.Namespace, o.Metadata.Namespace)
	}
}
