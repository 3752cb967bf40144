// writeloop: N write(2) calls of SIZE bytes, timed; the tight-loop and ceiling load.
//
// The harness copies the binary to a file named "etcd" (traced: the receiver
// matches comm) or "writeloop" (not matched) and runs it. Output, one line:
//   calls=<n> elapsed_ns=<ns> ns_per_call=<x.y> cpu_ns_per_call=<x.y> threads=<t>
// ns_per_call is wall time per call and thread; cpu_ns_per_call is the process's
// CPU time (user+system, CLOCK_PROCESS_CPUTIME_ID) per call: what the calls cost
// the writer itself, without time spent waiting for a CPU.
//
// Usage: writeloop [-n calls] [-s size] [-f path] [-r calls_per_second] [-t threads]
//   -f   target file (default /dev/null); a regular file is rewound every 16384
//        writes (lseek, not traced) so it stays small.
//   -r   pace to this total rate (0: as fast as possible).
//   -t   threads sharing the calls (each opens its own fd).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long calls = 1000000;
static int size = 64;
static const char *path = "/dev/null";
static double rate;
static int threads = 1;

static long long clock_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

static void *worker(void *arg)
{
	long long n = (long long)(long)arg;
	char buf[4096];
	memset(buf, 'x', sizeof(buf));
	int fd = open(path, O_WRONLY | O_CREAT, 0644);
	if (fd < 0) {
		perror(path);
		exit(1);
	}
	int regular = strcmp(path, "/dev/null") != 0;
	double per_thread_rate = rate / threads;
	long long start = now_ns();
	for (long long i = 0; i < n; i++) {
		if (write(fd, buf, size) != size) {
			perror("write");
			exit(1);
		}
		if (regular && (i & 16383) == 16383)
			lseek(fd, 0, SEEK_SET);
		if (per_thread_rate > 0 && (i & 255) == 255) {
			long long due = start + (long long)((i + 1) * 1e9 / per_thread_rate);
			long long t;
			while ((t = now_ns()) < due) {
				if (due - t > 200000) {
					struct timespec d = {0, (due - t) / 2};
					nanosleep(&d, NULL);
				}
			}
		}
	}
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "n:s:f:r:t:")) != -1) {
		switch (opt) {
		case 'n': calls = atoll(optarg); break;
		case 's': size = atoi(optarg); break;
		case 'f': path = optarg; break;
		case 'r': rate = atof(optarg); break;
		case 't': threads = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: %s [-n calls] [-s size] [-f path] [-r rate] [-t threads]\n", argv[0]);
			return 2;
		}
	}
	if (size < 1 || size > 4096 || threads < 1 || threads > 64) {
		fprintf(stderr, "size must be 1..4096, threads 1..64\n");
		return 2;
	}
	pthread_t tids[64];
	long long cpu_start = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	long long start = now_ns();
	for (int i = 0; i < threads; i++)
		pthread_create(&tids[i], NULL, worker, (void *)(long)(calls / threads));
	for (int i = 0; i < threads; i++)
		pthread_join(tids[i], NULL);
	long long elapsed = now_ns() - start;
	long long cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu_start;
	long long done = calls / threads * threads;
	printf("calls=%lld elapsed_ns=%lld ns_per_call=%.1f cpu_ns_per_call=%.1f threads=%d\n", done, elapsed,
	       (double)elapsed * threads / done, (double)cpu / done, threads);
	return 0;
}
