//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * One record per completed write or sync syscall of the traced process, and latency
 * histograms of every such call.
 *
 * Enter programs filter first (cgroup, PID set, process name, executable) and park the
 * arguments with the thread: in its task storage where the kernel has it (5.11+), else in
 * `inflight`, keyed by thread id. Go runs syscalls on many threads, so a process id would
 * pair one thread's enter with another's exit. Exit programs look the
 * call up, resolve the fd to its kind (and, for files, a class from the name), count the
 * call in a histogram, and emit a fixed-size record for the calls the selection keeps.
 * Nothing is lost silently: a full ring buffer, a full inflight map and a process over its
 * budget are counted per CPU, and per process in `losses`.
 *
 * With the scheduler part on, a record also says where the call's time went: on the CPU,
 * runnable but waiting for one, or blocked, and blocked on what (wait.h). See on_switch.
 */
#include "kernel.h"
#include "hist.h"
#include "disk.h"
#include "wait.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define COMM_LEN 16
#define FILE_NAME_LEN 48

/* Shared with Go through BTF: bump RECORD_VERSION on any change to struct event. */
enum record_layout {
	RECORD_VERSION = 3,
	PAYLOAD_MAX = 256,
};

/* Which optional parts of a record hold measurements (struct event.measured). */
enum record_measured {
	MEASURED_SCHED = 1,     /* wait_ns and other_wait_ip */
	MEASURED_IO_DEVICE = 2, /* io_device_ns */
};

enum syscall_type {
	SYSCALL_WRITE = 1,
	SYSCALL_PWRITE64 = 2,
	SYSCALL_WRITEV = 3,
	SYSCALL_PWRITEV = 4,
	SYSCALL_FSYNC = 5,
	SYSCALL_FDATASYNC = 6,
	SYSCALL_SYNC_FILE_RANGE = 7,
};

enum fd_kind {
	FD_KIND_UNKNOWN = 0, /* the fd was closed before the syscall returned */
	FD_KIND_FILE = 1,
	FD_KIND_SOCKET = 2,
	FD_KIND_PIPE = 3,
	FD_KIND_EVENTFD = 4,
	FD_KIND_DIRECTORY = 5,
	FD_KIND_OTHER = 6,
};

/* What the histograms can tell files apart by: a suffix of the base name, or the name itself. */
enum file_class {
	FILE_CLASS_NONE = 0,  /* not a file or directory */
	FILE_CLASS_WAL = 1,   /* *.wal, or a directory named wal */
	FILE_CLASS_SNAP = 2,  /* *.snap, or a directory named snap */
	FILE_CLASS_DB = 3,    /* db (bbolt) or *.db */
	FILE_CLASS_TMP = 4,   /* *.tmp (a WAL segment being preallocated) */
	FILE_CLASS_OTHER = 5, /* any other name */
};

enum counter {
	COUNTER_RINGBUF_FULL = 0,  /* a completed syscall whose record found no room */
	COUNTER_INFLIGHT_FULL = 1, /* an enter that could not be parked, so no record */
	COUNTER_CALLS = 2,         /* completed traced syscalls, whether they became records or not */
	COUNTER_OVER_BUDGET = 3,   /* a selected call dropped because its process was over budget */
	COUNTER_UNATTRIBUTED = 4,  /* a loss counted above that found no room in `losses` */
	COUNTER_MAX = 5,
};

/* A process's losses by reason. */
struct loss {
	__u64 over_budget;
	__u64 ringbuf_full;
};

/* A process's budget: when (CLOCK_MONOTONIC ns) it will have paid for its records. */
struct budget {
	__u64 paid_until;       /* at budget_interval_ns a record */
	__u64 share_paid_until; /* at PRESSURE_SHARE times that */
};

/* An executable file as the kernel names it: inode number and its file system's s_dev. */
struct exe_id {
	__u64 ino;
	__u32 dev; /* MAJOR << 20 | MINOR */
	__u32 reserved;
};

/* Naturally aligned, no implicit padding: every byte is written before submit. */
struct event {
	__u16 version;
	__u16 type;        /* enum syscall_type */
	__u8 fd_kind;      /* enum fd_kind */
	__u8 reserved;
	__u16 payload_len; /* bytes of payload that follow the record */
	__u32 pid;         /* tgid, host pid namespace */
	__u32 tid;
	__s32 fd;
	__u32 dev;         /* device of the file's file system, kernel encoding (MAJOR << 20 | MINOR) */
	__u64 cgroup_id;
	__u64 inode;
	__u64 count;       /* bytes requested; iovec count for writev/pwritev */
	__s64 offset;      /* -1 where the syscall takes none */
	__s64 ret;         /* bytes written, 0, or -errno */
	__u64 start_ns;    /* CLOCK_MONOTONIC at entry */
	__u64 duration_ns;
	char comm[COMM_LEN];
	char file_name[FILE_NAME_LEN];
	/* Where the call's time went (MEASURED_SCHED): duration_ns less their sum is the time on a CPU. */
	__u64 wait_ns[WAIT_KINDS]; /* off the CPU, by enum wait_kind */
	/* Of the waits for its own I/O (flush, writeback, metadata), the time its own requests
	 * were on the device; the rest they spent before it, in the kernel. */
	__u64 io_device_ns;
	__u64 other_wait_ip; /* the function the longest WAIT_OTHER wait was in, 0 for none */
	__u32 measured;      /* enum record_measured bits */
	__u32 reserved2;
};

