//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The disks' view: for each covered disk (covered_disks, see disk.h) and operation,
 * histograms of the device's service time (request issued -> completed) and of the time
 * the kernel held the request before the device got it (request made from its first bio
 * -> issued), the completions /sys/block/<disk>/stat counts, and who submitted the bytes.
 *
 * BTF tracepoints (tp_btf), for the struct request and struct bio themselves, typed, so
 * that their fields are plain loads rather than bpf_probe_read_kernel calls:
 *   block_bio_queue    in the submitting task: its bytes and bios in `submitters`;
 *   block_rq_issue     the request's issue time, parked by request address;
 *   block_rq_requeue   marks a parked request so that its re-issue is not a second request;
 *   block_rq_complete  the service time, and the completion as the kernel's disk stats count it.
 * A bio is counted once where it is queued: a bio merged into a request adds no request,
 * and the parts of a split bio are not queued again. A request counts once, at its final
 * completion; a partial completion (nr_bytes short of what is left) does not end it.
 */
#include "kernel.h"
#include "hist.h"
#include "disk.h"

enum disk_operation {
	DISK_OP_READ = 0,
	DISK_OP_WRITE = 1,
	DISK_OP_FLUSH = 2,
	DISK_OP_DISCARD = 3,
	DISK_OP_MAX = 4,
};

enum block_counter {
	BLOCK_COUNTER_UNTIMED = 0,     /* an issued request that found rq_issued full: no service time */
	BLOCK_COUNTER_NO_ISSUE = 1,      /* a served request whose issue was not seen (issued before the programs were attached) */
	BLOCK_COUNTER_NO_START_TIME = 2, /* an issued request the kernel kept no creation time for: no queue time */
	BLOCK_COUNTER_DISKS_FULL = 3,    /* an event on a covered disk that found disk_totals or disk_ops full */
	BLOCK_COUNTER_MAX = 4,
};

struct disk_op_key {
	__u32 dev;
	__u32 op; /* enum disk_operation */
};

struct disk_op_stats {
	__u64 completed;     /* as /sys/block/<disk>/stat counts them */
	struct hist service; /* issue -> completion; bytes: the bytes the device served */
	struct hist queue;   /* request made -> issued */
};

struct issued {
	__u64 issue_ns;
	__u32 dev;      /* the request's whole disk, covered */
	__u16 requeued; /* 1 between a requeue and the re-issue */
	__u16 reserved;
	__u32 owner; /* the thread that submitted its first bio, when it may be traced; 0 otherwise */
	__u32 reserved2;
};

/* The request operations of include/linux/blk_types.h: UAPI-stable in practice, and the low 8 bits of cmd_flags. */
enum {
	REQ_OP_MASK = 0xff,
	KREQ_OP_READ = 0,
	KREQ_OP_WRITE = 1,
	KREQ_OP_FLUSH = 2,
	KREQ_OP_DISCARD = 3,
	KREQ_OP_ZONE_APPEND = 13,
};

/*
 * Set by the loader from the kernel's BTF before loading:
 * - whether a tracepoint takes the request_queue first. Until 5.11 they all did; 5.10
 *   from 5.10.137 has the request tracepoints' change backported but not block_bio_queue's,
 *   so the two are read apart.
 * - the rq_flags bits the disk stats test: macros until 6.11 (1 << 4, 1 << 13), then
 *   enum rqf_flags, whose values the loader reads where BTF holds the enum.
 */
const volatile bool rq_queue_arg = false;
const volatile bool bio_queue_arg = false;
const volatile __u32 rqf_flush_seq = 1U << 4;
const volatile __u32 rqf_io_stat = 1U << 13;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DISKS_MAX * DISK_OP_MAX);
	__type(key, struct disk_op_key);
	__type(value, struct disk_op_stats);
} disk_ops SEC(".maps");

