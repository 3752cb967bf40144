//go:build linux && (amd64 || arm64)

package tracer

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
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

// loadBlock loads block.c, its maps pinned at p or, taking over, only the maps
// pinned there; the syscall object then shares its maps (sharedBlockMaps).
func loadBlock(opts Options, p *pinned) (*blockObjects, error) {
	spec, err := bpf.LoadBlock()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded block BPF object: %w", err)
	}
	k, err := readBlockKernel()
	if err != nil {
		return nil, err
	}
	for name, v := range map[string]any{
		"rq_queue_arg": k.rqQueueArg, "bio_queue_arg": k.bioQueueArg,
		"rqf_flush_seq": k.flushSeq, "rqf_io_stat": k.ioStat,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("setting %s in the block BPF object: %w", name, err)
		}
	}
	fitAtomicsToKernel(spec)
	b := &blockObjects{}
	var loadOpts *ebpf.CollectionOptions
	var objs any = &b.objs
	if p != nil {
		pinMaps(spec)
		loadOpts = &ebpf.CollectionOptions{}
		if loadOpts.Maps.PinPath, err = p.mapDir(pinBlockDir); err != nil {
			return nil, err
		}
		if p.takeover {
			objs = &b.objs.BlockMaps
		}
	}
	if err := spec.LoadAndAssign(objs, loadOpts); err != nil {
		return nil, explainLoadError(err)
	}
	for _, name := range opts.Disks {
		d, err := host.ResolveDisk(name)
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

// blockKernel is what block.c must know of the running kernel before it loads,
// read from the kernel's BTF so that backports are seen as they are, not guessed
// from the version.
type blockKernel struct {
	// Whether the request tracepoints and block_bio_queue take the request_queue
	// first, as before 5.11. 5.10 from 5.10.137 has the request tracepoints'
	// change backported, not block_bio_queue's, so each is read on its own.
	rqQueueArg, bioQueueArg bool
	// The rq_flags bits of a request in a flush sequence and of one the disk
	// stats count.
	flushSeq, ioStat uint32
}

func readBlockKernel() (blockKernel, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return blockKernel{}, fmt.Errorf("reading the kernel's BTF for the block tracepoints: %w", err)
	}
	var k blockKernel
	if k.rqQueueArg, err = takesQueue(spec, "block_rq_issue"); err != nil {
		return k, err
	}
	if k.bioQueueArg, err = takesQueue(spec, "block_bio_queue"); err != nil {
		return k, err
	}
	k.flushSeq, k.ioStat = requestFlagBits(spec, kernelAtLeast(6, 12))
	return k, nil
}

// takesQueue reports whether the block tracepoint's prototype in BTF is
// (q, rq or bio) rather than (rq or bio).
func takesQueue(spec *btf.Spec, tracepoint string) (bool, error) {
	var proto *btf.Typedef
	if err := spec.TypeByName("btf_trace_"+tracepoint, &proto); err != nil {
		return false, fmt.Errorf("the kernel's BTF has no %s tracepoint (%w): "+
			"the disk view needs CONFIG_BLOCK and block tracepoints; set block: false to run without it", tracepoint, err)
	}
	ptr, ok := proto.Type.(*btf.Pointer)
	var fn *btf.FuncProto
	if ok {
		fn, ok = ptr.Target.(*btf.FuncProto)
	}
	if !ok {
		return false, fmt.Errorf("btf_trace_%s in the kernel's BTF is %v, not a function pointer", tracepoint, proto.Type)
	}
	// The first parameter is the tracepoint's private data.
	switch len(fn.Params) {
	case 3:
		return true, nil
	case 2:
		return false, nil
	}
	return false, fmt.Errorf("%s takes %d arguments in the kernel's BTF; this build knows (q, x) and (x)", tracepoint, len(fn.Params)-1)
}

// requestFlagBits are RQF_FLUSH_SEQ and RQF_IO_STAT. From 6.12 the kernel numbers
// them in enum rqf_flags, which its BTF holds only where some type uses it (6.18
// here, not Debian's 6.12); where it is missing, the values 6.12 to 6.18 share.
// Before 6.12 they are macros that did not move from 4.x on.
func requestFlagBits(spec *btf.Spec, enumEra bool) (flushSeq, ioStat uint32) {
	var e *btf.Enum
	if err := spec.TypeByName("rqf_flags", &e); err == nil {
		flushSeq, ioStat = 1<<1, 1<<8
		for _, v := range e.Values {
			switch v.Name {
			case "__RQF_FLUSH_SEQ":
				flushSeq = 1 << v.Value
			case "__RQF_IO_STAT":
				ioStat = 1 << v.Value
			}
		}
		return flushSeq, ioStat
	}
	if enumEra {
		return 1 << 1, 1 << 8
	}
	return 1 << 4, 1 << 13
}

// sharedBlockMaps are the block object's maps the syscall object declares too (disk.h).
var sharedBlockMaps = []string{"covered_disks", "disk_totals", "submitters", "submitter_overflow", "thread_ios"}

// sharedMaps hands the block object's maps to the syscall object, by name.
func (b *blockObjects) sharedMaps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{ // the names of sharedBlockMaps
		"covered_disks":      b.objs.CoveredDisks,
		"disk_totals":        b.objs.DiskTotals,
		"submitters":         b.objs.Submitters,
		"submitter_overflow": b.objs.SubmitterOverflow,
		"thread_ios":         b.objs.ThreadIos,
	}
}

// attach attaches completion and requeue before issue, and issue before the
// bio queue: a request issued under the programs always meets its completion.
// Taking over p, it opens the pinned links instead.
func (b *blockObjects) attach(p *pinned) error {
	progs := &b.objs.BlockPrograms
	for _, a := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"block_rq_complete", progs.BlockRqComplete},
		{"block_rq_requeue", progs.BlockRqRequeue},
		{"block_rq_issue", progs.BlockRqIssue},
		{"block_bio_queue", progs.BlockBioQueue},
	} {
		if err := hold(p, a.name, func() (link.Link, error) {
			l, err := link.AttachTracing(link.TracingOptions{Program: a.prog})
			if err != nil {
				return nil, fmt.Errorf("attaching to BTF tracepoint %s (the disks' view; set block: false to run without it): %w", a.name, err)
			}
			return l, nil
		}, &b.links); err != nil {
			return err
		}
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
