/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The latency histograms' layout and bucket index, shared by etcd_monitor.c and block.c. */
#ifndef ETCDEBPF_HIST_H
#define ETCDEBPF_HIST_H

#include "kernel.h"
#include <bpf/bpf_helpers.h>

/*
 * Latency histograms, OpenTelemetry exponential buckets at scale 3 (8 per octave) of the
 * duration in seconds: bucket i holds (2^(i/8), 2^((i+1)/8)] s. The map keeps buckets
 * -HIST_INDEX_OFFSET .. HIST_BUCKETS - HIST_INDEX_OFFSET - 1, i.e. 29.8 ns to 128 s; a call outside
 * falls into the nearest end bucket, and the sum, the minimum and the maximum stay exact. Counters are u32 to halve the
 * map: user space reads them every collection_interval and accumulates the wrapping
 * differences into u64s.
 */
enum hist_layout {
	HIST_BUCKETS = 256,
	HIST_INDEX_OFFSET = 200, /* bucket 0 of the map is index -200 */
	HIST_MAX_ENTRIES = 512,
};

struct hist {
	__u64 sum_ns;
	__u64 bytes;      /* sum of successful write return values */
	__u64 max_ns;     /* the slowest call counted */
	__u64 min_ns_inv; /* ~ the fastest: 0 until the first call, then raised as max_ns is */
	__u32 buckets[HIST_BUCKETS];
};

/*
 * (t + 2^n - 1) >> n is 1 when 0 < t < 2^n and 0 when t = 0. The bucket index is computed
 * with such arithmetic instead of comparisons: each branch would split the verifier's
 * paths, and 2^6 msb steps x 2^8 mantissa comparisons per exit program made loading
 * take seconds.
 */
#define NONZERO(t, n) (((t) + ((1ULL << (n)) - 1)) >> (n))
/* 1 when f > c, for f and c both in [2^63, 2^64): the sign of c - f. */
#define ABOVE(f, c) (((c) - (f)) >> 63)

/* Index of the most significant set bit of v > 0: a binary search without branches. */
static __always_inline __u32 msb64(__u64 v)
{
	__u64 r = 0, s;
	s = NONZERO(v >> 32, 32) << 5; v >>= s; r += s;
	s = NONZERO(v >> 16, 16) << 4; v >>= s; r += s;
	s = NONZERO(v >> 8, 8) << 3; v >>= s; r += s;
	s = NONZERO(v >> 4, 4) << 2; v >>= s; r += s;
	s = NONZERO(v >> 2, 2) << 1; v >>= s; r += s;
	return r + (v >> 1);
}

/*
 * The OpenTelemetry scale-3 bucket index of duration_ns in seconds, counted from the
 * map's first bucket (index -HIST_INDEX_OFFSET) and clamped to the map's buckets. Exact:
 * bucket k holds (1e9 * 2^(k/8), 1e9 * 2^((k+1)/8)] ns, so each octave [2^e, 2^(e+1)) ns
 * holds 8 bucket bounds, at the same fractions of the octave (log2(1e9) + j/8, mod 1).
 * The index is 8e - 240 (8 * log2(1e9) = 239.18) plus the number of those bounds below
 * the duration, found by comparing its mantissa, normalised to 64 bits, with
 * floor(2^(63 + fraction)); the last is 1e9 * 2^34 exactly: whole-second multiples
 * such as 1 s are the top of their bucket. bpf/hist.go mirrors it step by step.
 */
static __always_inline __u32 hist_bucket(__u64 duration_ns)
{
	__u64 e = msb64(duration_ns);
	__u64 f = duration_ns << (63 - e);
	__u64 m = ABOVE(f, 0x81ffa7a9549ca6e3ULL) + ABOVE(f, 0x8dc3b8960164a7d9ULL) +
		  ABOVE(f, 0x9a9867054d512391ULL) + ABOVE(f, 0xa8965f74bf065071ULL) +
		  ABOVE(f, 0xb7d88a12d0dd9ea0ULL) + ABOVE(f, 0xc87c3e7d03cdbec3ULL) +
		  ABOVE(f, 0xdaa17c2cd19555dbULL) + ABOVE(f, 0xee6b280000000000ULL);
	/* 0 ns, with no set bit, lands below bucket 0 (m = 8) and is clamped to it. */
	__s64 index = (__s64)(8 * e + m) - 240 + HIST_INDEX_OFFSET;
	if (index < 0)
		return 0;
	if (index >= HIST_BUCKETS)
		return HIST_BUCKETS - 1;
	return index;
}

/*
 * Raises *slot, shared by every CPU, to v. The exchange fails only when another CPU changed
 * the slot since it was read, and then the loop compares with that CPU's value, so a larger
 * value is never overwritten; each failure is another CPU's successful raise, so a few tries
 * are enough. Kernels before 5.12 have no compare-and-exchange: there user space loads it as
 * the plain store it amounts to when nothing races (internal/tracer's storeInsteadOfCmpXchg),
 * which loses a larger value only when two calls of one histogram end at the same moment on
 * two CPUs, both above its maximum.
 */
static __always_inline void raise_to(__u64 *slot, __u64 v)
{
	__u64 seen = *(volatile __u64 *)slot;
	for (int try = 0; try < 4; try++) {
		if (v <= seen)
			return;
		__u64 old = __sync_val_compare_and_swap(slot, seen, v);
		if (old == seen)
			return;
		seen = old;
	}
}

/*
 * Counts one call of ns nanoseconds (and its bytes, if any) into h. The extremes go first:
 * a reader that sees a call counted sees them set.
 */
static __always_inline void hist_observe(struct hist *h, __u64 ns, __u64 bytes)
{
	raise_to(&h->max_ns, ns);
	raise_to(&h->min_ns_inv, ~ns);
	__sync_fetch_and_add(&h->buckets[hist_bucket(ns)], 1);
	__sync_fetch_and_add(&h->sum_ns, ns);
	if (bytes)
		__sync_fetch_and_add(&h->bytes, bytes);
}

#endif