/*
 * Issued requests by address, until their completion. A plain hash, so that a request
 * that finds it full is counted (BLOCK_COUNTER_UNTIMED); a request is in flight on the
 * device, so the tags of all covered disks bound what it holds.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct issued);
} rq_issued SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BLOCK_COUNTER_MAX);
	__type(key, enum block_counter);
	__type(value, __u64);
} block_counters SEC(".maps");

/*
 * The submitting thread of the bios of threads that may be in a traced call, by bio
 * address, until a request made from them is issued. An LRU: a bio merged into
 * another's request is never looked up again, and ages out.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} bio_owners SEC(".maps");

/* The initial values of new entries: too big for the 512-byte stack. */
struct disk_op_stats empty_op_stats = {};

/* Referenced so that bpf2go can generate the Go types from BTF. */
enum disk_operation unused_disk_operation __attribute__((unused));
enum disk_layout unused_disk_layout __attribute__((unused));

struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

/*
 * A tracepoint's first argument after the request_queue, where it takes one. Each load
 * is written out in assembly at its fixed offset: from C, clang folds the two into one
 * load of ctx->args[after_queue], a ctx pointer moved by a register, which the verifier
 * refuses ("dereference of modified ctx ptr") whenever after_queue is 1 (block_bio_queue
 * on 5.10). The load of args[1] stays in a branch the verifier prunes where the
 * tracepoint has one argument: attaching checks the highest argument a program reads.
 */
static __always_inline __u64 tp_arg(struct bpf_raw_tracepoint_args *ctx, bool after_queue)
{
	__u64 v;
	if (after_queue)
		asm volatile("%[v] = *(u64 *)(%[ctx] + 8)" : [v] "=r"(v) : [ctx] "r"(ctx));
	else
		asm volatile("%[v] = *(u64 *)(%[ctx] + 0)" : [v] "=r"(v) : [ctx] "r"(ctx));
	return v;
}

static __always_inline void block_count(enum block_counter c)
{
	__u64 *v = bpf_map_lookup_elem(&block_counters, &c);
	if (v)
		(*v)++;
}

/*
 * The loads below are of the tracepoints' own typed pointers and what they point to:
 * the verifier turns each into a guarded load (a fault reads zero), no helper call.
 */
static __always_inline struct gendisk *request_disk(struct request *rq)
{
	struct request___gendisk *old = (void *)rq;
	if (bpf_core_field_exists(old->rq_disk))
		return old->rq_disk;
	return rq->q->disk;
}

static __always_inline struct gendisk *bio_disk(struct bio *bio)
{
	struct bio___gendisk *old = (void *)bio;
	if (bpf_core_field_exists(old->bi_disk))
		return old->bi_disk;
	return bio->bi_bdev->bd_disk;
}

/* disk_dev (disk.h) for a typed gendisk pointer. */
static __always_inline __u32 typed_disk_dev(struct gendisk *disk)
{
	if (!disk)
		return 0;
	return (__u32)disk->major << 20 | (__u32)disk->first_minor;
}

/* The disk's running totals, or NULL when the disk is not covered. */
static __always_inline struct disk_total *covered_totals(__u32 dev)
{
	struct disk_total *t = bpf_map_lookup_elem(&disk_totals, &dev);
	if (t || !dev || !bpf_map_lookup_elem(&covered_disks, &dev))
		return t;
	struct disk_total zero = {};
	bpf_map_update_elem(&disk_totals, &dev, &zero, BPF_NOEXIST);
	t = bpf_map_lookup_elem(&disk_totals, &dev);
	if (!t)
		block_count(BLOCK_COUNTER_DISKS_FULL);
	return t;
}

/* A covered disk's operation's statistics, or NULL when the disk is not covered: one look-up once it has them. */
static __always_inline struct disk_op_stats *covered_op_stats(__u32 dev, __u32 op)
{
	struct disk_op_key key = {.dev = dev, .op = op};
	struct disk_op_stats *s = bpf_map_lookup_elem(&disk_ops, &key);
	if (s || !dev || !bpf_map_lookup_elem(&covered_disks, &dev))
		return s;
	bpf_map_update_elem(&disk_ops, &key, &empty_op_stats, BPF_NOEXIST);
	s = bpf_map_lookup_elem(&disk_ops, &key);
	if (!s)
		block_count(BLOCK_COUNTER_DISKS_FULL);
	return s;
}

