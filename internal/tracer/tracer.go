//go:build linux && (amd64 || arm64)

// Package tracer is the kernel session: it loads etcd_monitor.c into the kernel,
// attaches it to the syscall tracepoints, and hands out what the kernel collects
// as domain types: records, histograms, counters, losses. It is the only package
// that ships and imports bpf.
package tracer

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

// Options selects what is traced and how records are shaped.
type Options struct {
	Comm           string // exact process name; empty: any
	PIDs           []int  // host PIDs; empty: any
	CgroupPath     string // cgroup v2 directory; empty: any
	PayloadBytes   int    // leading bytes of each write to copy, 0 to bpf.PayloadMax
	RingBufferSize int    // bytes, a power of two

	Syscalls    []string      // syscalls to attach to, by name; empty: all seven
	FDKinds     []string      // fd kinds that produce records, by name; empty: all
	NoRecords   bool          // no call becomes a record, whatever FDKinds says (metrics alone)
	MinDuration time.Duration // records only for calls at least this slow
	Histograms  bool          // count every traced call in the latency histograms
	// Scheduler attaches to sched_switch so that each record says how long its call
	// was blocked and how long it waited runnable for a CPU.
	Scheduler bool
	// Executables, when not empty, are the only executables traced; AllowExecutable
	// and ForbidExecutable change the set while running.
	Executables []FileID
	Budget      Budget

	// Block loads the disks' view (block.c): per-disk request histograms and who
	// submits to the disks. Disks, when not empty, are the disks it covers, by
	// name or device path (ResolveDisk); empty, it covers the disks under the
	// files the traced calls write to, as it sees them.
	Block bool
	Disks []string

	// Pin keeps the kernel side in a BPF file system across agents.
	Pin Pin
}

// Budget is how many records one process may queue: RecordsPerSecond on average,
// up to Burst at once. While the ring buffer is more than half full, a process that
// queued more than a tenth of RecordsPerSecond (beyond half of Burst) also loses its
// records. Zero RecordsPerSecond: no budget.
type Budget struct {
	RecordsPerSecond int
	Burst            int
}

// Counters are the kernel's per-CPU counters, summed over CPUs.
type Counters = bpf.Counters

// Loss is one process's lost records by reason.
type Loss struct {
	OverBudget  uint64
	RingbufFull uint64
}

// Tracer owns the loaded BPF objects and their tracepoint links.
type Tracer struct {
	opts        Options
	objs        bpf.MonitorObjects
	exits       []link.Link // attached first, detached last
	sched       []link.Link // attached before the enters, detached after them
	enters      []link.Link
	recordSpace int // bytes one record takes in the ring, header included
	// reader is set once by Start and never reset: after Close, a goroutine still
	// reading gets ErrClosed.
	reader *ringbuf.Reader
	rec    ringbuf.Record // reused by ReadRecord
	closed bool
	block  *blockObjects // nil without Options.Block
	// warnings are what Start could not provide but did not refuse to start for.
	warnings []error
	// start is when the kernel side began counting: this Start, or the Start of
	// the agent that pinned what this one took over.
	start time.Time
	pin   *pinned // nil without Options.Pin.Path, or where links cannot be pinned
}

// Host probes, variables so that tests can stand in for a host that lacks them.
var (
	btfPath         = "/sys/kernel/btf/vmlinux"
	haveRingBuf     = func() error { return features.HaveMapType(ebpf.RingBuf) }
	haveTaskStorage = func() error {
		return errors.Join(features.HaveMapType(ebpf.TaskStorage),
			features.HaveProgramHelper(ebpf.TracePoint, asm.FnTaskStorageGet),
			features.HaveProgramHelper(ebpf.TracePoint, asm.FnGetCurrentTaskBtf))
	}
)

// wakeupRecords is how many records the producer queues per reader wake-up: a
// wake-up per record costs the traced thread a self-IPI, ~3 us here.
const wakeupRecords = 256

// ringbufHeader is the kernel's header in front of each ring buffer record.
const ringbufHeader = 8