/* A call's time off the CPU so far (on_switch). */
struct call_waits {
	__u64 run_delay_out; /* the thread's run_delay when it left the CPU */
	__u64 pending_ip;    /* the unknown wait function of the interval off the CPU now */
	__u32 pending;       /* enum wait_kind of the interval off the CPU now */
	__u32 reserved;
	__u64 ns[WAIT_KINDS];
	__u64 other_ip;     /* the function of the longest WAIT_OTHER interval */
	__u64 other_max_ns; /* and its length */
	/* With the disks' view: what its own I/O spent on the device. */
	__u64 own_device_out;   /* the thread's own device time (thread_ios) at the first switch out */
	__u64 flush_device_out; /* the flush disk's flush device time when the pending flush wait began */
	__u64 flush_device_ns;  /* the flushes' device time during the call's flush waits */
	__u32 flush_disk;       /* the disk of the pending flush wait: the call's file's */
	__u32 reserved2;
};

struct inflight {
	__u64 start_ns;
	__u64 buf; /* user pointer: the data, or the iovec array */
	__u64 count;
	__s64 offset;
	__s32 fd;
	__u16 type;
	__u16 reserved;
	/* With the scheduler part: when the thread last left the CPU inside the call, 0 while
	 * it has not. The waits are set at the first switch out, so that a call that never
	 * leaves the CPU writes nothing more than the fields above. */
	__u64 out_ns;
	/* In task storage: when the thread last got a CPU back inside the call (on_switch). */
	__u64 in_ns;
	struct call_waits waits;
};

/* The time off the CPU of the calls counted in `hists`, by key: what the histograms' sums hold besides time on a CPU. */
struct wait_times {
	__u64 ns[WAIT_KINDS];
	__u64 io_device_ns;
};

struct hist_key {
	__u32 tgid;
	__u8 type;       /* enum syscall_type */
	__u8 fd_kind;    /* enum fd_kind */
	__u8 file_class; /* enum file_class */
	__u8 reserved;
};


/* Set by the loader before the program is verified: the verifier prunes unused branches. */
const volatile char target_comm[COMM_LEN] = {}; /* all zero: any name */
const volatile __u64 target_cgroup_id = 0;      /* 0: any cgroup */
const volatile bool filter_pids = false;        /* true: only tgids in target_pids */
const volatile __u32 payload_bytes = 0;         /* 0..PAYLOAD_MAX */
const volatile __u32 payload_room = 0;          /* payload_bytes rounded up to 8: the record's payload area */
const volatile __u64 record_space = 8;          /* ring space one record takes, header included */
const volatile __u64 wakeup_bytes = 1;          /* wake the reader once per this much new data */
const volatile bool histograms = false;         /* count every traced call in `hists` */
const volatile __u64 min_duration_ns = 0;       /* records only for calls at least this slow */
const volatile __u32 fd_kinds = 0xff;           /* records only for fds of these kinds (bit 1 << kind) */
const volatile bool filter_exe = false;         /* true: only tasks running a file in target_exes */
const volatile __u64 budget_interval_ns = 0;    /* budget one record costs, 1e9 / rate; 0: no budget */
const volatile __u64 budget_burst_ns = 0;       /* burst * budget_interval_ns */
const volatile __u64 pressure_bytes = 0;        /* queued data above which the ring is under pressure */
const volatile bool task_storage = false;       /* true: park calls in `inflight_task` (5.11+), else `inflight` */
const volatile bool learn_disks = false;        /* add the disks of the files traced calls write to covered_disks */
const volatile bool scheduler = false;          /* true: on_switch is attached; records say where the time went */
const volatile bool own_io = false;             /* true: the disks' maps are block.c's: own I/O's device time is known */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} target_pids SEC(".maps");

/* The allowed executables: more than one while an upgraded binary replaces a running one. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, struct exe_id);
	__type(value, __u8);
} target_exes SEC(".maps");

/*
 * Each traced process's buckets (see within_budget). An LRU: evicting a process's
 * entry forgives its debt, it never loses a record.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct budget);
} budgets SEC(".maps");

/* Losses per process (tgid); user space reads them and deletes exited processes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct loss);
} losses SEC(".maps");

/*
 * A plain hash, not an LRU: an LRU would evict a parked call silently when full, and the
 * lost record could not be counted. Entries cannot leak: every syscall that ran an enter
 * program also runs the exit one (exits are attached first and detached last).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct inflight);
} inflight SEC(".maps");

/*
 * The same slot in the thread's own task storage: no hashing, no bucket lock, no
 * delete, and an untraced thread's exit finds no storage at once. It goes with the
 * task. On kernels without it the loader replaces this map with a stub and leaves
 * task_storage false: the verifier then never visits the calls that use it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct inflight);
} inflight_task SEC(".maps");

/* Without task storage: when the running task of each CPU was switched in (CLOCK_MONOTONIC ns), written by on_switch. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} switched_in SEC(".maps");

/* The super block whose disk learn_disk covered last on each CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} learnt_sb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, enum counter);
	__type(value, __u64);
} counters SEC(".maps");

/*
 * Shared by all CPUs and updated with atomic adds, as biolatency does: a per-CPU map
 * would multiply the 1 KiB value by every possible CPU. 512 entries x ~1.1 KiB stay
 * under 600 KiB. Keys of exited processes are deleted by user space.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HIST_MAX_ENTRIES);
	__type(key, struct hist_key);
	__type(value, struct hist);
} hists SEC(".maps");

/* Where calls go when `hists` is full, so that none goes uncounted. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hist);
} hist_overflow SEC(".maps");

/* The time off the CPU of the histograms' calls, by the same keys; deleted with them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HIST_MAX_ENTRIES);
	__type(key, struct hist_key);
	__type(value, struct wait_times);
} waits SEC(".maps");

/* The initial value of a new histogram: too big for the 512-byte stack. */
struct hist empty_hist = {};

