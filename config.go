package etcdebpfreceiver

import (
	"errors"
	"fmt"
	"math/bits"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// Limits that the kernel side imposes on the configuration.
const (
	minRingSize   = 64 << 10
	maxRingSize   = 1 << 30
	maxBudgetRate = 1_000_000_000 // one record per nanosecond: the kernel side's resolution
)

// Config selects the processes to trace and how records reach the pipeline.
//
// The filters combine: a thread is traced when its process name equals Comm (any
// name when Comm is empty), its process runs Executable (when set) and, when set,
// its process is one of PIDs or lives in the cgroup at CgroupPath.
type Config struct {
	// Comm is the exact process name (comm) to trace. Default "etcd".
	Comm string `mapstructure:"comm"`
	// PIDs restricts tracing to these processes (host PID namespace).
	PIDs []int `mapstructure:"pids"`
	// CgroupPath restricts tracing to one cgroup v2 directory, for example a
	// static-pod etcd's container cgroup under /sys/fs/cgroup.
	CgroupPath string `mapstructure:"cgroup_path"`
	// Executable restricts tracing to processes running this file (absolute path),
	// matched in the kernel by device and inode: a name cannot fake it. The path is
	// resolved at Start and watched, so that an upgraded binary is picked up.
	Executable string `mapstructure:"executable"`
	// Budget caps the records one process may queue, so that no process can take
	// the ring buffer from another.
	Budget BudgetConfig `mapstructure:"budget"`
	// PayloadBytes is how many leading bytes of each write to capture (0 to 256).
	// Default 0: the data etcd writes can hold secrets.
	PayloadBytes int `mapstructure:"payload_bytes"`
	// RingBufferSize is the size in bytes of the kernel ring buffer: a power of two.
	RingBufferSize int `mapstructure:"ring_buffer_size"`
	// Decode adds the record's fields as attributes next to the raw bytes.
	Decode bool `mapstructure:"decode"`
	// MaxBatchSize is the most records sent to the pipeline in one plog.Logs.
	MaxBatchSize int `mapstructure:"max_batch_size"`
	// FlushInterval bounds how long a record waits before it is sent.
	FlushInterval time.Duration `mapstructure:"flush_interval"`
	// ErrorMode decides what a failure to start tracing does to the collector:
	// ErrorModePropagate (the default) fails its start, ErrorModeIgnore leaves this
	// receiver idle and the rest of the collector running.
	ErrorMode ErrorMode `mapstructure:"error_mode"`

	// Syscalls lists the syscalls to trace; only those are attached. Empty: all seven.
	Syscalls []string `mapstructure:"syscalls"`
	// FDKinds lists the fd kinds whose calls become log records. Empty: every kind.
	FDKinds []string `mapstructure:"fd_kinds"`
	// MinDuration keeps log records of calls at least this slow only (0: every call).
	// The metrics count every call whatever FDKinds and MinDuration say.
	MinDuration time.Duration `mapstructure:"min_duration"`
	// Scheduler measures where each call's time went: on a CPU, waiting for one, or
	// blocked on what (a program on every context switch), in each log record and in
	// etcd.syscall.time.
	Scheduler bool `mapstructure:"scheduler"`
	// CollectionInterval is how often a metrics pipeline gets the histograms.
	CollectionInterval time.Duration `mapstructure:"collection_interval"`

	// Block turns on the disks' view: per disk and operation, histograms of the
	// device's service time and of the kernel's queueing, and the bytes each process
	// submits to the disk (docs/why-slow.md). Default true.
	Block bool `mapstructure:"block"`
	// Disks are the disks that view covers, by name (vda) or device path
	// (/dev/vda); a partition stands for its whole disk. Empty (the default): the
	// disks under the files the traced processes write to, learnt as they write.
	Disks []string `mapstructure:"disks"`

	// PinPath keeps the kernel side in this directory of a BPF file system, so
	// that it outlives the agent: the programs stay attached and the histograms,
	// the disks' view and the ring buffer keep counting while no agent runs, and
	// the next agent takes them over (docs/operating.md, "What survives what").
	// Empty (the default): the kernel side lives as long as the receiver.
	PinPath string `mapstructure:"pin_path"`
	// UnpinOnShutdown removes what is pinned at PinPath when the receiver shuts
	// down: set it to stop for good, an uninstall.
	UnpinOnShutdown bool `mapstructure:"unpin_on_shutdown"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// ErrorMode is what the receiver does when it cannot trace at Start.
type ErrorMode string

const (
	// ErrorModePropagate returns the failure from Start: the collector exits
	// non-zero, printing the cause and the fix.
	ErrorModePropagate ErrorMode = "propagate"
	// ErrorModeIgnore logs the failure, reports a permanent error through
	// component status and keeps the receiver idle; the collector runs on.
	ErrorModeIgnore ErrorMode = "ignore"
)

// BudgetConfig is a token bucket per traced process, enforced in the kernel.
type BudgetConfig struct {
	// RecordsPerSecond is the average rate one process may queue; 0: no budget.
	RecordsPerSecond int `mapstructure:"records_per_second"`
	// Burst is how many records a process may queue at once above that rate.
	Burst int `mapstructure:"burst"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// The default budget is ten times the peak rate measured of a real etcd under
// `benchmark put` (about 22k records/s over 10 ms windows) and far above its
// largest burst (about 1k records in 100 ms): it never limits etcd.
const (
	defaultBudgetRate  = 200_000
	defaultBudgetBurst = 20_000
)

func createDefaultConfig() *Config {
	return &Config{
		Comm:           "etcd",
		RingBufferSize: 8 << 20,
		Budget:         BudgetConfig{RecordsPerSecond: defaultBudgetRate, Burst: defaultBudgetBurst},
		Decode:         true,
		MaxBatchSize:   1024,
		FlushInterval:  100 * time.Millisecond,
		ErrorMode:      ErrorModePropagate,
		Scheduler:      true,

		CollectionInterval: 10 * time.Second,
		Block:              true,
	}
}

// Validate checks each field and names the field and the fix in its error.
func (cfg *Config) Validate() error {
	var errs []error
	errs = append(errs, cfg.validateKernelLimits()...)
	if cfg.Comm == "" && len(cfg.PIDs) == 0 && cfg.CgroupPath == "" {
		errs = append(errs, errors.New(`comm: empty with neither pids nor cgroup_path set, which would trace every process on the host; set comm (default "etcd"), pids or cgroup_path`))
	}
	if len(cfg.PIDs) > 0 && cfg.CgroupPath != "" {
		errs = append(errs, errors.New("pids and cgroup_path: both are set; choose one way to select the process (pids for a process on the host, cgroup_path for a container)"))
	}
	for _, pid := range cfg.PIDs {
		if pid <= 0 || pid > 1<<22 {
			errs = append(errs, fmt.Errorf("pids: %d is not a process id; use positive PIDs as the host sees them (ps -o pid= -C etcd)", pid))
		}
	}
	if cfg.CgroupPath != "" && !filepath.IsAbs(cfg.CgroupPath) {
		errs = append(errs, fmt.Errorf("cgroup_path: %q is relative; give the absolute path of a cgroup v2 directory, such as /sys/fs/cgroup/kubepods.slice/...", cfg.CgroupPath))
	}
	if cfg.Executable != "" && !filepath.IsAbs(cfg.Executable) {
		errs = append(errs, fmt.Errorf("executable: %q is relative; give the absolute path of the etcd binary, such as /usr/local/bin/etcd", cfg.Executable))
	}
	if cfg.Budget.RecordsPerSecond < 0 || cfg.Budget.RecordsPerSecond > maxBudgetRate {
		errs = append(errs, fmt.Errorf("budget.records_per_second: %d is out of range; use 0 (no budget) to %d (default %d)",
			cfg.Budget.RecordsPerSecond, maxBudgetRate, defaultBudgetRate))
	}
	if cfg.Budget.RecordsPerSecond > 0 && (cfg.Budget.Burst < 1 || cfg.Budget.Burst > cfg.Budget.RecordsPerSecond*60) {
		errs = append(errs, fmt.Errorf("budget.burst: %d is out of range; use 1 to a minute of records_per_second (default %d)",
			cfg.Budget.Burst, defaultBudgetBurst))
	}
	if cfg.RingBufferSize < minRingSize || cfg.RingBufferSize > maxRingSize || bits.OnesCount(uint(cfg.RingBufferSize)) != 1 {
		errs = append(errs, fmt.Errorf("ring_buffer_size: %d is not a power of two between %d (64 KiB) and %d (1 GiB); use, for example, 8388608 (8 MiB, the default)",
			cfg.RingBufferSize, minRingSize, maxRingSize))
	}
	if cfg.MaxBatchSize < 1 || cfg.MaxBatchSize > 1<<16 {
		errs = append(errs, fmt.Errorf("max_batch_size: %d is out of range; use 1 to 65536 (default 1024)", cfg.MaxBatchSize))
	}
	if cfg.FlushInterval < time.Millisecond || cfg.FlushInterval > time.Minute {
		errs = append(errs, fmt.Errorf("flush_interval: %v is out of range; use 1ms to 1m (default 100ms)", cfg.FlushInterval))
	}
	if cfg.ErrorMode != ErrorModePropagate && cfg.ErrorMode != ErrorModeIgnore {
		errs = append(errs, fmt.Errorf("error_mode: %q is not a mode; use %q (the default: a start failure stops the collector) or %q (this receiver stays idle, the collector runs on)",
			cfg.ErrorMode, ErrorModePropagate, ErrorModeIgnore))
	}
	errs = append(errs, unknownNames("syscalls", cfg.Syscalls, tracer.SyscallNames())...)
	errs = append(errs, unknownNames("fd_kinds", cfg.FDKinds, tracer.FDKindNames())...)
	if cfg.MinDuration < 0 {
		errs = append(errs, fmt.Errorf("min_duration: %v is negative; use 0 (a log record for every call, the default) or a duration such as 10ms", cfg.MinDuration))
	}
	if cfg.CollectionInterval < time.Second || cfg.CollectionInterval > time.Hour {
		errs = append(errs, fmt.Errorf("collection_interval: %v is out of range; use 1s to 1h (default 10s)", cfg.CollectionInterval))
	}
	if len(cfg.Disks) > 0 && !cfg.Block {
		errs = append(errs, errors.New("disks: set while block is false, which turns the disks' view off; remove disks, or set block: true"))
	}
	if cfg.PinPath != "" && !filepath.IsAbs(cfg.PinPath) {
		errs = append(errs, fmt.Errorf("pin_path: %q is relative; give a directory on a BPF file system, such as /sys/fs/bpf/etcdebpf", cfg.PinPath))
	}
	if cfg.UnpinOnShutdown && cfg.PinPath == "" {
		errs = append(errs, errors.New("unpin_on_shutdown: set without pin_path, so nothing is pinned to remove; set pin_path to the directory to clean up, or remove unpin_on_shutdown"))
	}
	for _, disk := range cfg.Disks {
		if !diskNameValid(disk) {
			errs = append(errs, fmt.Errorf("disks: %q is neither a device name nor an absolute device path; use a name from /sys/block such as vda, or a path such as /dev/vda", disk))
		}
	}
	return errors.Join(errs...)
}

// diskNameValid: a name as /sys/block lists them, or an absolute device path.
func diskNameValid(name string) bool {
	return name != "" && (filepath.IsAbs(name) || !strings.Contains(name, "/"))
}

func unknownNames(field string, names, known []string) []error {
	var errs []error
	for _, name := range names {
		if !slices.Contains(known, name) {
			errs = append(errs, fmt.Errorf("%s: %q is unknown; use some of %s (or leave %s out for all)", field, name, strings.Join(known, ", "), field))
		}
	}
	return errs
}

// warnUnusedSettings logs, at Start, the settings changed from their defaults
// that act only in a pipeline the receiver does not serve: Validate cannot
// tell, since the pipelines are the service's, and silence would leave a user
// believing that min_duration, say, filters something.
func warnUnusedSettings(logger *zap.Logger, cfg *Config, logs, metrics bool) {
	logsOnly, metricsOnly := cfg.unusedSettings(logs, metrics)
	if len(logsOnly) > 0 {
		logger.Warn("These settings shape log records only, and no logs pipeline uses this receiver: they have no effect; "+
			"remove them, or add the receiver to a logs pipeline", zap.Strings("settings", logsOnly))
	}
	if len(metricsOnly) > 0 {
		logger.Warn("These settings act in a metrics pipeline only, and none uses this receiver: they have no effect; "+
			"remove them, or add the receiver to a metrics pipeline", zap.Strings("settings", metricsOnly))
	}
}

// unusedSettings names the settings that differ from their defaults but act
// only on log records (logsOnly, when there is no logs pipeline) or only on
// the histograms (metricsOnly, when there is no metrics pipeline).
func (cfg *Config) unusedSettings(logs, metrics bool) (logsOnly, metricsOnly []string) {
	def := createDefaultConfig()
	if !logs {
		for _, s := range []struct {
			key     string
			changed bool
		}{
			{"budget", cfg.Budget != def.Budget},
			{"payload_bytes", cfg.PayloadBytes != def.PayloadBytes},
			{"ring_buffer_size", cfg.RingBufferSize != def.RingBufferSize},
			{"decode", cfg.Decode != def.Decode},
			{"max_batch_size", cfg.MaxBatchSize != def.MaxBatchSize},
			{"flush_interval", cfg.FlushInterval != def.FlushInterval},
			{"fd_kinds", len(cfg.FDKinds) > 0},
			{"min_duration", cfg.MinDuration != def.MinDuration},
		} {
			if s.changed {
				logsOnly = append(logsOnly, s.key)
			}
		}
	}
	if !metrics && cfg.CollectionInterval != def.CollectionInterval {
		metricsOnly = append(metricsOnly, "collection_interval")
	}
	return logsOnly, metricsOnly
}
