//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * One record per completed write or sync syscall of the traced process.
 *
 * Enter programs filter first (cgroup, then PID set, then process name) and park the
 * arguments in `inflight`, keyed by thread id: Go runs syscalls on many threads, so a
 * process id would pair one thread's enter with another's exit. Exit programs look the
 * call up, resolve the fd to its kind, inode and base name, and emit a fixed-size record.
 * Nothing is lost silently: a full ring buffer and a full inflight map are counted per CPU.
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define COMM_LEN 16
#define FILE_NAME_LEN 48

/* Shared with Go through BTF: bump RECORD_VERSION on any change to struct event. */
enum record_layout {
	RECORD_VERSION = 1,
	PAYLOAD_MAX = 256,
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

enum counter {
	COUNTER_RINGBUF_FULL = 0,  /* a completed syscall whose record found no room */
	COUNTER_INFLIGHT_FULL = 1, /* an enter that could not be parked, so no record */
	COUNTER_MAX = 2,
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
};

struct inflight {
	__u64 start_ns;
	__u64 buf; /* user pointer: the data, or the iovec array */
	__u64 count;
	__s64 offset;
	__s32 fd;
	__u16 type;
	__u16 reserved;
};

/* Set by the loader before the program is verified: the verifier prunes unused branches. */
const volatile char target_comm[COMM_LEN] = {}; /* all zero: any name */
const volatile __u64 target_cgroup_id = 0;      /* 0: any cgroup */
const volatile bool filter_pids = false;        /* true: only tgids in target_pids */
const volatile __u32 payload_bytes = 0;         /* 0..PAYLOAD_MAX */
const volatile __u32 payload_room = 0;          /* payload_bytes rounded up to 8: the record's payload area */
const volatile __u64 record_space = 8;          /* ring space one record takes, header included */
const volatile __u64 wakeup_bytes = 1;          /* wake the reader once per this much new data */

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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, enum counter);
	__type(value, __u64);
} counters SEC(".maps");

/* Referenced so that bpf2go can generate the Go types from BTF. */
struct event *unused_event __attribute__((unused));
enum syscall_type unused_syscall_type __attribute__((unused));
enum fd_kind unused_fd_kind __attribute__((unused));
enum record_layout unused_record_layout __attribute__((unused));

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

static __always_inline bool traced(__u64 pid_tgid)
{
	if (target_cgroup_id && bpf_get_current_cgroup_id() != target_cgroup_id)
		return false;
	if (filter_pids) {
		__u32 tgid = pid_tgid >> 32;
		if (!bpf_map_lookup_elem(&target_pids, &tgid))
			return false;
	}
	return comm_matches();
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
	if (bpf_map_update_elem(&inflight, &tid, &call, BPF_ANY))
		count(COUNTER_INFLIGHT_FULL);
	return 0;
}

/* Resolves fd in the current task's table; leaves the fields zero if it is gone. */
static __always_inline void describe_fd(struct event *e)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || e->fd < 0 || (__u32)e->fd >= BPF_CORE_READ(fdt, max_fds))
		return;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[e->fd]);
	if (!file)
		return;

	struct inode *inode = BPF_CORE_READ(file, f_inode);
	unsigned short mode = BPF_CORE_READ(inode, i_mode);
	e->inode = BPF_CORE_READ(inode, i_ino);
	bpf_probe_read_kernel_str(e->file_name, sizeof(e->file_name),
				  BPF_CORE_READ(file, f_path.dentry, d_name.name));

	struct super_block *sb = BPF_CORE_READ(inode, i_sb);
	e->dev = BPF_CORE_READ(sb, s_dev);
	/* Anonymous inodes (eventfd, timerfd, ...) may carry S_IFREG: check the fs first. */
	if (BPF_CORE_READ(sb, s_magic) == ANON_INODE_FS_MAGIC) {
		/* "[eventfd]" is the name anon_inode_getfile gives eventfds. */
		bool eventfd = e->file_name[0] == '[' && e->file_name[1] == 'e' &&
			       e->file_name[2] == 'v' && e->file_name[6] == 'f' &&
			       e->file_name[7] == 'd' && e->file_name[8] == ']';
		e->fd_kind = eventfd ? FD_KIND_EVENTFD : FD_KIND_OTHER;
		return;
	}
	switch (mode & S_IFMT) {
	case S_IFREG:
		e->fd_kind = FD_KIND_FILE;
		break;
	case S_IFSOCK:
		e->fd_kind = FD_KIND_SOCKET;
		break;
	case S_IFIFO:
		e->fd_kind = FD_KIND_PIPE;
		break;
	case S_IFDIR:
		e->fd_kind = FD_KIND_DIRECTORY;
		break;
	default:
		e->fd_kind = FD_KIND_OTHER;
	}
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

static __always_inline int on_exit(struct syscall_exit_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;

	/* Every exit of every thread on the host gets here: return before any other work. */
	struct inflight *parked = bpf_map_lookup_elem(&inflight, &tid);
	if (!parked)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct inflight call = *parked;
	bpf_map_delete_elem(&inflight, &tid);

	/* payload_room is a load-time constant: the verifier sees a constant size. */
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(struct event) + payload_room, 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return 0;
	}

	__builtin_memset(e, 0, sizeof(*e));
	e->version = RECORD_VERSION;
	e->type = call.type;
	e->pid = pid_tgid >> 32;
	e->tid = tid;
	e->fd = call.fd;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->count = call.count;
	e->offset = call.offset;
	e->ret = ctx->ret;
	e->start_ns = call.start_ns;
	e->duration_ns = now - call.start_ns;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	describe_fd(e);

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

char LICENSE[] SEC("license") = "Dual BSD/GPL";