/* Referenced so that bpf2go can generate the Go types from BTF. */
struct event *unused_event __attribute__((unused));
enum syscall_type unused_syscall_type __attribute__((unused));
enum fd_kind unused_fd_kind __attribute__((unused));
enum record_layout unused_record_layout __attribute__((unused));
enum file_class unused_file_class __attribute__((unused));
enum hist_layout unused_hist_layout __attribute__((unused));
enum record_measured unused_record_measured __attribute__((unused));
enum wait_kind unused_wait_kind __attribute__((unused));
enum wait_layout unused_wait_layout __attribute__((unused));
struct wait_page *unused_wait_page __attribute__((unused));
struct wait_text *unused_wait_text __attribute__((unused));

static __always_inline void count(enum counter c)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &c);
	if (v)
		(*v)++;
}

static __always_inline bool comm_matches(void)
{
	if (target_comm[0] == 0)
		return true;
	char comm[COMM_LEN];
	bpf_get_current_comm(comm, sizeof(comm));
#pragma unroll
	for (int i = 0; i < COMM_LEN; i++) {
		if (comm[i] != target_comm[i])
			return false;
		if (comm[i] == 0)
			return true;
	}
	return true;
}

/* A name can be chosen by anyone; the executable's inode cannot. */
static __always_inline bool exe_matches(void)
{
	if (!filter_exe)
		return true;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);
	struct exe_id id = {
		.ino = BPF_CORE_READ(inode, i_ino), /* 0 for a kernel thread: never allowed */
		.dev = BPF_CORE_READ(inode, i_sb, s_dev),
	};
	return bpf_map_lookup_elem(&target_exes, &id) != NULL;
}

static __always_inline bool traced(__u64 pid_tgid)
{
	if (target_cgroup_id && bpf_get_current_cgroup_id() != target_cgroup_id)
		return false;
	if (filter_pids) {
		__u32 tgid = pid_tgid >> 32;
		if (!bpf_map_lookup_elem(&target_pids, &tgid))
			return false;
	}
	return comm_matches() && exe_matches();
}

/* Counts a lost record in total (c) and against its process. */
static __always_inline void count_loss(__u32 tgid, enum counter c)
{
	count(c);
	struct loss *l = bpf_map_lookup_elem(&losses, &tgid);
	if (!l) {
		struct loss zero = {};
		bpf_map_update_elem(&losses, &tgid, &zero, BPF_NOEXIST);
		l = bpf_map_lookup_elem(&losses, &tgid);
		if (!l) {
			count(COUNTER_UNATTRIBUTED);
			return;
		}
	}
	if (c == COUNTER_OVER_BUDGET)
		__sync_fetch_and_add(&l->over_budget, 1);
	else
		__sync_fetch_and_add(&l->ringbuf_full, 1);
}

/* Under pressure a process gets this fraction of its budget (see within_budget). */
#define PRESSURE_SHARE 10

/*
 * Charges one record to a token bucket kept as the time its debt runs out (GCRA): a
 * record costs interval ns, and the bucket runs at most burst ns ahead of the clock.
 * Returns how far ahead it was before this record. The charge is an atomic add, so
 * threads of one process on several CPUs cannot overspend together; only resetting an
 * idle bucket is a plain store, which can forget another CPU's concurrent charge while
 * the process is within its budget.
 */
static __always_inline __u64 charge(__u64 *paid_until, __u64 now, __u64 interval, __u64 burst)
{
	__u64 until = *paid_until;
	if (until <= now) {
		*paid_until = now + interval;
		return 0;
	}
	__u64 ahead = until - now;
	if (ahead + interval <= burst)
		__sync_fetch_and_add(paid_until, interval);
	return ahead;
}

/*
 * Two buckets per process. The budget: a record beyond it is dropped. The share, a
 * tenth of the budget: while the ring is more than half full, a process that has spent
 * over half of its share's burst loses its records, so that the heaviest producer, not
 * the ring, decides who loses, even when every process is within its budget.
 */
static __always_inline bool within_budget(__u32 tgid, __u64 now)
{
	if (!budget_interval_ns)
		return true;
	struct budget *b = bpf_map_lookup_elem(&budgets, &tgid);
	if (!b) {
		struct budget fresh = {
			.paid_until = now + budget_interval_ns,
			.share_paid_until = now + budget_interval_ns * PRESSURE_SHARE,
		};
		bpf_map_update_elem(&budgets, &tgid, &fresh, BPF_ANY);
		return true;
	}
	if (charge(&b->paid_until, now, budget_interval_ns, budget_burst_ns) + budget_interval_ns > budget_burst_ns)
		return false;
	__u64 share_burst = budget_burst_ns * PRESSURE_SHARE;
	return charge(&b->share_paid_until, now, budget_interval_ns * PRESSURE_SHARE, share_burst) <= share_burst / 2 ||
	       bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) <= pressure_bytes;
}