// Start checks the host, loads the programs and attaches them. With
// Options.Pin.Path it takes over what an agent of the same build and
// configuration pinned there, or replaces what another pinned, and pins what it
// loads. On error nothing is left in the kernel, nor pinned.
func Start(opts Options) (_ *Tracer, err error) {
	if err := checkHost(); err != nil {
		return nil, err
	}
	if opts.Pin.Path == "" {
		return start(opts, nil)
	}
	p, err := openPin(opts.Pin.Path, pinDigest(opts))
	if err != nil {
		return nil, err
	}
	if p.takeover {
		t, err := start(opts, p)
		if err == nil {
			return t, nil
		}
		p.takeover, p.state = false, nil
		p.report.Replaced = fmt.Sprintf("the pinned programs could not be taken over (%v)", err)
	}
	if err := p.clear(); err != nil {
		return nil, errors.Join(err, p.close())
	}
	t, err := start(opts, p)
	if err != nil {
		return nil, errors.Join(err, p.remove())
	}
	return t, nil
}

// start loads and attaches the programs, or takes over the ones pinned at p
// (p.takeover). On error it frees what it loaded and leaves p to the caller.
func start(opts Options, p *pinned) (_ *Tracer, err error) {
	spec, err := bpf.LoadMonitor()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded BPF object: %w", err)
	}
	if err := configure(spec, opts); err != nil {
		return nil, err
	}
	fitAtomicsToKernel(spec)

	// The start comes before the programs are attached, so that no call they
	// count is older.
	t := &Tracer{opts: opts, recordSpace: recordSpace(opts.PayloadBytes), start: time.Now(), pin: p}
	defer func() {
		if err != nil {
			t.pin = nil // the caller's: what is pinned stays for it to decide
			t.Close()
		}
	}()
	takeover := p != nil && p.takeover
	if takeover {
		t.start = time.Unix(0, p.state.StartUnixNano)
	}
	loadOpts := &ebpf.CollectionOptions{}
	if p != nil {
		pinMaps(spec)
		if loadOpts.Maps.PinPath, err = p.mapDir(pinMonitorDir); err != nil {
			return nil, err
		}
	}
	if opts.Block {
		if t.block, err = loadBlock(opts, p); err != nil {
			return nil, err
		}
		loadOpts.MapReplacements = t.block.sharedMaps()
	}
	// Taking over, the programs are the pinned links' own: only the maps are
	// opened, and no program is loaded.
	var objs any = &t.objs
	if takeover {
		objs = &t.objs.MonitorMaps
	}
	if err := spec.LoadAndAssign(objs, loadOpts); err != nil {
		return nil, explainLoadError(err)
	}
	if err := t.setFilters(); err != nil {
		return nil, err
	}
	if opts.Scheduler {
		if _, err := loadWaitFunctions(t.objs.WaitPages, t.objs.WaitTexts); err != nil {
			t.warnings = append(t.warnings, fmt.Errorf("scheduler: blocked waits are not told apart: %w", err))
		}
	}
	if t.block != nil {
		if err := t.block.attach(p); err != nil {
			return nil, err
		}
	}
	if err := t.attach(); err != nil {
		return nil, err
	}
	if p != nil && !takeover {
		if p.unsupported != nil {
			// Behave as without pinning: the state goes with this agent.
			t.warnings = append(t.warnings, p.unsupported)
			t.pin = nil
			if err := p.remove(); err != nil {
				return nil, err
			}
		} else if err := p.writeState(t.start); err != nil {
			return nil, err
		}
	}
	if t.pin != nil {
		t.pin.report.TookOver = takeover
		if t.block != nil {
			t.pin.report.MapBytes = mapsMemlock(&t.objs.MonitorMaps, &t.block.objs.BlockMaps)
		} else {
			t.pin.report.MapBytes = mapsMemlock(&t.objs.MonitorMaps)
		}
	}
	if t.reader, err = ringbuf.NewReader(t.objs.Events); err != nil {
		return nil, fmt.Errorf("opening the ring buffer reader: %w", err)
	}
	return t, nil
}

