//go:build linux

package tracer

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

// DiskOp is what a disk request does, as /sys/block/<disk>/stat groups them.
type DiskOp = bpf.BlockDiskOperation

const (
	DiskRead    = bpf.BlockDiskOperationDISK_OP_READ
	DiskWrite   = bpf.BlockDiskOperationDISK_OP_WRITE
	DiskFlush   = bpf.BlockDiskOperationDISK_OP_FLUSH
	DiskDiscard = bpf.BlockDiskOperationDISK_OP_DISCARD
)

// MaxDisks is how many disks the view can cover.
const MaxDisks = int(bpf.BlockDiskLayoutDISKS_MAX)

// DiskOpStats is one covered disk's one operation, cumulative since Start.
type DiskOpStats struct {
	Dev       uint32 // the whole disk, kernel encoding (MAJOR << 20 | MINOR)
	Op        DiskOp
	Completed uint64 // as /sys/block/<disk>/stat counts them
	// Service is the device's time, request issued to completed; its Bytes are the
	// bytes served. Queue is the kernel's, request made from its first bio to issued.
	Service, Queue HistCounts
}

// DiskTotal is a covered disk's running totals, the ones the syscall programs read beside each call.
type DiskTotal = bpf.BlockDiskTotal

// Submitter is the bytes and bios one process submitted to one disk since Start.
// Overflow marks the disk's entry for the processes that found the table full
// (its PID, Comm and CgroupID are zero).
type Submitter struct {
	Dev      uint32
	PID      uint32
	Comm     string
	CgroupID uint64
	Bytes    uint64
	Bios     uint64
	Overflow bool
}

// BlockCounters are the block programs' own counters, summed over CPUs.
type BlockCounters struct {
	Untimed     uint64 // issued requests that found the issue table full: no service time
	NoIssue     uint64 // served requests whose issue came before the programs were attached
	NoStartTime uint64 // issued requests the kernel kept no creation time for: no queue time
	DisksFull   uint64 // events on covered disks whose entry found the disk tables full
}

// blockObjects is the loaded block.c, nil when Options.Block is false.
type blockObjects struct {
	objs  bpf.BlockObjects
	links []link.Link
}

// loadBlock loads block.c; the syscall object then shares its maps (sharedBlockMaps).
func loadBlock(opts Options) (*blockObjects, error) {
	spec, err := bpf.LoadBlock()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded block BPF object: %w", err)
	}
	queueArg, err := blockTracepointsTakeQueue()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables["queue_arg"].Set(queueArg); err != nil {
		return nil, fmt.Errorf("setting queue_arg in the block BPF object: %w", err)
	}
	b := &blockObjects{}
	if err := spec.LoadAndAssign(&b.objs, nil); err != nil {
		return nil, explainLoadError(err)
	}
	for _, name := range opts.Disks {
		d, err := ResolveDisk(name)
		if err == nil {
			err = b.objs.CoveredDisks.Put(d.Dev, uint8(1))
		}
		if err != nil {
			b.close()
			return nil, fmt.Errorf("disks: covering %q (at most %d disks): %w", name, MaxDisks, err)
		}
	}
	return b, nil
}

// blockTracepointsTakeQueue reports whether the kernel's block tracepoints take the
// request_queue before the request or bio, as before 5.11 (and 5.10 before 5.10.137,
// which got the change backported): from the tracepoint's prototype in the kernel's
// BTF, so that backports are seen as they are, not guessed from the version.
func blockTracepointsTakeQueue() (bool, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false, fmt.Errorf("reading the kernel's BTF for the block tracepoints: %w", err)
	}
	var proto *btf.Typedef
	if err := spec.TypeByName("btf_trace_block_rq_issue", &proto); err != nil {
		return false, fmt.Errorf("the kernel's BTF has no block_rq_issue tracepoint (%w): "+
			"the disk view needs CONFIG_BLOCK and block tracepoints; set block: false to run without it", err)
	}
	ptr, ok := proto.Type.(*btf.Pointer)
	fn, ok2 := ptr.Target.(*btf.FuncProto)
	if !ok || !ok2 {
		return false, fmt.Errorf("btf_trace_block_rq_issue in the kernel's BTF is %v, not a function pointer", proto.Type)
	}
	// The first parameter is the tracepoint's private data; then (q, rq) or (rq).
	switch len(fn.Params) {
	case 3:
		return true, nil
	case 2:
		return false, nil
	}
	return false, fmt.Errorf("block_rq_issue takes %d arguments in the kernel's BTF; this build knows (rq) and (q, rq)", len(fn.Params)-1)
}

// sharedBlockMaps are the block object's maps the syscall object declares too (disk.h).
var sharedBlockMaps = []string{"covered_disks", "disk_totals", "submitters", "submitter_overflow"}

// sharedMaps hands the block object's maps to the syscall object, by name.
func (b *blockObjects) sharedMaps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{ // the names of sharedBlockMaps
		"covered_disks":      b.objs.CoveredDisks,
		"disk_totals":        b.objs.DiskTotals,
		"submitters":         b.objs.Submitters,
		"submitter_overflow": b.objs.SubmitterOverflow,
	}
}