/* The file open at fd in the current task's table, or NULL. */
static __always_inline struct file *fd_file(__s32 fd)
{
	struct fdtable *fdt;
	unsigned int max_fds;
	struct file **fds;
	if (task_storage) {
		/* A BTF pointer (5.11+): plain loads, which the verifier turns into fault-safe ones. */
		struct task_struct *task = bpf_get_current_task_btf();
		fdt = task->files->fdt;
		max_fds = fdt->max_fds;
		fds = fdt->fd;
	} else {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		fdt = BPF_CORE_READ(task, files, fdt);
		max_fds = fdt ? BPF_CORE_READ(fdt, max_fds) : 0;
		fds = fdt ? BPF_CORE_READ(fdt, fd) : NULL;
	}
	if (!fds || fd < 0 || (__u32)fd >= max_fds)
		return NULL;
	struct file *file = NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

/* The current thread's time spent runnable but waiting for a CPU, as the scheduler counts it. */
static __always_inline __u64 run_delay(void)
{
	if (task_storage)
		return bpf_get_current_task_btf()->sched_info.run_delay;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(task, sched_info.run_delay);
}

/* When the current thread got this CPU: the time of the CPU's last switch, or 0 before the first one seen. */
static __always_inline __u64 cpu_switched_in(void)
{
	__u32 zero = 0;
	__u64 *in = bpf_map_lookup_elem(&switched_in, &zero);
	return in ? *in : 0;
}

/* The device time of the current thread's own requests so far (block.c counts it). */
static __always_inline __u64 own_device_ns(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct thread_io *io = bpf_map_lookup_elem(&thread_ios, &tid);
	return io ? io->device_ns : 0;
}

/* The device time of a disk's flushes so far, 0 for a disk the block programs do not count. */
static __always_inline __u64 flush_device_ns(__u32 dev)
{
	struct disk_total *t = dev ? bpf_map_lookup_elem(&disk_totals, &dev) : NULL;
	return t ? t->flush_device_ns : 0;
}

/*
 * Ends the call's last interval off the CPU, from its switch out to in_ns, when the
 * current thread got the CPU back: run once the thread runs again, at its next switch
 * out or its exit, when the scheduler has added the interval's wait for a CPU to its
 * run_delay. Of the interval, that growth is runnable and the rest blocked on what the
 * switch out found; a thread preempted, not blocked, was runnable throughout.
 */
static __always_inline void settle_interval(__u64 out_ns, struct call_waits *w, __u64 in_ns)
{
	__u64 off = in_ns > out_ns ? in_ns - out_ns : 0;
	__u64 runnable = run_delay() - w->run_delay_out;
	if (runnable > off || w->pending == WAIT_RUNNABLE)
		runnable = off;
	__u64 blocked = off - runnable;
	w->ns[WAIT_RUNNABLE] += runnable;
	__u32 kind = w->pending;
	/* Constant offsets only: 5.10's verifier refuses a variable offset into the stack. */
#pragma unroll
	for (int i = 1; i < WAIT_KINDS; i++) {
		if (i == kind)
			w->ns[i] += blocked;
	}
	/* A flush is the whole device's: the flushes served while the call waited for its own were its. */
	if (own_io && kind == WAIT_FLUSH) {
		__u64 served = flush_device_ns(w->flush_disk) - w->flush_device_out;
		w->flush_device_ns += served < blocked ? served : blocked;
	}
	if (kind == WAIT_OTHER && blocked > w->other_max_ns) {
		w->other_max_ns = blocked;
		w->other_ip = w->pending_ip;
	}
}

static __always_inline int on_enter(enum syscall_type type, __u64 fd, __u64 buf, __u64 count_arg,
				    __s64 offset)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!traced(pid_tgid))
		return 0;

	__u32 tid = (__u32)pid_tgid;
	struct inflight call = {
		.start_ns = bpf_ktime_get_ns(),
		.buf = buf,
		.count = count_arg,
		.offset = offset,
		.fd = (__s32)fd,
		.type = type,
	};
	if (task_storage) {
		struct inflight *slot = bpf_task_storage_get(&inflight_task, bpf_get_current_task_btf(), NULL,
							     BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!slot) {
			count(COUNTER_INFLIGHT_FULL);
			return 0;
		}
		/* The call's own fields only: the waits are written at its first switch out, if any. */
		slot->start_ns = call.start_ns;
		slot->buf = call.buf;
		slot->count = call.count;
		slot->offset = call.offset;
		slot->fd = call.fd;
		slot->type = call.type;
		slot->out_ns = 0;
		return 0;
	}
	if (bpf_map_update_elem(&inflight, &tid, &call, BPF_ANY))
		count(COUNTER_INFLIGHT_FULL);
	return 0;
}

/*
 * Takes the thread's parked call into *call and the time it returned into *now; false
 * when it has none (a slot with start_ns 0 is empty). The clock is read only then.
 * *waits is the call's waits, valid when call->out_ns is set: in the thread's task
 * storage, which stays as it is until the thread's next call, or else copied into *call.
 */