// setFilters makes the pid and executable filters Options' own: a taking-over
// agent finds the ones of the agent before it.
func (t *Tracer) setFilters() error {
	if err := resetKeys(t.objs.TargetExes, func(k bpf.MonitorExeId) bool {
		return slices.Contains(t.opts.Executables, FileID{Dev: k.Dev, Ino: k.Ino})
	}); err != nil {
		return fmt.Errorf("resetting the target_exes map: %w", err)
	}
	for _, exe := range t.opts.Executables {
		if err := t.AllowExecutable(exe); err != nil {
			return err
		}
	}
	if err := resetKeys(t.objs.TargetPids, func(pid uint32) bool { return slices.Contains(t.opts.PIDs, int(pid)) }); err != nil {
		return fmt.Errorf("resetting the target_pids map: %w", err)
	}
	for _, pid := range t.opts.PIDs {
		if err := t.objs.TargetPids.Put(uint32(pid), uint8(1)); err != nil {
			return fmt.Errorf("adding pid %d to the target_pids map: %w", pid, err)
		}
	}
	return nil
}

// resetKeys deletes the keys of m that keep does not keep.
func resetKeys[K comparable](m *ebpf.Map, keep func(K) bool) error {
	var (
		key   K
		value uint8
		gone  []K
	)
	iter := m.Iterate()
	for iter.Next(&key, &value) {
		if !keep(key) {
			gone = append(gone, key)
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	for _, k := range gone {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// StartTime is when the kernel side began counting: the histograms' and the
// counters' StartTimestamp. A tracer that took pinned programs over has theirs.
func (t *Tracer) StartTime() time.Time { return t.start }

// Pinned reports what Start found and did at Options.Pin.Path; false when the
// session is not pinned (no path, or a kernel that cannot pin its links: see
// Warnings).
func (t *Tracer) Pinned() (PinReport, bool) {
	if t.pin == nil {
		return PinReport{}, false
	}
	return t.pin.report, true
}

// Warnings are what the session could not provide though it started: each
// says what is missing and how to get it.
func (t *Tracer) Warnings() []error { return t.warnings }

// minKernel is the oldest kernel the receiver is tested on (make kernels).
// Its features arrived earlier (ring buffer, CAP_BPF and CAP_PERFMON: 5.8), but
// nothing older is tested, and vendors' backports vary.
var minKernel = [2]int{5, 10}

func checkHost() error {
	if err := checkKernelVersion(kernelRelease()); err != nil {
		return err
	}
	if err := checkPIDNamespace(); err != nil {
		return err
	}
	if _, err := os.Stat(btfPath); err != nil {
		return fmt.Errorf("kernel BTF not found at %s (%w): the BPF program is compiled once and relocated with CO-RE, "+
			"which needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (the default on current distributions)", btfPath, err)
	}
	if err := probeBPF(); err != nil {
		return explainLoadError(err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		// Unprivileged, cilium/ebpf's memcg probe is refused too and it falls back to
		// the rlimit: the missing privilege is the real cause, so say that.
		return explainLoadError(fmt.Errorf("raising RLIMIT_MEMLOCK for BPF maps (kernels before 5.11 need it; CAP_SYS_RESOURCE there): %w", err))
	}
	if err := haveRingBuf(); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("this kernel reports no BPF ring buffer (mainline has it since 5.8, and the receiver needs it "+
				"for its records): use a kernel built with CONFIG_BPF_SYSCALL and the ring buffer, 5.10 or newer: %w", err)
		}
		return explainLoadError(fmt.Errorf("probing for BPF ring buffer support: %w", err))
	}
	return ensureTracefs()
}

func checkKernelVersion(release string) error {
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return fmt.Errorf("cannot read the kernel version from uname's release %q: %w", release, err)
	}
	if major < minKernel[0] || major == minKernel[0] && minor < minKernel[1] {
		return fmt.Errorf("this kernel is Linux %s: the receiver needs Linux %d.%d or newer "+
			"(the oldest kernel it is tested on; it needs BTF, the BPF ring buffer, CAP_BPF and CAP_PERFMON)",
			release, minKernel[0], minKernel[1])
	}
	return nil
}

func configure(spec *ebpf.CollectionSpec, opts Options) error {
	var comm [bpf.CommLen]byte
	copy(comm[:], opts.Comm)
	kinds, err := fdKindMask(opts.FDKinds)
	if err != nil {
		return err
	}
	if opts.NoRecords {
		kinds = 0
	}
	if _, err := selectedSyscalls(opts.Syscalls); err != nil {
		return err
	}
	if opts.Scheduler {
		if err := haveSchedInfo(); err != nil {
			return err
		}
	}
	var cgroup uint64
	if opts.CgroupPath != "" {
		id, err := cgroupID(opts.CgroupPath)
		if err != nil {
			return err
		}
		cgroup = id
	}
	// Pairing in task storage needs 5.11; before, the inflight hash does it.
	taskStorage := haveTaskStorage() == nil
	var interval uint64 // ns of budget a record costs
	if opts.Budget.RecordsPerSecond > 0 {
		interval = max(uint64(time.Second)/uint64(opts.Budget.RecordsPerSecond), 1)
	}
	vars := []struct {
		name  string
		value any
	}{
		{"target_comm", comm},
		{"target_cgroup_id", cgroup},
		{"filter_pids", len(opts.PIDs) > 0},
		{"payload_bytes", uint32(opts.PayloadBytes)},
		{"payload_room", uint32(payloadRoom(opts.PayloadBytes))},
		{"record_space", uint64(recordSpace(opts.PayloadBytes))},
		{"wakeup_bytes", uint64(wakeupRecords * recordSpace(opts.PayloadBytes))},
		{"histograms", opts.Histograms},
		{"min_duration_ns", uint64(max(opts.MinDuration, 0))},
		{"fd_kinds", kinds},
		{"filter_exe", len(opts.Executables) > 0},
		{"budget_interval_ns", interval},
		{"budget_burst_ns", interval * uint64(opts.Budget.Burst)},
		{"pressure_bytes", uint64(opts.RingBufferSize / 2)},
		{"task_storage", taskStorage},
		{"learn_disks", opts.Block && len(opts.Disks) == 0},
		{"scheduler", opts.Scheduler},
		{"own_io", opts.Block},
	}
	for _, v := range vars {
		if err := spec.Variables[v.name].Set(v.value); err != nil {
			return fmt.Errorf("setting %s in the BPF object: %w", v.name, err)
		}
	}
	spec.Maps["events"].MaxEntries = uint32(opts.RingBufferSize)
	if !taskStorage {
		stubTaskStorage(spec.Maps["inflight_task"])
	}
	if !opts.Block {
		// The syscall programs name the disks' maps (disk.h) but, without
		// learn_disks, never touch them: one entry each is enough.
		for _, name := range sharedBlockMaps {
			spec.Maps[name].MaxEntries = 1
		}
	}
	return nil
}

// stubTaskStorage turns the task storage map into a one-entry array that any kernel
// can create: the programs still name the map, but with task_storage false the
// verifier never reaches the code that uses it, and drops that code.
func stubTaskStorage(m *ebpf.MapSpec) {
	m.Type, m.Flags, m.MaxEntries = ebpf.Array, 0, 1 // the key stays an int
}

// fdKindMask is the fd_kinds bit set of names: bit 1 << kind; all kinds when names is empty.
func fdKindMask(names []string) (uint32, error) {
	if len(names) == 0 {
		return 0xff, nil
	}
	var mask uint32
	for _, name := range names {
		kind, ok := bpf.ParseFdKind(name)
		if !ok {
			return 0, fmt.Errorf("unknown fd kind %q", name)
		}
		mask |= 1 << kind
	}
	return mask, nil
}

// selectedSyscalls reports, by syscall name, whether to attach to it.
func selectedSyscalls(names []string) (map[string]bool, error) {
	selected := map[string]bool{}
	for _, name := range names {
		if _, ok := bpf.ParseSyscallType(name); !ok {
			return nil, fmt.Errorf("unknown syscall %q", name)
		}
		selected[name] = true
	}
	return selected, nil
}

// payloadRoom is the payload area of a record: records stay 8-byte aligned.
func payloadRoom(payloadBytes int) int { return (payloadBytes + 7) &^ 7 }

// recordSpace is what one record takes in the ring: the kernel's header, the
// event, the payload area, rounded up to 8 bytes.
func recordSpace(payloadBytes int) int {
	return (bpf.EventSize + payloadRoom(payloadBytes) + ringbufHeader + 7) &^ 7
}

// RingBytes is what waits in the ring buffer and the ring's size, in bytes.
func (t *Tracer) RingBytes() (pending, size int) {
	return t.reader.AvailableBytes(), t.reader.BufferSize()
}

// PendingRecords is how many records wait in the ring buffer.
func (t *Tracer) PendingRecords() int { return t.reader.AvailableBytes() / t.recordSpace }

// ErrFlushed is ReadRecord's answer once the records pending at FlushRecords were read.
var ErrFlushed = ringbuf.ErrFlushed

// ErrClosed is ReadRecord's answer after Close.
var ErrClosed = ringbuf.ErrClosed

// ReadRecord waits for the next record, until the deadline SetReadDeadline set
// (then it returns os.ErrDeadlineExceeded), and returns its raw bytes: they are
// valid until the next ReadRecord. One goroutine at a time may read.
func (t *Tracer) ReadRecord() ([]byte, error) {
	if err := t.reader.ReadInto(&t.rec); err != nil {
		return nil, err
	}
	return t.rec.RawSample, nil
}

// SetReadDeadline bounds the wait of ReadRecord; the zero time waits forever.
func (t *Tracer) SetReadDeadline(deadline time.Time) { t.reader.SetDeadline(deadline) }

// FlushRecords makes ReadRecord return what is pending without waiting for the
// producer's wake-up, then ErrFlushed.
func (t *Tracer) FlushRecords() error { return t.reader.Flush() }

// cgroupID is the id bpf_get_current_cgroup_id returns for tasks in dir: the
// inode number of the cgroup v2 directory.
func cgroupID(dir string) (uint64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return 0, fmt.Errorf("cgroup_path %q: %w; give an existing cgroup v2 directory (see /proc/<etcd pid>/cgroup)", dir, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, fmt.Errorf("cgroup_path %q is not on a cgroup v2 file system; give a directory under the unified hierarchy (usually /sys/fs/cgroup)", dir)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("cgroup_path %q: %w", dir, err)
	}
	return st.Ino, nil
}

// verifierLogLines is how much of the verifier's log an error carries: its
// verdict is at the end, after the instructions it walked.
const verifierLogLines = 12

func explainLoadError(err error) error {
	// The verifier refuses with EACCES too: a log means it was the verifier,
	// which no privilege would change.
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) && len(ve.Log) > 0 {
		return fmt.Errorf("the kernel's verifier rejected the BPF program on Linux %s: this build of the receiver "+
			"does not support this kernel; please report it with this message: %w; last lines of the verifier log: %s",
			kernelRelease(), err, strings.Join(lastLines(ve.Log, verifierLogLines), " | "))
	}
	if isRefusal(err) {
		if why := explainRefusal(); why != "" {
			// The cause is known: keep the kernel's errno, not cilium/ebpf's
			// guess at memlock that it appends to every EPERM.
			var errno unix.Errno
			if errors.As(err, &errno) {
				err = errno
			}
			return fmt.Errorf("loading BPF programs was refused: %s: %w", why, err)
		}
		return fmt.Errorf("loading BPF programs was refused: run the collector as root, or grant it CAP_BPF, CAP_PERFMON "+
			"and CAP_SYS_RESOURCE (docs/privileges-and-security.md): %w", err)
	}
	return fmt.Errorf("loading BPF programs: %w", err)
}

func lastLines(lines []string, n int) []string {
	return lines[max(0, len(lines)-n):]
}

// kernelRelease is uname -r, a variable so that tests can stand in for another kernel.
var kernelRelease = func() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "(unknown release)"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// perfEventParanoid is kernel.perf_event_paranoid, or 0 where it cannot be read.
var perfEventParanoid = func() int {
	data, err := os.ReadFile("/proc/sys/kernel/perf_event_paranoid")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return n
}

// explainAttachError names what a refused tracepoint perf event needs on this host.
func explainAttachError(tracepoint string, err error) error {
	if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("attaching to tracepoint %s: %w", tracepoint, err)
	}
	if perfEventsFiltered() {
		return fmt.Errorf("attaching to tracepoint syscalls:%s was refused: perf_event_open(2) is refused by the "+
			"collector's seccomp filter (/proc/self/status: Seccomp: 2): %s: %w", tracepoint, seccompAdvice, err)
	}
	if level := perfEventParanoid(); level > 2 {
		// Debian's kernels add level 3 (their default): no perf event without CAP_SYS_ADMIN.
		return fmt.Errorf("attaching to tracepoint %s was refused: kernel.perf_event_paranoid is %d, which lets "+
			"only CAP_SYS_ADMIN open perf events: run the collector as root or with CAP_SYS_ADMIN, or lower the setting "+
			"to 2 (sysctl kernel.perf_event_paranoid=2), where CAP_PERFMON is enough: %w", tracepoint, level, err)
	}
	return fmt.Errorf("attaching to tracepoint %s was refused: run the collector as root, or grant it CAP_PERFMON: %w",
		tracepoint, err)
}

