/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel types etcd_monitor.c needs, instead of a multi-megabyte vmlinux.h.
 * Structs carry preserve_access_index, so only the fields we read are declared and
 * clang records CO-RE relocations: the loader fixes the offsets against the running
 * kernel's BTF (/sys/kernel/btf/vmlinux).
 */
#ifndef ETCDEBPF_KERNEL_H
#define ETCDEBPF_KERNEL_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

/* UAPI values, stable by definition. */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
	BPF_RB_AVAIL_DATA = 0,
	BPF_F_NO_PREALLOC = 1,
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
};

#define S_IFMT   00170000
#define S_IFSOCK 0140000
#define S_IFREG  0100000
#define S_IFDIR  0040000
#define S_IFIFO  0010000
#define ANON_INODE_FS_MAGIC 0x09041934

/* The tracepoint contexts of syscalls:sys_enter_* and syscalls:sys_exit_*. */
struct syscall_enter_ctx {
	__u64 common;
	__s64 nr;
	__u64 args[6];
};

struct syscall_exit_ctx {
	__u64 common;
	__s64 nr;
	__s64 ret;
};

/* sched:sched_switch's arguments as a BTF tracepoint gets them (later kernels append prev_state). */
struct sched_switch_args {
	__u64 preempt;
	__u64 prev; /* struct task_struct * */
	__u64 next; /* struct task_struct * */
};

struct iovec {
	void *iov_base;
	__u64 iov_len;
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct file;

struct mm_struct {
	struct file *exe_file;
};

struct bpf_local_storage;

/* CONFIG_SCHED_INFO: what /proc/<pid>/task/<tid>/schedstat shows. */
struct sched_info {
	unsigned long long run_delay; /* ns runnable on a runqueue, waiting for a CPU */
};

struct task_struct {
	unsigned int __state; /* 5.14+; before, a long named state */
	struct files_struct *files;
	struct mm_struct *mm;
	struct bpf_local_storage *bpf_storage; /* 5.11+, with CONFIG_BPF_SYSCALL */
	struct sched_info sched_info;
	void *stack; /* the lowest address of the task's kernel stack */
};

/* Before 5.14 a task's state was a long named state. */
struct task_struct___state {
	long state;
};

/* hash_len: the name's hash in the low half and its length in the high half (little endian). */
struct qstr {
	__u64 hash_len;
	const unsigned char *name;
};

struct dentry {
	struct qstr d_name;
};

struct path {
	struct dentry *dentry;
};

struct block_device;

struct super_block {
	__u32 s_dev;
	unsigned long s_magic;
	struct block_device *s_bdev; /* NULL for file systems without one (tmpfs, overlayfs, ...) */
};

struct inode {
	unsigned short i_mode;
	unsigned long i_ino;
	struct super_block *i_sb;
};

struct file {
	struct path f_path;
	struct inode *f_inode;
};

/* The block layer, for disk.h and block.c. */
struct gendisk {
	int major;
	int first_minor; /* the whole disk's minor: partitions follow it */
};

struct block_device {
	__u32 bd_dev;
	struct gendisk *bd_disk; /* the whole disk, also for a partition */
};

struct request_queue {
	struct gendisk *disk; /* 5.14+ */
};

struct bvec_iter {
	__u64 bi_sector;
	unsigned int bi_size; /* bytes left */
};

struct bio {
	struct block_device *bi_bdev; /* 5.12+ */
	unsigned int bi_opf;
	struct bvec_iter bi_iter;
};

/* Before 5.12 a bio named its disk directly. */
struct bio___gendisk {
	struct gendisk *bi_disk;
};

struct request {
	struct request_queue *q;
	struct bio *bio; /* its first bio; NULL for the flush machinery's own */
	unsigned int cmd_flags; /* the operation in the low bits */
	unsigned int rq_flags;
	unsigned int __data_len; /* bytes not yet completed */
	__u64 start_time_ns;     /* CLOCK_MONOTONIC when the request was made from its first bio; 0 when not kept */
};

/* Until 5.16 a request named its disk directly. */
struct request___gendisk {
	struct gendisk *rq_disk;
};

#pragma clang attribute pop

#endif