static __always_inline bool unpark(struct inflight *call, __u64 *now, struct call_waits **waits)
{
	*waits = &call->waits;
	if (task_storage) {
		struct task_struct *task = bpf_get_current_task_btf();
		/* A thread that never parked a call has no task storage at all: most threads, read without a call. */
		if (bpf_core_field_exists(task->bpf_storage) && !task->bpf_storage)
			return false;
		struct inflight *slot = bpf_task_storage_get(&inflight_task, task, NULL, 0);
		if (!slot || !slot->start_ns)
			return false;
		*now = bpf_ktime_get_ns();
		call->start_ns = slot->start_ns;
		call->buf = slot->buf;
		call->count = slot->count;
		call->offset = slot->offset;
		call->fd = slot->fd;
		call->type = slot->type;
		call->out_ns = slot->out_ns;
		call->in_ns = slot->in_ns;
		*waits = &slot->waits;
		slot->start_ns = 0;
		return true;
	}
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct inflight *parked = bpf_map_lookup_elem(&inflight, &tid);
	if (!parked)
		return false;
	*now = bpf_ktime_get_ns();
	*call = *parked;
	bpf_map_delete_elem(&inflight, &tid);
	return true;
}

/*
 * An fd as the exit program sees it; file is NULL when the fd was gone. Not a kernel type:
 * copy its pointers to locals before BPF_CORE_READ, which would record a relocation
 * against this struct for any access written inside it.
 */
struct fd_desc {
	struct file *file;
	struct inode *inode;
	struct super_block *sb;
	struct qstr name; /* the dentry's name; name.name is NULL until read_name */
	__u8 kind;        /* enum fd_kind */
};

/* Reads the base name once, for whichever of the file class and the record needs it first. */
static __always_inline void read_name(struct fd_desc *d)
{
	struct file *file = d->file;
	if (!d->name.name)
		d->name = BPF_CORE_READ(file, f_path.dentry, d_name);
}

/* Looks fd up in the current task's table and classifies it; reads no name but an anon inode's. */
static __always_inline void resolve_fd(__s32 fd, struct fd_desc *d)
{
	struct file *file = fd_file(fd);
	if (!file)
		return;

	struct inode *inode = BPF_CORE_READ(file, f_inode);
	struct super_block *sb = BPF_CORE_READ(inode, i_sb);
	d->file = file;
	d->inode = inode;
	d->sb = sb;
	unsigned short mode = BPF_CORE_READ(inode, i_mode);
	/* Anonymous inodes (eventfd, timerfd, ...) may carry S_IFREG: check the fs first. */
	if (BPF_CORE_READ(sb, s_magic) == ANON_INODE_FS_MAGIC) {
		/* "[eventfd]" is the name anon_inode_getfile gives eventfds. */
		char name[10] = {};
		read_name(d);
		bpf_probe_read_kernel(name, sizeof(name), d->name.name);
		bool eventfd = name[0] == '[' && name[1] == 'e' && name[2] == 'v' && name[6] == 'f' &&
			       name[7] == 'd' && name[8] == ']';
		d->kind = eventfd ? FD_KIND_EVENTFD : FD_KIND_OTHER;
		return;
	}
	switch (mode & S_IFMT) {
	case S_IFREG:
		d->kind = FD_KIND_FILE;
		break;
	case S_IFSOCK:
		d->kind = FD_KIND_SOCKET;
		break;
	case S_IFIFO:
		d->kind = FD_KIND_PIPE;
		break;
	case S_IFDIR:
		d->kind = FD_KIND_DIRECTORY;
		break;
	default:
		d->kind = FD_KIND_OTHER;
	}
}

/* Fills the record's fd fields, leaving them zero if the fd was gone. */
static __always_inline void describe_fd(struct event *e, struct fd_desc *d)
{
	struct inode *inode = d->inode;
	struct super_block *sb = d->sb;
	if (!d->file)
		return;
	e->fd_kind = d->kind;
	e->inode = BPF_CORE_READ(inode, i_ino);
	e->dev = BPF_CORE_READ(sb, s_dev);
	read_name(d);
	bpf_probe_read_kernel_str(e->file_name, sizeof(e->file_name), d->name.name);
}

#define SUFFIX(bytes, n) (tail >> (64 - 8 * (n)) == (bytes))
/* Little-endian words of the names' last characters. */
#define TAIL_WAL 0x6c61772eULL    /* ".wal" */
#define TAIL_SNAP 0x70616e732eULL /* ".snap" */
#define TAIL_TMP 0x706d742eULL    /* ".tmp" */
#define TAIL_DB 0x62642eULL       /* ".db" */
#define NAME_DB 0x6264ULL         /* "db" */
#define NAME_WAL 0x6c6177ULL      /* "wal" */
#define NAME_SNAP 0x70616e73ULL   /* "snap" */

