//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
	"github.com/etcdebpf/etcdebpfreceiver/tooling/internal/collector"
)

// deploymentLimits are the gateway container's limits.memory and GOMEMLIMIT
// in examples/kubernetes/gateway-deployment.yaml: the gateway's
// memory_limiter takes its limits from the cgroup's, so a gateway run without
// them would let its queues grow to 80% of this machine's memory.
type deploymentLimits struct {
	memory     string // "512Mi"
	bytes      int64
	goMemLimit string
}

func gatewayLimits(root string) (deploymentLimits, error) {
	path := filepath.Join(root, "examples", "kubernetes", "gateway-deployment.yaml")
	f, err := os.Open(path)
	if err != nil {
		return deploymentLimits{}, err
	}
	defer f.Close()
	type container struct {
		Env []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		Resources struct {
			Limits struct {
				Memory string `yaml:"memory"`
			} `yaml:"limits"`
		} `yaml:"resources"`
	}
	dec := yaml.NewDecoder(f)
	for {
		var doc struct {
			Kind string `yaml:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []container `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); err != nil {
			return deploymentLimits{}, fmt.Errorf("%s: no Deployment with a container's limits.memory: %w", path, err)
		}
		if doc.Kind != "Deployment" || len(doc.Spec.Template.Spec.Containers) == 0 {
			continue
		}
		c := doc.Spec.Template.Spec.Containers[0]
		var goMemLimit string
		for _, e := range c.Env {
			if e.Name == "GOMEMLIMIT" {
				goMemLimit = e.Value
			}
		}
		l, err := parseLimits(c.Resources.Limits.Memory, goMemLimit)
		if err != nil {
			return deploymentLimits{}, fmt.Errorf("%s: %w", path, err)
		}
		return l, nil
	}
}

func parseLimits(memory, goMemLimit string) (deploymentLimits, error) {
	mi, ok := strings.CutSuffix(memory, "Mi")
	n, err := strconv.ParseInt(mi, 10, 64)
	if !ok || err != nil || n <= 0 {
		return deploymentLimits{}, fmt.Errorf("limits.memory %q: the bench reads a whole number of Mi, such as 512Mi", memory)
	}
	return deploymentLimits{memory: memory, bytes: n << 20, goMemLimit: goMemLimit}, nil
}

// gatewayProcess is the running gateway and the address its OTLP/gRPC receiver listens on.
type gatewayProcess struct {
	*collector.Collector
	addr string
}

// startGateway runs gateway.yaml as shipped (plus its own metrics on a
// loopback port, a second --config merged over it) inside a memory cgroup of
// the Deployment's limit, with its GOMEMLIMIT.
func startGateway(ctx context.Context, env gatewayEnv, backendURL string) (*gatewayProcess, string, *memCgroup, error) {
	ports, err := subprocess.FreePorts(3)
	if err != nil {
		return nil, "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	telemetry := fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1])
	overlay := filepath.Join(env.dir, "telemetry.yaml")
	if err := os.WriteFile(overlay, fmt.Appendf(nil, `service:
  telemetry:
    metrics:
      level: normal
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %d
`, ports[1]), 0o600); err != nil {
		return nil, "", nil, err
	}
	args := []string{"--config", overlay}
	if env.overlay != "" {
		args = append(args, "--config", env.overlay)
	}
	cg, err := newMemCgroup(fmt.Sprintf("etcdbench-gateway-%d", os.Getpid()), env.limits.bytes)
	if err != nil {
		return nil, "", nil, err
	}
	// The wrapper joins the cgroup before it execs the collector, whose
	// memory_limiter reads the cgroup's limit once, at start.
	wrapper := filepath.Join(env.dir, "gateway.sh")
	if err := os.WriteFile(wrapper, fmt.Appendf(nil, "#!/bin/sh\necho $$ > %s/cgroup.procs || exit 1\nexec %s \"$@\"\n", cg.path, env.bin), 0o755); err != nil {
		cg.remove()
		return nil, "", nil, err
	}
	gw, err := collector.Start(collector.Options{
		Binary:     wrapper,
		ConfigPath: filepath.Join(env.root, "examples", "kubernetes", "gateway.yaml"),
		LogPath:    filepath.Join(env.dir, "gateway.log"),
		Env: []string{"GATEWAY_GRPC_ENDPOINT=" + addr, "GOMEMLIMIT=" + env.limits.goMemLimit,
			// The other signal's backend: nothing is sent there, and nothing listens.
			fmt.Sprintf("VICTORIALOGS_URL=http://127.0.0.1:%d", ports[2]),
			fmt.Sprintf("VICTORIAMETRICS_URL=http://127.0.0.1:%d", ports[2]),
			env.signal.backendEnv + "=" + backendURL},
		Args: args,
	})
	if err != nil {
		cg.remove()
		return nil, "", nil, err
	}
	// Stopped at exit before its cgroup is removed (the undos run last
	// first): a group with a process in it cannot be.
	onCleanup(func() { _ = gw.Stop(10 * time.Second) })
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = gw.WaitReady(readyCtx)
	cancel()
	if err != nil {
		_ = gw.Stop(10 * time.Second)
		cg.remove()
		return nil, "", nil, fmt.Errorf("gateway: %w\n%s", err, gw.Tail())
	}
	return &gatewayProcess{Collector: gw, addr: addr}, telemetry, cg, nil
}

// memCgroup is a cgroup v1 memory group (this machine's memory controller is
// on v1; the collector's memory_limiter reads v1 and v2 limits alike).
type memCgroup struct{ path string }

func newMemCgroup(name string, limit int64) (*memCgroup, error) {
	cg := &memCgroup{path: filepath.Join("/sys/fs/cgroup/memory", name)}
	if err := os.Mkdir(cg.path, 0o755); err != nil {
		return nil, fmt.Errorf("the gateway's memory cgroup: %w", err)
	}
	onCleanup(cg.remove)
	if err := os.WriteFile(filepath.Join(cg.path, "memory.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		cg.remove()
		return nil, fmt.Errorf("the gateway's memory limit: %w", err)
	}
	return cg, nil
}

// oomReport is the group's oom_kill count and peak usage.
func (cg *memCgroup) oomReport() string {
	b, _ := os.ReadFile(filepath.Join(cg.path, "memory.oom_control"))
	peak, _ := os.ReadFile(filepath.Join(cg.path, "memory.max_usage_in_bytes"))
	return strings.Join(strings.Fields(string(b)), " ") + ", max_usage_in_bytes " + strings.TrimSpace(string(peak))
}

// remove deletes the group once its processes are gone (idempotent).
func (cg *memCgroup) remove() {
	for range 50 {
		err := os.Remove(cg.path)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