// attach attaches completion and requeue before issue, and issue before the
// bio queue: a request issued under the programs always meets its completion.
func (b *blockObjects) attach() error {
	p := &b.objs.BlockPrograms
	for _, a := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"block_rq_complete", p.BlockRqComplete},
		{"block_rq_requeue", p.BlockRqRequeue},
		{"block_rq_issue", p.BlockRqIssue},
		{"block_bio_queue", p.BlockBioQueue},
	} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: a.name, Program: a.prog})
		if err != nil {
			return fmt.Errorf("attaching to raw tracepoint %s (the disk view; set block: false to run without it): %w", a.name, err)
		}
		b.links = append(b.links, l)
	}
	return nil
}

// detach stops counting: the bio queue and issue first, completion last.
func (b *blockObjects) detach() error {
	var errs []error
	for _, l := range slices.Backward(b.links) {
		errs = append(errs, l.Close())
	}
	b.links = nil
	return errors.Join(errs...)
}

func (b *blockObjects) close() error {
	return errors.Join(b.detach(), b.objs.Close())
}

var errNoBlock = errors.New("the disk view is off (block: false)")

// Block reports whether the disks' view is loaded (Options.Block).
func (t *Tracer) Block() bool { return t.block != nil }

// CoveredDisks lists the disks the block programs count.
func (t *Tracer) CoveredDisks() ([]uint32, error) {
	if t.block == nil {
		return nil, errNoBlock
	}
	var (
		out []uint32
		dev uint32
		one uint8
	)
	iter := t.block.objs.CoveredDisks.Iterate()
	for iter.Next(&dev, &one) {
		out = append(out, dev)
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("reading covered_disks: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

// DiskTotals reads each covered disk's running totals, by disk.
func (t *Tracer) DiskTotals() (map[uint32]DiskTotal, error) {
	if t.block == nil {
		return nil, errNoBlock
	}
	out := map[uint32]DiskTotal{}
	var (
		dev   uint32
		total DiskTotal
	)
	iter := t.block.objs.DiskTotals.Iterate()
	for iter.Next(&dev, &total) {
		out[dev] = total
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("reading disk_totals: %w", err)
	}
	return out, nil
}

// DiskOps reads the per-disk, per-operation counts and histograms.
func (t *Tracer) DiskOps() ([]DiskOpStats, error) {
	if t.block == nil {
		return nil, errNoBlock
	}
	var (
		out []DiskOpStats
		key bpf.BlockDiskOpKey
		val bpf.BlockDiskOpStats
	)
	iter := t.block.objs.DiskOps.Iterate()
	for iter.Next(&key, &val) {
		out = append(out, DiskOpStats{
			Dev: key.Dev, Op: DiskOp(key.Op), Completed: val.Completed,
			Service: histCountsOf(bpf.MonitorHist(val.Service)), Queue: histCountsOf(bpf.MonitorHist(val.Queue)),
		})
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("reading disk_ops: %w", err)
	}
	return out, nil
}

// Submitters reads who submitted how much to each covered disk, the overflow entries last.
func (t *Tracer) Submitters() ([]Submitter, error) {
	if t.block == nil {
		return nil, errNoBlock
	}
	var (
		out []Submitter
		key bpf.BlockSubmitterKey
		val bpf.BlockSubmitter
		dev uint32
	)
	iter := t.block.objs.Submitters.Iterate()
	for iter.Next(&key, &val) {
		out = append(out, Submitter{
			Dev: key.Dev, PID: key.Tgid, Comm: commString(val.Comm), CgroupID: val.CgroupId,
			Bytes: val.Bytes, Bios: val.Bios,
		})
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("reading submitters: %w", err)
	}
	iter = t.block.objs.SubmitterOverflow.Iterate()
	for iter.Next(&dev, &val) {
		out = append(out, Submitter{Dev: dev, Bytes: val.Bytes, Bios: val.Bios, Overflow: true})
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("reading submitter_overflow: %w", err)
	}
	return out, nil
}

// SubmitterKey names one process's entry on one disk.
type SubmitterKey struct{ Dev, PID uint32 }

// ForgetSubmitter deletes a process's entry on a disk, for a process that exited
// and whose last counts were read: it makes room for others.
func (t *Tracer) ForgetSubmitter(key SubmitterKey) error {
	if t.block == nil {
		return errNoBlock
	}
	err := t.block.objs.Submitters.Delete(bpf.BlockSubmitterKey{Dev: key.Dev, Tgid: key.PID})
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// BlockCounters reads the block programs' counters.
func (t *Tracer) BlockCounters() (BlockCounters, error) {
	if t.block == nil {
		return BlockCounters{}, errNoBlock
	}
	var c BlockCounters
	for key, dst := range map[bpf.BlockBlockCounter]*uint64{
		bpf.BlockBlockCounterBLOCK_COUNTER_UNTIMED:       &c.Untimed,
		bpf.BlockBlockCounterBLOCK_COUNTER_NO_ISSUE:      &c.NoIssue,
		bpf.BlockBlockCounterBLOCK_COUNTER_NO_START_TIME: &c.NoStartTime,
		bpf.BlockBlockCounterBLOCK_COUNTER_DISKS_FULL:    &c.DisksFull,
	} {
		var perCPU []uint64
		if err := t.block.objs.BlockCounters.Lookup(key, &perCPU); err != nil {
			return BlockCounters{}, fmt.Errorf("reading block counter %d: %w", key, err)
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	return c, nil
}

func commString(c [16]int8) string {
	b := make([]byte, 0, len(c))
	for _, ch := range c {
		if ch == 0 {
			break
		}
		b = append(b, byte(ch))
	}
	return string(b)
}