/* The class of a file or directory from the end of its base name: one 8-byte read. */
static __always_inline __u8 file_class(struct fd_desc *d)
{
	if (d->kind != FD_KIND_FILE && d->kind != FD_KIND_DIRECTORY)
		return FILE_CLASS_NONE;
	read_name(d);
	struct qstr name = d->name;
	__u32 len = name.hash_len >> 32;
	if (len == 0)
		return FILE_CLASS_OTHER;
	/* The last 8 characters, the last one in the top byte. Short names are stored inline
	 * in the dentry (at least 32 bytes), so reading 8 from their start stays inside it. */
	__u64 tail = 0;
	bpf_probe_read_kernel(&tail, sizeof(tail), name.name + (len >= 8 ? len - 8 : 0));
	if (len < 8)
		tail <<= 8 * (8 - len);

	if (d->kind == FD_KIND_DIRECTORY) {
		if (len == 3 && SUFFIX(NAME_WAL, 3))
			return FILE_CLASS_WAL;
		if (len == 4 && SUFFIX(NAME_SNAP, 4))
			return FILE_CLASS_SNAP;
		return FILE_CLASS_OTHER;
	}
	if (SUFFIX(TAIL_WAL, 4))
		return FILE_CLASS_WAL;
	if ((len == 2 && SUFFIX(NAME_DB, 2)) || SUFFIX(TAIL_DB, 3))
		return FILE_CLASS_DB;
	if (SUFFIX(TAIL_SNAP, 5))
		return FILE_CLASS_SNAP;
	if (SUFFIX(TAIL_TMP, 4))
		return FILE_CLASS_TMP;
	return FILE_CLASS_OTHER;
}

/*
 * Adds a call's time off the CPU to its key's totals. Only calls that left the CPU get
 * here; their time on it is the histogram's sum less every call's time off it.
 */
static __always_inline void observe_waits(struct hist_key *key, const struct call_waits *w, __u64 io_device)
{
	struct wait_times *t = bpf_map_lookup_elem(&waits, key);
	if (!t) {
		struct wait_times zero = {};
		bpf_map_update_elem(&waits, key, &zero, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&waits, key);
		if (!t)
			return; /* as full as `hists`: the call went to the overflow histogram */
	}
#pragma unroll
	for (int i = 0; i < WAIT_KINDS; i++) {
		if (w->ns[i])
			__sync_fetch_and_add(&t->ns[i], w->ns[i]);
	}
	if (io_device)
		__sync_fetch_and_add(&t->io_device_ns, io_device);
}

/* Counts a completed call in its process's histogram, or in the overflow one when the map is full. */
static __always_inline void observe(__u32 tgid, const struct inflight *call, const struct call_waits *waits,
				    __u64 io_device, struct fd_desc *d, __u64 duration_ns, __s64 ret)
{
	struct hist_key key = {
		.tgid = tgid,
		.type = call->type,
		.fd_kind = d->kind,
		.file_class = file_class(d),
	};
	struct hist *h = bpf_map_lookup_elem(&hists, &key);
	if (!h) {
		/* EEXIST: another CPU added it first; E2BIG: the map is full. */
		bpf_map_update_elem(&hists, &key, &empty_hist, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &key);
	}
	if (!h) {
		__u32 zero = 0;
		h = bpf_map_lookup_elem(&hist_overflow, &zero);
		if (!h)
			return;
	}
	hist_observe(h, duration_ns, ret > 0 && call->type <= SYSCALL_PWRITEV ? ret : 0);
	if (call->out_ns)
		observe_waits(&key, waits, io_device);
}

/*
 * Covers the disk under a file or directory the process writes or syncs, once. The
 * file system last seen on this CPU is remembered: etcd's calls go to one or two, so
 * most calls stop at that comparison instead of reading through the super block to
 * its disk and looking the disk up.
 */
static __always_inline void learn_disk(struct fd_desc *d)
{
	if (d->kind != FD_KIND_FILE && d->kind != FD_KIND_DIRECTORY)
		return;
	__u32 zero = 0;
	__u64 *seen = bpf_map_lookup_elem(&learnt_sb, &zero);
	if (!seen || *seen == (__u64)d->sb)
		return;
	*seen = (__u64)d->sb;
	__u32 dev = sb_disk(d->sb);
	if (!dev || bpf_map_lookup_elem(&covered_disks, &dev))
		return;
	__u8 one = 1;
	bpf_map_update_elem(&covered_disks, &dev, &one, BPF_NOEXIST);
}

/* Copies the start of the written data: at most payload_bytes and never more than was written. */
static __always_inline __u16 capture_payload(__u8 *dst, const struct inflight *call, __s64 ret)
{
	__u64 n = payload_bytes;
	if (ret <= 0)
		return 0;
	if (n > (__u64)ret)
		n = ret;

	const void *src = (const void *)call->buf;
	if (call->type == SYSCALL_WRITEV || call->type == SYSCALL_PWRITEV) {
		struct iovec iov = {};
		if (bpf_probe_read_user(&iov, sizeof(iov), (const void *)call->buf))
			return 0;
		src = iov.iov_base;
		if (n > iov.iov_len)
			n = iov.iov_len;
	} else if (call->type != SYSCALL_WRITE && call->type != SYSCALL_PWRITE64) {
		return 0;
	}
	/*
	 * dst has payload_room bytes. The verifiers of 5.10 and 6.1 check the largest
	 * value the size register may hold against that room, and lose the bounds above
	 * when the compiler compares one copy of n and passes another: bound the very
	 * register the helper receives by the room, a constant the verifier knows.
	 */
	__u64 room = payload_room;
	asm volatile("if %[n] <= %[room] goto +1; %[n] = %[room]" : [n] "+r"(n) : [room] "r"(room));
	if (bpf_probe_read_user(dst, n, src))
		return 0;
	return n;
}

