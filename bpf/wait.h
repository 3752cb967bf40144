/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What a traced call waited for while it was off the CPU, from the kernel's own account:
 * the thread's kernel stack at the moment it left the CPU. The loader resolves a set of
 * kernel functions by name (/proc/kallsyms) into `wait_pages`, each with the kind of wait
 * it stands for; the innermost such function on the stack names the wait. Only a thread
 * inside a traced call that blocks pays for the stack: a call that never leaves the CPU
 * never gets here.
 */
#ifndef ETCDEBPF_WAIT_H
#define ETCDEBPF_WAIT_H

#include "kernel.h"
#include <bpf/bpf_helpers.h>

/* Where the time of a call off the CPU went. Shared with Go through BTF. */
enum wait_kind {
	WAIT_RUNNABLE = 0,  /* runnable, waiting for a CPU (preempted, or woken and not yet run) */
	WAIT_FLUSH = 1,     /* the device's cache flush of its own sync */
	WAIT_WRITEBACK = 2, /* the writeback of its own data */
	WAIT_METADATA = 3,  /* an inode or other metadata block it wrote */
	WAIT_JOURNAL = 4,   /* the file system's journal (jbd2's commit, XFS's log force) */
	WAIT_LOCK = 5,      /* a sleeping lock: mutex, rwsem, page lock */
	WAIT_THROTTLE = 6,  /* throttled before its I/O was made: dirty pages, wbt and rq_qos, no free tag */
	WAIT_OTHER = 7,     /* anything else; the record names the function */
	WAIT_KINDS = 8,
	/* Table only: a scheduler or generic wait helper, passed over to the function that called it. */
	WAIT_SKIP = 0xff,
};

enum wait_layout {
	WAIT_PAGE_SHIFT = 12,    /* the table is keyed by the address's 4 KiB page */
	WAIT_RANGES_PER_PAGE = 8,
	WAIT_PAGES_MAX = 512,
	WAIT_FRAMES = 16,        /* stack frames read at a switch out: the unwinder walks as many, whatever the wait */
	WAIT_SEARCH_FRAMES = 12, /* frames searched past the scheduler's for a known wait */
};

struct wait_range {
	__u64 start; /* the function's first byte */
	__u64 end;   /* the next symbol's first byte */
	__u32 kind;  /* enum wait_kind, or WAIT_SKIP */
	__u32 reserved;
};

/* The functions in one page of kernel text; unused ranges have start 0. */
struct wait_page {
	struct wait_range ranges[WAIT_RANGES_PER_PAGE];
};

/* Filled by user space before the programs attach; empty, every wait is WAIT_OTHER. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WAIT_PAGES_MAX);
	__type(key, __u64);
	__type(value, struct wait_page);
} wait_pages SEC(".maps");

struct wait_stack {
	__u64 ips[WAIT_FRAMES];
};

/* Room for the stack read at a switch out: too big for the 512-byte stack beside the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wait_stack);
} wait_stacks SEC(".maps");

/* The table's kind of the function holding ip: WAIT_OTHER when none. */
static __always_inline __u32 wait_kind_of(__u64 ip)
{
	__u64 page = ip >> WAIT_PAGE_SHIFT;
	struct wait_page *p = bpf_map_lookup_elem(&wait_pages, &page);
	if (!p)
		return WAIT_OTHER;
#pragma unroll
	for (int i = 0; i < WAIT_RANGES_PER_PAGE; i++) {
		if (p->ranges[i].start <= ip && ip < p->ranges[i].end)
			return p->ranges[i].kind;
	}
	return WAIT_OTHER;
}

/*
 * What the current task, leaving the CPU blocked, waits for. The stack starts in the
 * tracing machinery, then the scheduler (WAIT_SKIP frames), then what called it: the
 * innermost known function within WAIT_SEARCH_FRAMES of the scheduler's frames names the
 * wait, and *ip is the first function past them, which names an unknown one.
 */
static __always_inline __u32 classify_wait(void *ctx, __u64 *ip)
{
	__u32 zero = 0;
	struct wait_stack *st = bpf_map_lookup_elem(&wait_stacks, &zero);
	*ip = 0;
	if (!st)
		return WAIT_OTHER;
	long n = bpf_get_stack(ctx, st->ips, sizeof(st->ips), 0);
	if (n <= 0)
		return WAIT_OTHER;
	int frames = n / sizeof(__u64);
	bool in_scheduler = false;
	int searched = 0;
#pragma unroll
	for (int i = 0; i < WAIT_FRAMES; i++) {
		if (i >= frames || searched >= WAIT_SEARCH_FRAMES)
			break;
		__u64 frame = st->ips[i];
		__u32 kind = wait_kind_of(frame);
		if (kind == WAIT_SKIP) {
			in_scheduler = true;
			continue;
		}
		if (!in_scheduler)
			continue; /* the tracing machinery above the scheduler */
		if (!*ip)
			*ip = frame;
		if (kind != WAIT_OTHER)
			return kind;
		searched++;
	}
	return WAIT_OTHER;
}

#endif