/* Whether a bio or request of this operation moves data: reads, writes and zone appends. */
static __always_inline bool data_op(__u32 op)
{
	return op == KREQ_OP_READ || op == KREQ_OP_WRITE || op == KREQ_OP_ZONE_APPEND;
}

/* The statistics group of a request operation, as the kernel's op_stat_group and flush accounting use. */
static __always_inline __u32 disk_op(unsigned int cmd_flags)
{
	__u32 op = cmd_flags & REQ_OP_MASK;
	if (op == KREQ_OP_FLUSH)
		return DISK_OP_FLUSH;
	if (op == KREQ_OP_DISCARD)
		return DISK_OP_DISCARD;
	return op & 1 ? DISK_OP_WRITE : DISK_OP_READ;
}

/*
 * Whether the kernel's disk stats count this final completion: a flush request always
 * (the flush machinery's own request, counted as a flush), any other request when the
 * queue keeps I/O statistics for it and it is not inside a flush sequence. A write with
 * a preflush completes twice: its data part inside the sequence (not counted), then the
 * whole request once the sequence is done (counted, with nothing left to complete).
 */
static __always_inline bool stat_counted(unsigned int rq_flags, __u32 op)
{
	if (op == DISK_OP_FLUSH)
		return true;
	return (rq_flags & (rqf_flush_seq | rqf_io_stat)) == rqf_io_stat;
}

/*
 * Notes who submitted a bio when the submitter may be inside a traced call: a thread
 * that ever parked one has task storage (5.11+); before 5.11 every thread may. A bio held
 * back by a cgroup's throttle reaches this tracepoint later, from a kernel worker: it is
 * not the call's, and its time all counts as before the device, where it was held.
 */
static __always_inline void note_owner(struct bio *bio)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (bpf_core_field_exists(task->bpf_storage) && !BPF_CORE_READ(task, bpf_storage))
		return;
	__u64 key = (__u64)bio;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_update_elem(&bio_owners, &key, &tid, BPF_ANY);
}

/* Adds a served request's device time to its owner's own I/O. */
static __always_inline void add_owner_io(__u32 owner, __u64 service)
{
	struct thread_io *io = bpf_map_lookup_elem(&thread_ios, &owner);
	if (!io) {
		struct thread_io zero = {};
		bpf_map_update_elem(&thread_ios, &owner, &zero, BPF_NOEXIST);
		io = bpf_map_lookup_elem(&thread_ios, &owner);
		if (!io)
			return;
	}
	__sync_fetch_and_add(&io->device_ns, service);
}

SEC("tp_btf/block_bio_queue")
int block_bio_queue(struct bpf_raw_tracepoint_args *ctx)
{
	struct bio *bio = (struct bio *)tp_arg(ctx, bio_queue_arg);
	__u32 dev = typed_disk_dev(bio_disk(bio));
	struct disk_total *t = covered_totals(dev);
	if (!t)
		return 0;
	/* A discard's or a write-zeroes' size is the range it frees or zeroes, not data moved to
	 * or from the disk: its bio counts, its bytes do not (an unlinked 1 GiB file on a disk
	 * mounted with discard would otherwise make its unlinker the disk's top writer). */
	__u64 bytes = data_op(bio->bi_opf & REQ_OP_MASK) ? bio->bi_iter.bi_size : 0;
	__sync_fetch_and_add(&t->bytes_submitted, bytes);
	note_owner(bio);

	struct submitter_key key = {.dev = dev, .tgid = bpf_get_current_pid_tgid() >> 32};
	struct submitter *s = bpf_map_lookup_elem(&submitters, &key);
	if (!s) {
		struct submitter fresh = {.cgroup_id = bpf_get_current_cgroup_id()};
		bpf_get_current_comm(fresh.comm, sizeof(fresh.comm));
		/* EEXIST: another CPU added it first; E2BIG: full, and the bytes go to the disk's overflow entry. */
		bpf_map_update_elem(&submitters, &key, &fresh, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&submitters, &key);
		if (!s) {
			struct submitter zero = {};
			bpf_map_update_elem(&submitter_overflow, &dev, &zero, BPF_NOEXIST);
			s = bpf_map_lookup_elem(&submitter_overflow, &dev);
			if (!s)
				return 0;
		}
	}
	__sync_fetch_and_add(&s->bytes, bytes);
	__sync_fetch_and_add(&s->bios, 1);
	return 0;
}

