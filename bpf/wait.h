/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What a traced call waited for while it was off the CPU, from the kernel's own account:
 * the return addresses on the thread's kernel stack at the moment it left the CPU. The
 * loader resolves a set of kernel functions by name (/proc/kallsyms) into `wait_pages`,
 * each with the kind of wait it stands for; the innermost such function above the
 * scheduler's names the wait. Only a thread inside a traced call that blocks reads its
 * stack: a call that never leaves the CPU never gets here.
 *
 * The stack is scanned, not unwound. The unwinder (bpf_get_stack) costs microseconds a
 * switch out, more than the rest of a call's tracing together; one copy of the stack's
 * live top and a filter of the table's pages cost a fraction of that. A scan sees every
 * word, so only words that read as return addresses count: inside a known function but
 * past its first byte, above the scheduler's own frames, the live part of the stack. A
 * stale word left in an uninitialised slot of a live frame could still name a wait the
 * call is not in: the tests compare the kinds with what bpftrace's unwinder reads.
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
	WAIT_SCAN_WORDS = 160,  /* words of the stack read at a switch out, from the tracepoint's arguments up */
	WAIT_FILTER_WORDS = 64, /* the page filter's bits: 4,096, by page number modulo that */
	WAIT_STACK_SIZE = 16384, /* THREAD_SIZE of x86-64 and arm64 without KASAN: a bound on the read, never past it */
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

/*
 * Which pages hold a wait function, as a filter the scan checks before the table: bit
 * (page % 4096) is set for every page in `wait_pages`. And where the kernel's text is,
 * so that an unknown wait's function is named only by a word that points into code.
 */
struct wait_text {
	__u64 page_bits[WAIT_FILTER_WORDS];
	__u64 core_start, core_end;       /* the kernel image's functions */
	__u64 modules_start, modules_end; /* the loaded modules' functions; 0, 0 when none */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wait_text);
} wait_texts SEC(".maps");

struct wait_stack {
	__u64 from; /* the address the copy starts at: the tracepoint's arguments, on the thread's stack */
	__u64 words[WAIT_SCAN_WORDS];
};

/* Room for the stack read at a switch out: too big for the 512-byte stack beside the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wait_stack);
} wait_stacks SEC(".maps");

/* The table's kind of the function holding ip past its first byte: WAIT_OTHER when none. */
static __always_inline __u32 wait_kind_of(__u64 ip)
{
	__u64 page = ip >> WAIT_PAGE_SHIFT;
	struct wait_page *p = bpf_map_lookup_elem(&wait_pages, &page);
	if (!p)
		return WAIT_OTHER;
#pragma unroll
	for (int i = 0; i < WAIT_RANGES_PER_PAGE; i++) {
		if (p->ranges[i].start < ip && ip < p->ranges[i].end)
			return p->ranges[i].kind;
	}
	return WAIT_OTHER;
}

/* Whether ip points into the kernel's code, past the call instruction of a return address. */
static __always_inline bool in_text(const struct wait_text *t, __u64 ip)
{
	if (t->core_start < ip && ip < t->core_end)
		return true;
	return t->modules_start < ip && ip < t->modules_end;
}

/*
 * What the current task, leaving the CPU blocked, waits for. ctx, the tracepoint's
 * argument array, lies on the task's stack below the frames of the tracing machinery, then
 * the scheduler's (WAIT_SKIP functions), then what called it: the first known function
 * past the scheduler's names the wait, and *ip is the first word into code past them,
 * which names an unknown one.
 */
static __always_inline __u32 classify_wait(void *ctx, __u64 *ip)
{
	__u32 zero = 0;
	struct wait_stack *st = bpf_map_lookup_elem(&wait_stacks, &zero);
	struct wait_text *text = bpf_map_lookup_elem(&wait_texts, &zero);
	*ip = 0;
	if (!st || !text)
		return WAIT_OTHER;
	/* Through memory, so that the verifier lets the address be compared as a number. */
	st->from = (__u64)ctx;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 top = (__u64)BPF_CORE_READ(task, stack) + WAIT_STACK_SIZE;
	__u64 from = st->from;
	if (from >= top)
		return WAIT_OTHER;
	/* A thread in a system call is deeper in its stack than the copy; the bound is for
	 * the exception, where the whole copy would fail at the stack's end. */
	__u64 size = top - from;
	__u64 room = sizeof(st->words);
	asm volatile("if %[n] <= %[room] goto +1; %[n] = %[room]" : [n] "+r"(size) : [room] "r"(room));
	if (bpf_probe_read_kernel(st->words, size, (void *)from))
		return WAIT_OTHER;
	__u32 words = size / sizeof(__u64);

	bool in_scheduler = false;
	for (__u32 i = 0; i < WAIT_SCAN_WORDS; i++) {
		if (i >= words)
			break;
		__u64 word = st->words[i];
		__u64 page = word >> WAIT_PAGE_SHIFT;
		__u32 kind = WAIT_OTHER;
		if (text->page_bits[(page / 64) % WAIT_FILTER_WORDS] & (1ULL << (page % 64)))
			kind = wait_kind_of(word);
		if (kind == WAIT_SKIP) {
			in_scheduler = true;
			continue;
		}
		if (!in_scheduler)
			continue; /* the tracing machinery's frames, below the scheduler's */
		if (kind != WAIT_OTHER)
			return kind;
		if (!*ip && in_text(text, word))
			*ip = word;
	}
	return WAIT_OTHER;
}

#endif