// tracepoint pairs a traced syscall with its enter and exit programs.
type tracepoint struct {
	name        string
	enter, exit *ebpf.Program
}

// tracepoints lists every syscall the BPF object can trace.
func (t *Tracer) tracepoints() []tracepoint {
	p := &t.objs.MonitorPrograms
	return []tracepoint{
		{"write", p.EnterWrite, p.ExitWrite},
		{"pwrite64", p.EnterPwrite64, p.ExitPwrite64},
		{"writev", p.EnterWritev, p.ExitWritev},
		{"pwritev", p.EnterPwritev, p.ExitPwritev},
		{"fsync", p.EnterFsync, p.ExitFsync},
		{"fdatasync", p.EnterFdatasync, p.ExitFdatasync},
		{"sync_file_range", p.EnterSyncFileRange, p.ExitSyncFileRange},
	}
}

// attach attaches every exit program before any enter program, so that a call
// parked by an enter always meets its exit and no inflight entry is left behind.
// Taking over, it opens the pinned links instead.
func (t *Tracer) attach() error {
	selected, err := selectedSyscalls(t.opts.Syscalls)
	if err != nil {
		return err
	}
	tps := slices.DeleteFunc(t.tracepoints(), func(tp tracepoint) bool { return len(selected) > 0 && !selected[tp.name] })
	for _, tp := range tps {
		if err := attachTo(t.pin, "sys_exit_"+tp.name, tp.exit, &t.exits); err != nil {
			return err
		}
	}
	if t.opts.Scheduler {
		if err := hold(t.pin, "sched_switch", func() (link.Link, error) {
			l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sched_switch", Program: t.objs.OnSwitch})
			if err != nil {
				return nil, explainAttachError("sched:sched_switch (raw)", err)
			}
			return l, nil
		}, &t.sched); err != nil {
			return err
		}
	}
	for _, tp := range tps {
		if err := attachTo(t.pin, "sys_enter_"+tp.name, tp.enter, &t.enters); err != nil {
			return err
		}
	}
	return nil
}

