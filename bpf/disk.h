/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the block programs (block.c) and the syscall programs (etcd_monitor.c) share:
 * the disks counted, their running totals and who submitted to them. Each object
 * declares these maps; the loader hands the block object's maps to the syscall object
 * (ebpf.CollectionOptions.MapReplacements), so both update and read the same ones.
 *
 * A disk is named by the whole disk's dev_t in the kernel's encoding (MAJOR << 20 |
 * MINOR), never a partition's: its requests are the disk's.
 */
#ifndef ETCDEBPF_DISK_H
#define ETCDEBPF_DISK_H

#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

enum disk_layout {
	DISKS_MAX = 64,        /* covered disks */
	SUBMITTERS_MAX = 2048, /* (disk, process) pairs; the rest go to submitter_overflow */
	DISK_COMM_LEN = 16,
};

/* Cumulative since the block programs were loaded; updated with atomic adds. */
struct disk_total {
	__u64 requests_completed; /* as /sys/block/<disk>/stat counts them: reads, writes, discards, flushes */
	__u64 device_ns;          /* issue -> completion, summed over the requests the device served */
	__u64 bytes_submitted;    /* bytes of every data bio submitted to the disk, by anyone */
	__u64 flush_device_ns;    /* issue -> completion of its flush requests */
};

/* A thread's own I/O: what the requests made from the bios it submitted spent on the device. */
struct thread_io {
	__u64 device_ns;
};

struct submitter_key {
	__u32 dev;  /* whole disk */
	__u32 tgid; /* the submitting process, host pid namespace; kernel threads too */
};

/* Counted where the bio is submitted (block_bio_queue), in the submitting task's context. */
struct submitter {
	__u64 bytes;
	__u64 bios;      /* bios submitted; merged later or split, each counts once here */
	__u64 cgroup_id; /* cgroup v2 id of the task at its first bio */
	char comm[DISK_COMM_LEN]; /* the task's name at its first bio */
};

/* The disks the block programs count: filled by user space (config `disks`) or learnt by the syscall programs. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DISKS_MAX);
	__type(key, __u32);
	__type(value, __u8);
} covered_disks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DISKS_MAX);
	__type(key, __u32);
	__type(value, struct disk_total);
} disk_totals SEC(".maps");

/* Bounded: a pair that finds it full is counted in submitter_overflow under its disk. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SUBMITTERS_MAX);
	__type(key, struct submitter_key);
	__type(value, struct submitter);
} submitters SEC(".maps");

/* The submitters that found `submitters` full, by disk: as large as covered_disks, so never full itself. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DISKS_MAX);
	__type(key, __u32);
	__type(value, struct submitter);
} submitter_overflow SEC(".maps");

/*
 * Threads' own I/O by thread id, for the syscall programs to read at a traced call's
 * waits. An LRU: a thread forgotten only loses the device time of a call that waited
 * while its entry was evicted, which then counts as time before the device.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct thread_io);
} thread_ios SEC(".maps");

/*
 * The kernel's encoding of a dev_t: MAJOR << 20 | MINOR. major and first_minor are
 * the gendisk's first two ints on every kernel so far: one read takes both.
 */
static __always_inline __u32 disk_dev(struct gendisk *disk)
{
	if (!disk)
		return 0;
	struct {
		int major;
		int first_minor;
	} id = {};
	if (bpf_core_field_offset(disk->first_minor) == bpf_core_field_offset(disk->major) + sizeof(id.major)) {
		bpf_core_read(&id, sizeof(id), &disk->major);
	} else {
		id.major = BPF_CORE_READ(disk, major);
		id.first_minor = BPF_CORE_READ(disk, first_minor);
	}
	return (__u32)id.major << 20 | (__u32)id.first_minor;
}

/* The whole disk of a super block's block device (a partition maps to its disk), 0 when there is none. */
static __always_inline __u32 sb_disk(struct super_block *sb)
{
	struct block_device *bdev = BPF_CORE_READ(sb, s_bdev);
	if (!bdev)
		return 0;
	return disk_dev(BPF_CORE_READ(bdev, bd_disk));
}

/* The whole disk's dev_t of the block device under the file's super block, 0 when there is none. */
static __always_inline __u32 file_disk(struct file *f)
{
	if (!f)
		return 0;
	return sb_disk(BPF_CORE_READ(f, f_inode, i_sb));
}

#endif
