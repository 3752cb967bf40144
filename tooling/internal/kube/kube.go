// Package kube decodes the parts of the examples' Kubernetes manifests that the
// tests check and run: the pod spec, its container's security context, volumes
// and environment. One decoding for the examples' test and the podman test, so
// what one checks is what the other runs.
package kube

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// Object is one manifest document.
type Object struct {
	Kind     string            `yaml:"kind"`
	Metadata Metadata          `yaml:"metadata"`
	Data     map[string]string `yaml:"data"` // ConfigMap
	Spec     struct {
		Template struct {
			Spec PodSpec `yaml:"spec"`
		} `yaml:"template"`
		Ports []struct {
			Port int `yaml:"port"`
		} `yaml:"ports"` // Service
	} `yaml:"spec"`
}

type Metadata struct {
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace"`
}

type PodSpec struct {
	HostPID    bool        `yaml:"hostPID"`
	Containers []Container `yaml:"containers"`
	Volumes    []Volume    `yaml:"volumes"`
}

type Volume struct {
	Name      string           `yaml:"name"`
	ConfigMap *ConfigMapSource `yaml:"configMap"`
	HostPath  *HostPathSource  `yaml:"hostPath"`
}

type ConfigMapSource struct {
	Name string `yaml:"name"`
}

type HostPathSource struct {
	Path string `yaml:"path"`
	Type string `yaml:"type"` // "" (no check) or DirectoryOrCreate, ...
}

type Container struct {
	Name            string          `yaml:"name"`
	Image           string          `yaml:"image"`
	Args            []string        `yaml:"args"`
	Env             []EnvVar        `yaml:"env"`
	SecurityContext SecurityContext `yaml:"securityContext"`
	VolumeMounts    []VolumeMount   `yaml:"volumeMounts"`
}

type EnvVar struct {
	Name      string        `yaml:"name"`
	Value     string        `yaml:"value"`
	ValueFrom *EnvVarSource `yaml:"valueFrom"`
}

// EnvVarSource is where a variable's value comes from; the downward API's
// fieldRef is the only source the manifests here use.
type EnvVarSource struct {
	FieldRef struct {
		FieldPath string `yaml:"fieldPath"`
	} `yaml:"fieldRef"`
}

type SecurityContext struct {
	Privileged               *bool `yaml:"privileged"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
	RunAsUser                *int  `yaml:"runAsUser"`
	RunAsGroup               *int  `yaml:"runAsGroup"`
	Capabilities             struct {
		Add  []string `yaml:"add"`
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
	SeccompProfile *SeccompProfile `yaml:"seccompProfile"`
}

type SeccompProfile struct {
	Type             string `yaml:"type"` // RuntimeDefault, Localhost or Unconfined
	LocalhostProfile string `yaml:"localhostProfile"`
}

type VolumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

// Decode reads the manifests in path, by kind (one object of each kind).
func Decode(path string) (map[string]Object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	objs := map[string]Object{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var o Object
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if _, dup := objs[o.Kind]; dup {
			return nil, fmt.Errorf("%s: two objects of kind %s", path, o.Kind)
		}
		objs[o.Kind] = o
	}
}

// EnvMap is the container's environment as a map.
func (c Container) EnvMap() map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env
}

// Volume is the pod's volume called name, or nil.
func (p PodSpec) Volume(name string) *Volume {
	for i := range p.Volumes {
		if p.Volumes[i].Name == name {
			return &p.Volumes[i]
		}
	}
	return nil
}