SEC("tp_btf/block_rq_issue")
int block_rq_issue(struct bpf_raw_tracepoint_args *ctx)
{
	struct request *rq = (struct request *)tp_arg(ctx, rq_queue_arg);
	__u32 dev = typed_disk_dev(request_disk(rq));
	struct disk_op_stats *s = covered_op_stats(dev, disk_op(rq->cmd_flags));
	if (!s)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 key = (__u64)rq;
	struct issued v = {.issue_ns = now, .dev = dev};
	__u64 first_bio = (__u64)rq->bio;
	__u32 *owner = first_bio ? bpf_map_lookup_elem(&bio_owners, &first_bio) : NULL;
	if (owner) {
		v.owner = *owner;
		bpf_map_delete_elem(&bio_owners, &first_bio);
	}
	if (bpf_map_update_elem(&rq_issued, &key, &v, BPF_NOEXIST)) {
		/* Parked already: requeued, or left by a request that never completed. */
		struct issued *parked = bpf_map_lookup_elem(&rq_issued, &key);
		if (parked && parked->requeued) {
			/* The same request again: its service time starts over, its queue time was counted. */
			parked->issue_ns = now;
			parked->requeued = 0;
			return 0;
		}
		if (!parked || bpf_map_update_elem(&rq_issued, &key, &v, BPF_ANY))
			block_count(BLOCK_COUNTER_UNTIMED);
	}
	__u64 start = rq->start_time_ns;
	if (!start || start > now) {
		block_count(BLOCK_COUNTER_NO_START_TIME);
		return 0;
	}
	hist_observe(&s->queue, now - start, 0);
	return 0;
}

SEC("tp_btf/block_rq_requeue")
int block_rq_requeue(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 key = tp_arg(ctx, rq_queue_arg);
	struct issued *parked = bpf_map_lookup_elem(&rq_issued, &key);
	if (parked)
		parked->requeued = 1;
	return 0;
}

/* block_rq_complete(struct request *rq, blk_status_t error, unsigned int nr_bytes): the same on every kernel. */
SEC("tp_btf/block_rq_complete")
int block_rq_complete(struct bpf_raw_tracepoint_args *ctx)
{
	struct request *rq = (struct request *)ctx->args[0];
	unsigned int nr_bytes = ctx->args[2];
	if (nr_bytes < rq->__data_len)
		return 0; /* a partial completion: the request goes on */
	__u32 op = disk_op(rq->cmd_flags);
	bool counted = stat_counted(rq->rq_flags, op);

	/* A request issued on a covered disk names its disk in its entry: no reads through the request. */
	__u64 key = (__u64)rq;
	struct issued *parked = bpf_map_lookup_elem(&rq_issued, &key);
	__u64 service = 0;
	__u32 dev;
	__u32 owner = 0;
	if (parked) {
		__u64 now = bpf_ktime_get_ns();
		service = now > parked->issue_ns ? now - parked->issue_ns : 0;
		dev = parked->dev;
		owner = parked->owner;
		bpf_map_delete_elem(&rq_issued, &key);
	} else if (!counted) {
		return 0;
	} else {
		dev = typed_disk_dev(request_disk(rq));
	}
	struct disk_total *t = covered_totals(dev);
	if (!t)
		return 0;
	struct disk_op_stats *s = covered_op_stats(dev, op);
	if (!s)
		return 0;
	if (counted) {
		__sync_fetch_and_add(&s->completed, 1);
		__sync_fetch_and_add(&t->requests_completed, 1);
	}
	if (parked) {
		hist_observe(&s->service, service, nr_bytes);
		__sync_fetch_and_add(&t->device_ns, service);
		if (op == DISK_OP_FLUSH)
			__sync_fetch_and_add(&t->flush_device_ns, service);
		if (owner)
			add_owner_io(owner, service);
	} else if (nr_bytes) {
		/* Served data without a seen issue; a request that ends a flush sequence has none left. */
		block_count(BLOCK_COUNTER_NO_ISSUE);
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