/*
 * Of the call's waits for its own I/O, the time that I/O was on the device: its own
 * requests' device time and the flushes' that served it, at most the waits.
 */
static __always_inline __u64 io_device_ns(const struct call_waits *w)
{
	__u64 waited = w->ns[WAIT_FLUSH] + w->ns[WAIT_WRITEBACK] + w->ns[WAIT_METADATA];
	if (!own_io || !waited)
		return 0;
	__u64 device = own_device_ns() - w->own_device_out + w->flush_device_ns;
	return device < waited ? device : waited;
}

/* Fills the record's account of the call's time off the CPU. */
static __always_inline void describe_waits(struct event *e, const struct call_waits *w, __u64 io_device)
{
#pragma unroll
	for (int i = 0; i < WAIT_KINDS; i++)
		e->wait_ns[i] = w->ns[i];
	e->io_device_ns = io_device;
	e->other_wait_ip = w->other_ip;
	e->measured |= MEASURED_SCHED | (own_io ? MEASURED_IO_DEVICE : 0);
}

static __always_inline int on_exit(struct syscall_exit_ctx *ctx)
{
	/* Every exit of every thread on the host gets here: return before any other work. */
	struct inflight call;
	__u64 now;
	struct call_waits *waits;
	if (!unpark(&call, &now, &waits))
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	count(COUNTER_CALLS);

	/* The selection is decided before the ring buffer reserve: a call left out costs no ring space. */
	__u64 duration_ns = now - call.start_ns;
	__u64 io_device = 0;
	if (scheduler && call.out_ns) {
		settle_interval(call.out_ns, waits, task_storage ? call.in_ns : cpu_switched_in());
		io_device = io_device_ns(waits);
	}
	bool slow_enough = duration_ns >= min_duration_ns;
	if (!slow_enough && !histograms && !learn_disks)
		return 0;
	struct fd_desc fd = {};
	resolve_fd(call.fd, &fd);
	if (learn_disks)
		learn_disk(&fd);
	if (histograms)
		observe(pid_tgid >> 32, &call, waits, io_device, &fd, duration_ns, ctx->ret);
	if (!slow_enough || !(fd_kinds & (1U << fd.kind)))
		return 0;

	__u32 tgid = pid_tgid >> 32;
	if (!within_budget(tgid, now)) {
		count_loss(tgid, COUNTER_OVER_BUDGET);
		return 0;
	}
	/* payload_room is a load-time constant: the verifier sees a constant size. */
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(struct event) + payload_room, 0);
	if (!e) {
		count_loss(tgid, COUNTER_RINGBUF_FULL);
		return 0;
	}

	__builtin_memset(e, 0, sizeof(*e));
	e->version = RECORD_VERSION;
	e->type = call.type;
	e->pid = tgid;
	e->tid = tid;
	e->fd = call.fd;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->count = call.count;
	e->offset = call.offset;
	e->ret = ctx->ret;
	e->start_ns = call.start_ns;
	e->duration_ns = duration_ns;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	describe_fd(e, &fd);
	if (scheduler) {
		if (call.out_ns)
			describe_waits(e, waits, io_device);
		else
			e->measured |= MEASURED_SCHED | (own_io ? MEASURED_IO_DEVICE : 0); /* on the CPU throughout */
	}

	if (payload_room) {
		__u64 *payload = (__u64 *)(e + 1);
#pragma unroll
		for (int i = 0; i < PAYLOAD_MAX / 8; i++) {
			if (i * 8 >= payload_room)
				break;
			payload[i] = 0;
		}
		e->payload_len = capture_payload((__u8 *)payload, &call, e->ret);
	}

	/*
	 * Wake the reader once each time the pending data crosses a multiple of
	 * wakeup_bytes: an edge, not a level. Waking on every record above a threshold
	 * would cost each syscall a self-IPI whenever the reader falls behind. A quiet
	 * ring is drained by the reader's own timer (flush_interval).
	 */
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA); /* includes this record */
	__u64 flags = avail >= record_space && avail / wakeup_bytes != (avail - record_space) / wakeup_bytes ?
			      BPF_RB_FORCE_WAKEUP :
			      BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, flags);
	return 0;
}

#define NO_OFFSET (-1)

SEC("tracepoint/syscalls/sys_enter_write")
int enter_write(struct syscall_enter_ctx *ctx)
{
	return on_enter(SYSCALL_WRITE, ctx->args[0], ctx->args[1], ctx->args[2], NO_OFFSET);
}