// hold appends to links the link of the attachment point name: attach's, pinned
// at p when there is one, or the one pinned there when p is taken over.
func hold(p *pinned, name string, attach func() (link.Link, error), links *[]link.Link) error {
	if p != nil && p.takeover {
		l, err := p.loadLink(name)
		if err != nil {
			return err
		}
		*links = append(*links, l)
		return nil
	}
	l, err := attach()
	if err != nil {
		return err
	}
	*links = append(*links, l)
	return p.pinLink(name, l)
}

// haveSchedInfo checks that the kernel keeps each thread's run delay
// (task_struct.sched_info, CONFIG_SCHED_INFO): the scheduler part reads it.
var haveSchedInfo = func() error {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("scheduler: reading the kernel's BTF: %w", err)
	}
	var task *btf.Struct
	if err := spec.TypeByName("task_struct", &task); err != nil {
		return fmt.Errorf("scheduler: the kernel's BTF has no task_struct: %w", err)
	}
	for _, m := range task.Members {
		if m.Name == "sched_info" {
			return nil
		}
	}
	return fmt.Errorf("scheduler: this kernel keeps no run delay per thread (task_struct.sched_info, CONFIG_SCHED_INFO, " +
		"which CONFIG_SCHEDSTATS or CONFIG_TASK_DELAY_ACCT select; /proc/<pid>/schedstat is missing too): " +
		"set scheduler: false, or use a kernel built with CONFIG_SCHEDSTATS=y")
}

