// Package convert turns what the kernel session hands out into pdata: records
// into log records, histograms into cumulative metrics. The attribute keys and
// metric names, part of the receiver's contract (docs/records.md and
// docs/metrics.md list them), are all here.
package convert

// Resource attributes, on the records and the metrics of a process.
const (
	AttrProcessPID      = "process.pid"
	AttrProcessExecName = "process.executable.name"
	// AttrProcessCommandArgs is the process's argv from /proc/<pid>/cmdline,
	// the semantic conventions' process.command_args (a string array).
	AttrProcessCommandArgs = "process.command_args"
	// AttrProcessCreationTime (semantic conventions: ISO 8601) tells a process from a
	// later one given the same pid, on the metrics' Resource.
	AttrProcessCreationTime = "process.creation.time"
	// The container of the process, from its cgroup path: what contrib's
	// k8sattributes processor associates a pod by.
	AttrContainerID = "container.id"
	AttrK8sPodUID   = "k8s.pod.uid"
)

// Log record attributes.
const (
	// On every record.
	AttrType = "etcd.syscall.type"
	AttrRaw  = "etcd.syscall.raw"
	AttrTID  = "thread.id"

	// On every record when decode is on.
	AttrName       = "etcd.syscall.name"
	AttrFD         = "etcd.syscall.fd"
	AttrFDKind     = "etcd.syscall.fd_kind"
	AttrFileName   = "file.name"
	AttrFileInode  = "file.inode"
	AttrCount      = "etcd.syscall.count"
	AttrOffset     = "etcd.syscall.offset"
	AttrRet        = "etcd.syscall.ret"
	AttrDurationNs = "etcd.syscall.duration_ns"
	AttrPayload    = "etcd.syscall.payload"

	// When decode and scheduler are on: where the call's time went. The parts
	// (AttrTimeNs) add up to AttrDurationNs; a part that took no time is left out,
	// but for the time on a CPU. AttrCause names the largest.
	AttrCause = "etcd.syscall.cause"
	// Of the waits for the call's own I/O (io_queue and io_device), what it waited for.
	AttrIOFlushNs     = "etcd.syscall.io.flush_ns"
	AttrIOWritebackNs = "etcd.syscall.io.writeback_ns"
	AttrIOMetadataNs  = "etcd.syscall.io.metadata_ns"
	// The kernel function of the call's longest wait of part "other".
	AttrWaitFunction = "etcd.syscall.wait.function"
)

// Metric names and the data point attributes that only metrics carry; their
// points also carry AttrName and AttrFDKind.
const (
	MetricDuration     = "etcd.syscall.duration"
	MetricBytesWritten = "etcd.syscall.bytes_written"
	// MetricTime is the calls' time by part (AttrTimePart): the parts of a series
	// add up to its MetricDuration's sum.
	MetricTime   = "etcd.syscall.time"
	AttrTimePart = "etcd.syscall.time.part"

	AttrFileClass = "etcd.syscall.file_class"
	AttrOverflow  = "otel.metric.overflow"
)

// The disks' view's metrics (when block is on); their points carry AttrDisk
// (system.device), and the submitted ones AttrProcessPID and AttrProcessExecName
// (or AttrOverflow for the rest).
const (
	MetricDiskServiceTime    = "etcdebpf.disk.service_time"
	MetricDiskQueueTime      = "etcdebpf.disk.queue_time"
	MetricDiskOperations     = "etcdebpf.disk.operations"
	MetricDiskSubmittedBytes = "etcdebpf.disk.submitted.bytes"
	MetricDiskSubmittedBios  = "etcdebpf.disk.submitted.bios"

	AttrDisk          = "system.device"           // semantic conventions: the whole disk's name in /sys/block
	AttrDiskOperation = "etcdebpf.disk.operation" // read, write, flush, discard
	AttrDiskDirection = "disk.io.direction"       // semantic conventions: read or write, on those operations only
	AttrCgroupID      = "etcdebpf.cgroup.id"      // the submitter's cgroup v2 id at its first bio
)