SEC("tracepoint/syscalls/sys_enter_pwrite64")
int enter_pwrite64(struct syscall_enter_ctx *ctx)
{
	return on_enter(SYSCALL_PWRITE64, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_writev")
int enter_writev(struct syscall_enter_ctx *ctx)
{
	return on_enter(SYSCALL_WRITEV, ctx->args[0], ctx->args[1], ctx->args[2], NO_OFFSET);
}

/* pos_l carries the whole offset on 64-bit kernels. */
SEC("tracepoint/syscalls/sys_enter_pwritev")
int enter_pwritev(struct syscall_enter_ctx *ctx)
{
	return on_enter(SYSCALL_PWRITEV, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_fsync")
int enter_fsync(struct syscall_enter_ctx *ctx)
{
	return on_enter(SYSCALL_FSYNC, ctx->args[0], 0, 0, NO_OFFSET);
}

SEC("tracepoint/syscalls/sys_enter_fdatasync")
int enter_fdatasync(struct syscall_enter_ctx *ctx)
{
	return on_enter(SYSCALL_FDATASYNC, ctx->args[0], 0, 0, NO_OFFSET);
}

/* sync_file_range(fd, offset, nbytes, flags) */
SEC("tracepoint/syscalls/sys_enter_sync_file_range")
int enter_sync_file_range(struct syscall_enter_ctx *ctx)
{
	return on_enter(SYSCALL_SYNC_FILE_RANGE, ctx->args[0], 0, ctx->args[2], ctx->args[1]);
}

#define EXIT_PROGRAM(name)                                   \
	SEC("tracepoint/syscalls/sys_exit_" #name)           \
	int exit_##name(struct syscall_exit_ctx *ctx)        \
	{                                                    \
		return on_exit(ctx);                         \
	}

EXIT_PROGRAM(write)
EXIT_PROGRAM(pwrite64)
EXIT_PROGRAM(writev)
EXIT_PROGRAM(pwritev)
EXIT_PROGRAM(fsync)
EXIT_PROGRAM(fdatasync)
EXIT_PROGRAM(sync_file_range)

/* Whether the current task leaves the CPU runnable: preempted, or yielding, not blocked. */
static __always_inline bool leaving_runnable(struct sched_switch_args *ctx)
{
	if (ctx->preempt)
		return true;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (bpf_core_field_exists(task->__state))
		return BPF_CORE_READ(task, __state) == 0;
	struct task_struct___state *old = (void *)task;
	return BPF_CORE_READ(old, state) == 0;
}

/*
 * The thread leaving the CPU inside a traced call: settles its previous interval off
 * the CPU, if any (see settle_interval), which ended when it got the CPU back (in_ns),
 * and starts a new one: when it left, its run_delay then, and what it waits for
 * (wait.h), read from its stack only when it blocks.
 */
static __always_inline void leave_cpu(struct sched_switch_args *ctx, struct inflight *call, __u64 now, __u64 in_ns)
{
	struct call_waits *w = &call->waits;
	if (call->out_ns) {
		settle_interval(call->out_ns, w, in_ns);
	} else {
		__builtin_memset(w, 0, sizeof(*w));
		if (own_io)
			w->own_device_out = own_device_ns();
	}
	call->out_ns = now;
	w->run_delay_out = run_delay();
	w->pending_ip = 0;
	w->pending = leaving_runnable(ctx) ? WAIT_RUNNABLE : classify_wait(ctx, &w->pending_ip);
	if (own_io && w->pending == WAIT_FLUSH) {
		w->flush_disk = file_disk(fd_file(call->fd));
		w->flush_device_out = flush_device_ns(w->flush_disk);
	}
}

/*
 * Every context switch on the host runs this; only threads inside a traced call need
 * it, and from 5.11 only threads that ever parked a call have task storage. So a switch
 * between two threads without any returns after two pointer loads (tp_btf types next,
 * so its storage pointer is a plain load), and one of a thread outside a call after its
 * storage look-up: the clock is read only for a thread inside a call, when it leaves
 * the CPU or gets it back. The thread leaving is the current task, so finding its call
 * is the same thread-local look-up as the exit's. The scheduler itself counts the time
 * a thread then waits runnable (run_delay), so the wake-ups need no program.
 */
SEC("tp_btf/sched_switch")
int on_switch(struct sched_switch_args *ctx)
{
	if (task_storage) {
		struct task_struct *prev = bpf_get_current_task_btf();
		struct task_struct *next = (struct task_struct *)ctx->next;
		if (!next)
			return 0;
		bool prev_stored = !bpf_core_field_exists(prev->bpf_storage) || prev->bpf_storage;
		bool next_stored = !bpf_core_field_exists(next->bpf_storage) || next->bpf_storage;
		__u64 now = 0;
		if (next_stored) {
			struct inflight *back = bpf_task_storage_get(&inflight_task, next, NULL, 0);
			if (back && back->start_ns && back->out_ns) {
				now = bpf_ktime_get_ns();
				back->in_ns = now;
			}
		}
		if (!prev_stored)
			return 0;
		struct inflight *call = bpf_task_storage_get(&inflight_task, prev, NULL, 0);
		if (!call || !call->start_ns)
			return 0;
		leave_cpu(ctx, call, now ? now : bpf_ktime_get_ns(), call->in_ns);
		return 0;
	}

	/* Before 5.11 calls are parked by thread id: the CPU keeps when its running thread got it. */
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct inflight *call = bpf_map_lookup_elem(&inflight, &tid);
	__u64 now = bpf_ktime_get_ns();
	__u32 zero = 0;
	__u64 *in = bpf_map_lookup_elem(&switched_in, &zero);
	if (!in)
		return 0;
	__u64 prev_in = *in;
	*in = now; /* the next task's stint starts */
	if (call && call->start_ns)
		leave_cpu(ctx, call, now, prev_in);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
