package etcdebpfreceiver

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/etcdebpf/etcdebpfreceiver/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)

	withDefaults := func(edit func(*Config)) *Config {
		cfg := createDefaultConfig()
		edit(cfg)
		return cfg
	}
	tests := []struct {
		id      string
		want    *Config
		wantErr []string // substrings of the error; each names a field and its fix
		kernel  bool     // the limit comes from the BPF object, which builds on Linux only
	}{
		{id: "", want: createDefaultConfig()},
		{id: "custom", want: withDefaults(func(c *Config) {
			c.PIDs = []int{4242, 4243}
			c.Executable = "/usr/local/bin/etcd"
			c.Budget = BudgetConfig{RecordsPerSecond: 50_000, Burst: 5_000}
			c.PayloadBytes = 64
			c.RingBufferSize = 16 << 20
			c.Decode = false
			c.MaxBatchSize = 512
			c.FlushInterval = 250 * time.Millisecond
			c.ErrorMode = ErrorModeIgnore
			c.Syscalls = []string{"write", "fdatasync"}
			c.FDKinds = []string{"file", "directory"}
			c.MinDuration = 10 * time.Millisecond
			c.Scheduler = false
			c.CollectionInterval = 30 * time.Second
		})},
		{id: "cgroup", want: withDefaults(func(c *Config) {
			c.Comm = ""
			c.CgroupPath = "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/etcd"
		})},
		{id: "long_comm", wantErr: []string{"comm:", `set comm to "etcd-server-wit"`}, kernel: true},
		{id: "everything", wantErr: []string{"comm: empty", "every process"}},
		{id: "pids_and_cgroup", wantErr: []string{"pids and cgroup_path: both are set"}},
		{id: "bad_pid", wantErr: []string{"pids: 0 is not a process id", "pids: -5 is not a process id"}},
		{id: "relative_cgroup", wantErr: []string{"cgroup_path:", "absolute path"}},
		{id: "relative_executable", wantErr: []string{"executable:", "absolute path"}},
		{id: "no_budget", want: withDefaults(func(c *Config) { c.Budget.RecordsPerSecond = 0 })},
		{id: "negative_budget", wantErr: []string{"budget.records_per_second: -1 is out of range"}},
		{id: "zero_burst", wantErr: []string{"budget.burst: 0 is out of range"}},
		{id: "payload_too_large", wantErr: []string{"payload_bytes: 1024 is out of range", "0 (off, the default) to 256"}, kernel: true},
		{id: "negative_payload", wantErr: []string{"payload_bytes: -1"}, kernel: true},
		{id: "ring_not_power_of_two", wantErr: []string{"ring_buffer_size: 1000000 is not a power of two"}},
		{id: "ring_too_small", wantErr: []string{"ring_buffer_size: 4096"}},
		{id: "zero_batch", wantErr: []string{"max_batch_size: 0 is out of range"}},
		{id: "zero_flush", wantErr: []string{"flush_interval: 0s is out of range"}},
		{id: "bad_error_mode", wantErr: []string{`error_mode: "continue" is not a mode`, `"propagate"`, `"ignore"`}},
		{id: "unknown_syscall", wantErr: []string{`syscalls: "fsync_range" is unknown`, "use some of write, pwrite64"}},
		{id: "unknown_fd_kind", wantErr: []string{`fd_kinds: "files" is unknown`, "use some of file, socket"}},
		{id: "negative_min_duration", wantErr: []string{"min_duration: -1ms is negative", "use 0"}},
		{id: "zero_collection_interval", wantErr: []string{"collection_interval: 0s is out of range", "use 1s to 1h"}},
		{id: "no_block", want: withDefaults(func(c *Config) { c.Block = false })},
		{id: "pinned", want: withDefaults(func(c *Config) { c.PinPath, c.UnpinOnShutdown = "/sys/fs/bpf/etcdebpf", true })},
		{id: "relative_pin_path", wantErr: []string{`pin_path: "sys/fs/bpf/etcdebpf" is relative`, "/sys/fs/bpf/etcdebpf"}},
		{id: "unpin_without_pin_path", wantErr: []string{"unpin_on_shutdown: set without pin_path", "set pin_path"}},
		{id: "disks_without_block", wantErr: []string{"disks: set while block is false", "set block: true"}},
		{id: "relative_disk", wantErr: []string{`disks: "dev/vda" is neither`, `disks: "" is neither`, "such as /dev/vda"}},
		{id: "missing_disk", wantErr: []string{`disks: disk "no-such-disk0" is not a block device on this host`, "/sys/block"}, kernel: true},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if tt.kernel && runtime.GOOS != "linux" {
				t.Skip("the receiver and its limits exist on Linux only")
			}
			id := component.NewIDWithName(metadata.Type, tt.id)
			sub, err := cm.Sub(id.String())
			require.NoError(t, err)
			cfg := createDefaultConfig()
			require.NoError(t, sub.Unmarshal(cfg))

			err = confmap.Validate(cfg)
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				assert.Equal(t, tt.want, cfg)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				assert.Contains(t, err.Error(), want)
			}
		})
	}
}

func TestUnmarshalRejectsBadInput(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	for id, want := range map[string]string{
		"wrong_type":    "payload_bytes",
		"unknown_field": "comm_name",
	} {
		t.Run(id, func(t *testing.T) {
			sub, err := cm.Sub(component.NewIDWithName(metadata.Type, id).String())
			require.NoError(t, err)
			err = sub.Unmarshal(createDefaultConfig())
			require.Error(t, err)
			assert.Contains(t, err.Error(), want)
		})
	}
}

func TestSettingsWithoutEffectAreWarned(t *testing.T) {
	changed := createDefaultConfig()
	changed.MinDuration = 10 * time.Millisecond
	changed.FDKinds = []string{"file"}
	changed.Budget.Burst = 1_000
	changed.CollectionInterval = 30 * time.Second
	changed.Scheduler = false // acts in both pipelines: never warned of
	for name, tt := range map[string]struct {
		cfg           *Config
		logs, metrics bool
		want          map[string][]string // a warning's pipeline to the settings it names
	}{
		"metrics alone, logs settings changed": {cfg: changed, metrics: true,
			want: map[string][]string{"logs": {"budget", "fd_kinds", "min_duration"}}},
		"logs alone, collection_interval changed": {cfg: changed, logs: true,
			want: map[string][]string{"metrics": {"collection_interval"}}},
		"both pipelines":          {cfg: changed, logs: true, metrics: true},
		"metrics alone, defaults": {cfg: createDefaultConfig(), metrics: true},
		"logs alone, defaults":    {cfg: createDefaultConfig(), logs: true},
	} {
		t.Run(name, func(t *testing.T) {
			core, logged := observer.New(zap.InfoLevel)
			warnUnusedSettings(zap.New(core), tt.cfg, tt.logs, tt.metrics)
			got := map[string][]string{}
			for _, entry := range logged.All() {
				assert.Equal(t, zap.WarnLevel, entry.Level)
				pipeline := "metrics"
				if strings.Contains(entry.Message, "no logs pipeline") {
					pipeline = "logs"
				}
				settings, _ := entry.ContextMap()["settings"].([]any)
				for _, s := range settings {
					got[pipeline] = append(got[pipeline], s.(string))
				}
			}
			if tt.want == nil {
				tt.want = map[string][]string{}
			}
			assert.Equal(t, tt.want, got)
		})
	}
}