func attachTo(p *pinned, tracepoint string, prog *ebpf.Program, links *[]link.Link) error {
	return hold(p, tracepoint, func() (link.Link, error) {
		l, err := link.Tracepoint("syscalls", tracepoint, prog, nil)
		if err != nil {
			return nil, explainAttachError("syscalls:"+tracepoint, err)
		}
		return l, nil
	}, links)
}

// Detach stops new records: all enter programs go first, then the exits, so a
// parked call still meets its exit. Records already in the ring stay readable.
// A pinned session is only let go of: the programs count on for the next agent,
// unless Options.Pin.Release, which removes the pins first.
//
// Links within a phase are closed concurrently: each close waits for an RCU grace
// period (tracepoint unregistration), and concurrent waits share one.
func (t *Tracer) Detach() error {
	var err error
	if t.pin != nil && t.opts.Pin.Release {
		err = t.pin.clear()
	}
	err = errors.Join(err, closeAll(t.enters), closeAll(t.sched), closeAll(t.exits))
	t.enters, t.sched, t.exits = nil, nil, nil
	if t.block != nil {
		err = errors.Join(err, t.block.detach())
	}
	return err
}

func closeAll(links []link.Link) error {
	errs := make([]error, len(links))
	var wg sync.WaitGroup
	for i, l := range links {
		wg.Go(func() { errs[i] = l.Close() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close detaches and frees everything the tracer holds, but what is pinned
// (Options.Pin) unless Options.Pin.Release. It is safe on a partly started
// tracer and more than once.
func (t *Tracer) Close() error {
	errs := []error{t.Detach()}
	if t.reader != nil && !t.closed {
		errs = append(errs, t.reader.Close())
	}
	t.closed = true
	errs = append(errs, t.objs.Close())
	t.objs = bpf.MonitorObjects{}
	if t.block != nil {
		errs = append(errs, t.block.close())
		t.block = nil
	}
	if t.pin != nil {
		if t.opts.Pin.Release {
			errs = append(errs, t.pin.remove())
		} else {
			errs = append(errs, t.pin.close())
		}
		t.pin = nil
	}
	return errors.Join(errs...)
}

// Counters reads the kernel's counters.
func (t *Tracer) Counters() (Counters, error) { return bpf.ReadCounters(t.objs.Counters) }

// RemovePID stops tracing pid.
func (t *Tracer) RemovePID(pid int) error {
	err := t.objs.TargetPids.Delete(uint32(pid))
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// The latency histograms' layout: OpenTelemetry exponential buckets at HistScale,
// bucket 0 of Histogram.Buckets being index HistFirstIndex.
const (
	HistScale      = bpf.HistScale
	HistBuckets    = bpf.HistBuckets
	HistFirstIndex = bpf.HistFirstIndex
)

// HistKey is what one histogram counts: one process's calls of one syscall on one
// kind (and class) of fd.
type HistKey struct {
	PID       uint32
	Syscall   Syscall
	FDKind    FDKind
	FileClass FileClass
}

func (k HistKey) kernel() bpf.MonitorHistKey {
	return bpf.MonitorHistKey{Tgid: k.PID, Type: uint8(k.Syscall), FdKind: uint8(k.FDKind), FileClass: uint8(k.FileClass)}
}

func histKeyOf(k bpf.MonitorHistKey) HistKey {
	return HistKey{PID: k.Tgid, Syscall: Syscall(k.Type), FDKind: FDKind(k.FdKind), FileClass: FileClass(k.FileClass)}
}

// HistCounts are one kernel latency histogram's counts. Its bucket counters are
// 32 bits wide and wrap: a reader accumulates differences between reads.
type HistCounts struct {
	SumNs   uint64
	Bytes   uint64 // the bytes the counted calls (or requests) wrote or served
	MaxNs   uint64 // the slowest call (or request); 0 before the first
	MinNs   uint64 // the fastest; math.MaxUint64 before the first
	Buckets [HistBuckets]uint32
}

func histCountsOf(h bpf.MonitorHist) HistCounts {
	return HistCounts{SumNs: h.SumNs, Bytes: h.Bytes, MaxNs: h.MaxNs, MinNs: ^h.MinNsInv, Buckets: h.Buckets}
}

// Histogram is the kernel's latency histogram of the calls of one key.
type Histogram struct {
	Key      HistKey
	Overflow bool // the calls that found the map full, whatever their key
	HistCounts
	// Waits is the counted calls' time off the CPU, with the scheduler part:
	// Waits.Split(SumNs) is their time by part.
	Waits Waits
}

// Histograms reads every histogram, the overflow one last (when it counted any call).
func (t *Tracer) Histograms() ([]Histogram, error) {
	var (
		out []Histogram
		key bpf.MonitorHistKey
		val bpf.MonitorHist
	)
	// The waits are read before the histograms: the kernel counts a call in its
	// histogram first, so every call in the waits read is in the histograms read
	// after, and a histogram's sum always covers its waits.
	waits := map[bpf.MonitorHistKey]Waits{}
	if t.opts.Scheduler {
		var w bpf.MonitorWaitTimes
		iter := t.objs.Waits.Iterate()
		for iter.Next(&key, &w) {
			waits[key] = Waits{Ns: w.Ns, IODeviceNs: w.IoDeviceNs, IODeviceKnown: t.opts.Block}
		}
		if err := iter.Err(); err != nil {
			return nil, fmt.Errorf("reading the waits: %w", err)
		}
	}
	iter := t.objs.Hists.Iterate()
	for iter.Next(&key, &val) {
		out = append(out, Histogram{Key: histKeyOf(key), HistCounts: histCountsOf(val), Waits: waits[key]})
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("reading the histograms: %w", err)
	}
	if err := t.objs.HistOverflow.Lookup(uint32(0), &val); err != nil {
		return nil, fmt.Errorf("reading the overflow histogram: %w", err)
	}
	if val.SumNs != 0 || slices.ContainsFunc(val.Buckets[:], func(n uint32) bool { return n != 0 }) {
		out = append(out, Histogram{Overflow: true, HistCounts: histCountsOf(val)})
	}
	return out, nil
}

// DeleteHistogram frees a histogram's slot, for a process that exited.
func (t *Tracer) DeleteHistogram(key HistKey) error {
	err := t.objs.Hists.Delete(key.kernel())
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	if err := t.objs.Waits.Delete(key.kernel()); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// AllowExecutable adds exe to the executables traced (when Options.Executables
// was not empty at Start).
func (t *Tracer) AllowExecutable(exe FileID) error {
	if err := t.objs.TargetExes.Put(bpf.MonitorExeId{Ino: exe.Ino, Dev: exe.Dev}, uint8(1)); err != nil {
		return fmt.Errorf("adding executable %+v to the target_exes map (at most %d): %w", exe, t.objs.TargetExes.MaxEntries(), err)
	}
	return nil
}

// ForbidExecutable removes exe from the executables traced.
func (t *Tracer) ForbidExecutable(exe FileID) error {
	err := t.objs.TargetExes.Delete(bpf.MonitorExeId{Ino: exe.Ino, Dev: exe.Dev})
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// Losses reads the lost records of each process that lost any, by pid.
func (t *Tracer) Losses() (map[int]Loss, error) {
	out := map[int]Loss{}
	var (
		pid  uint32
		loss bpf.MonitorLoss
	)
	iter := t.objs.Losses.Iterate()
	for iter.Next(&pid, &loss) {
		out[int(pid)] = Loss{OverBudget: loss.OverBudget, RingbufFull: loss.RingbufFull}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("reading the losses map: %w", err)
	}
	return out, nil
}

// ForgetLosses deletes pid's entry in the losses table, making room for another
// process: call it once pid has exited and its last losses were read.
func (t *Tracer) ForgetLosses(pid int) error {
	err := t.objs.Losses.Delete(uint32(pid))
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// Executables lists the executables the kernel filter allows.
func (t *Tracer) Executables() ([]FileID, error) {
	var (
		out []FileID
		key bpf.MonitorExeId
		val uint8
	)
	iter := t.objs.TargetExes.Iterate()
	for iter.Next(&key, &val) {
		out = append(out, FileID{Dev: key.Dev, Ino: key.Ino})
	}
	return out, iter.Err()
}
