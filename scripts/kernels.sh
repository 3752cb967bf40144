#!/usr/bin/env bash
# kernels.sh - run the kernel-facing tests on the kernels etcd runs on: Debian's
# cloud kernels 5.10, 6.1 and 6.12 under QEMU, and this machine's own kernel.
#
# Usage: sudo make kernels [KERNELS="5.10 6.1 6.12 host"]
#        sudo scripts/kernels.sh [kernel...]
#
# Prints one line per kernel with its verdict and exits non-zero if any fails.
#
#   5.10   Debian 11 (bullseye):            Debian 11, Amazon Linux 2, Bottlerocket
#   6.1    Debian 12 (bookworm):            Debian 12, AL2023, COS
#   6.12   Debian 13 (trixie):              Debian 13; the current LTS
#   host   the running kernel, no VM
#
# The kernels are Debian's linux-image-*-cloud-amd64 packages, fetched once with
# apt-get download from the Debian mirror this machine's apt sources name (never
# installed on the host) and unpacked under $KERNELS_CACHE. (bookworm-backports'
# 6.12.95 faulted in its own text patching during boot in half of the boots under
# this QEMU's TCG; trixie's 6.12.117 booted every time.) Each boots under QEMU
# (TCG) with an initramfs holding busybox, the test binaries, etcd and the
# collector, runs the tests as root and as nobody, and powers off.
#
# Environment:
#   KERNELS         kernels to run (default: 5.10 6.1 6.12 host)
#   KERNELS_CACHE   where the kernels are kept (default: /var/cache/etcdebpf/kernels)
#   KERNELS_LOGS    per-kernel logs (default: _build/kernels)
#   KERNELS_MEM     guest memory (default: 2G)
#   KERNELS_TIMEOUT seconds a guest may run (default: 1800; one took 550 s on a
#                   busy 2-CPU machine)
#   KERNELS_JOBS    guests booted at once (default: the number of CPUs); the host
#                   line runs after them
#   ETCD_BIN        directory holding a static etcd (default: scripts/install-etcd.sh's)
#   GO              go command (default: go from PATH, else /usr/local/go/bin/go)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
KERNELS=${KERNELS:-"5.10 6.1 6.12 host"}
[ $# -gt 0 ] && KERNELS="$*"
KERNELS_CACHE=${KERNELS_CACHE:-/var/cache/etcdebpf/kernels}
KERNELS_LOGS=${KERNELS_LOGS:-$ROOT/_build/kernels}
KERNELS_MEM=${KERNELS_MEM:-2G}
KERNELS_TIMEOUT=${KERNELS_TIMEOUT:-1800}
KERNELS_JOBS=${KERNELS_JOBS:-$(nproc)}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
COLLECTOR=$ROOT/_build/otelcol-etcd/otelcol-etcd
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'kernels.sh: error: %s\n' "$1" >&2
	shift
	for fix in "$@"; do printf '  fix: %s\n' "$fix" >&2; done
	exit 1
}

# suite_of names the Debian suite whose cloud kernel is the given version.
suite_of() {
	case $1 in
	5.10) echo bullseye ;;
	6.1) echo bookworm ;;
	6.12) echo trixie ;;
	*) return 1 ;;
	esac
}

# debian_mirror prints the first Debian archive URI of this machine's apt
# sources (deb822 .sources files and one-line .list files alike).
debian_mirror() {
	local f uri
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		while read -r uri; do
			uri=${uri%/}
			case $uri in */debian) echo "$uri" && return 0 ;; esac
		done < <(sed -n -e 's/^URIs:[[:space:]]*//p' -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' "$f" | tr ' ' '\n')
	done
	return 1
}

# fetch_kernel makes $KERNELS_CACHE/<version>/vmlinuz exist: apt-get download
# through a private apt configuration that lists only the kernel's suite, so
# neither the host's package state nor its sources are touched.
fetch_kernel() {
	local version=$1 dir=$KERNELS_CACHE/$1 suite mirror apt pkg
	[ -s "$dir/vmlinuz" ] && [ -e "$dir/modules/order" ] && return 0
	suite=$(suite_of "$version") || die "no Debian kernel known for version $version" "choose among 5.10 6.1 6.12 host"
	mirror=$(debian_mirror) || die "no Debian archive (a URI ending in /debian) in /etc/apt/sources.list*" \
		"add the Debian mirror you use to the apt sources"
	[ -r "$KEYRING" ] || die "$KEYRING is missing" "apt-get install debian-archive-keyring"
	log "fetching Debian's $suite cloud kernel ($version)"
	apt=$KERNELS_CACHE/apt/$suite
	mkdir -p "$apt/empty.d" "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs" "$dir"
	echo "deb [signed-by=$KEYRING] $mirror $suite main" >"$apt/sources.list"
	: >"$apt/status"
	local opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o "Dir::Etc::sourceparts=$apt/empty.d"
		-o "Dir::Etc::preferencesparts=$apt/empty.d" -o "Dir::State::Lists=$apt/lists"
		-o "Dir::State::status=$apt/status" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
	apt-get "${opts[@]}" -qq update >"$apt/update.log" 2>&1 ||
		die "apt-get update for $suite failed: $(tail -3 "$apt/update.log")" "check network access to $mirror"
	# The meta package depends on the versioned image package.
	pkg=$(apt-cache "${opts[@]}" depends linux-image-cloud-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -1)
	[ -n "$pkg" ] || die "no linux-image-*-cloud-amd64 in $suite at $mirror"
	(cd "$apt/debs" && apt-get "${opts[@]}" -qq download "$pkg") ||
		die "apt-get download $pkg failed"
	rm -rf "$dir/unpacked"
	dpkg-deb -x "$apt/debs/${pkg}"_*.deb "$dir/unpacked"
	keep_modules "$dir/unpacked" "$dir"
	cp "$dir/unpacked"/boot/vmlinuz-* "$dir/vmlinuz.tmp"
	echo "${pkg#linux-image-}" >"$dir/release"
	rm -rf "$dir/unpacked" "$apt/debs/${pkg}"_*.deb
	mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
}

# The guests' drive is virtio-blk on virtio-pci, which Debian's cloud kernels build
# as modules (6.12 has virtio-pci built in). keep_modules copies those the kernel
# has as modules, and what they depend on, out of the unpacked package into
# <dir>/modules, decompressed (busybox's insmod reads plain .ko files), with
# "order" listing them dependencies first, as /init loads them.
GUEST_MODULES="virtio_pci virtio_blk"
keep_modules() {
	local unpacked=$1 dir=$2 tree m
	tree=$(find "$unpacked" -type d -path '*/lib/modules/*' -name kernel -print -quit)
	[ -n "$tree" ] || die "no lib/modules/<release>/kernel in the unpacked kernel package"
	rm -rf "$dir/modules"
	mkdir -p "$dir/modules"
	: >"$dir/modules/order"
	keep_module() {
		local name=$1 file dep
		grep -qx "$name" "$dir/modules/order" && return 0
		file=$(find "$tree" \( -name "$name.ko" -o -name "$name.ko.xz" -o -name "$name.ko.zst" \) -print -quit)
		[ -n "$file" ] || return 0 # built into the kernel
		case $file in
		*.xz) xz -dc "$file" ;;
		*.zst) zstd -dcq "$file" ;;
		*) cat "$file" ;;
		esac >"$dir/modules/$name.ko"
		# The .modinfo section's depends= names the modules this one needs.
		for dep in $(grep -a -o 'depends=[a-z0-9_,-]*' "$dir/modules/$name.ko" | head -1 | cut -d= -f2 | tr ',' ' '); do
			keep_module "$dep"
		done
		echo "$name" >>"$dir/modules/order"
	}
	for m in $GUEST_MODULES; do keep_module "$m"; done
}

# The tests a guest runs, per test binary: the kernel-facing ones (BPF load and
# attach, payload capture, privileges, hostile hosts, the receiver against a real
# etcd, flood accounting, leaks) and the built collector end to end. Short mode,
# as under the race detector: 20 start/stop cycles, not 200 (TCG is ~10x slower).
TESTS=(
	"tracer.test ."
	"etcdebpfreceiver.test ."
	"e2e.test TestCollectorExportsEtcdSyscallsOverOTLP|TestCollectorDeliversEveryWriteWithPayload"
)
# Tests whose floods assume a host-speed CPU: under TCG (~10x slower) the impostor
# cannot outrun the budget and the budget test's writer cannot finish in its minute.
# The guests skip them, saying so in their log; the host line runs them.
GUEST_SKIP='^(TestImpostorCannotTakeEtcdsRecords|TestBudgetBoundsAFloodingProcess)$'

# build_guest_files puts the test binaries, etcd, etcdwriter and the collector,
# all static, under $WORK/files.
build_guest_files() {
	local files=$WORK/files etcd_bin
	mkdir -p "$files/bin" "$files/opt/etcd" "$files/opt/etcdwriter" "$files/src/docs"
	cp -r testdata metadata.yaml "$files/src/" # the receiver's config tests read them
	cp docs/configuration.md "$files/src/docs/" # and the reference they check it against
	log "building the test binaries (static)"
	CGO_ENABLED=0 "$GO" test -c -o "$files/bin/" . ./internal/tracer
	(cd tooling && CGO_ENABLED=0 "$GO" test -c -o "$files/bin/" ./e2e)
	CGO_ENABLED=0 "$GO" build -o "$files/opt/etcdwriter/etcd" ./internal/testing/etcdwriter/cmd/etcdwriter
	etcd_bin=${ETCD_BIN:-$(scripts/install-etcd.sh | tail -1)}
	[ -x "$etcd_bin/etcd" ] || die "no etcd at $etcd_bin/etcd" "run scripts/install-etcd.sh, or set ETCD_BIN"
	cp "$etcd_bin/etcd" "$files/opt/etcd/etcd"
	[ -x "$COLLECTOR" ] || die "no collector at $COLLECTOR" "run make collector (make kernels does)"
	cp "$COLLECTOR" "$files/opt/otelcol-etcd"
}

# build_initramfs packs busybox, GNU dd (the tests' decoys use flags busybox's
# lacks) with its libraries, the guest files and /init into $WORK/initramfs.cpio.
build_initramfs() {
	local root=$WORK/root lib
	rm -rf "$root"
	mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,lib64,lib/x86_64-linux-gnu}
	cp -a "$WORK/files/." "$root/"
	cp "$(command -v busybox)" "$root/bin/busybox"
	cp "$(command -v dd)" "$root/bin/dd"
	for lib in $(ldd "$(command -v dd)" | grep -o '/[^ ]*'); do cp -L "$lib" "$root$lib"; done
	local k
	for k in $KERNELS; do
		[ "$k" = host ] && continue
		mkdir -p "$root/lib/modules/$(cat "$KERNELS_CACHE/$k/release")"
		cp "$KERNELS_CACHE/$k/modules/"* "$root/lib/modules/$(cat "$KERNELS_CACHE/$k/release")/"
	done
	local run_tests="" entry
	for entry in "${TESTS[@]}"; do run_tests+="run ${entry%% *} '${entry#* }'"$'\n'; done
	cat >"$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
echo ETCDEBPF-GUEST-INIT
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
modules=/lib/modules/\$(uname -r)
for m in \$(cat \$modules/order); do insmod \$modules/\$m.ko || echo "ETCDEBPF-MODULE \$m: insmod failed"; done
for i in \$(seq 50); do [ -b /dev/vda ] && break; sleep 0.1; done
echo "ETCDEBPF-DISK modules: \$(cat \$modules/order | tr '\\n' ' ')/dev/vda: \$([ -b /dev/vda ] && echo present || echo MISSING)"
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs -o mode=1777 tmp /tmp
ip link set lo up
echo "ETCDEBPF-KERNEL \$(uname -r) perf_event_paranoid=\$(cat /proc/sys/kernel/perf_event_paranoid)"
echo 'ETCDEBPF-SKIP $GUEST_SKIP: their floods need a host-speed CPU (TCG is ~10x slower); the host line runs them'
export ETCDEBPF_REQUIRE_ALL=1 ETCD_BIN=/opt/etcd ETCDEBPF_ETCDWRITER=/opt/etcdwriter/etcd ETCDEBPF_COLLECTOR=/opt/otelcol-etcd
export ETCDEBPF_TEST_DISK=/dev/vda ETCDEBPF_TEST_SLOW_DISK=/dev/vdb
verdict=PASS
run() {
	echo "ETCDEBPF-RUN \$1"
	cd /src
	if /bin/\$1 -test.v -test.count=1 -test.short -test.timeout=20m -test.run "\$2" -test.skip '$GUEST_SKIP'; then
		echo "ETCDEBPF-RESULT \$1 PASS"
	else
		echo "ETCDEBPF-RESULT \$1 FAIL"
		verdict=FAIL
	fi
}
$run_tests
echo "ETCDEBPF-VERDICT \$verdict"
poweroff -f
INIT
	chmod 0755 "$root" "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet) >"$WORK/initramfs.cpio"
}

# boot runs the guest once; its serial console goes to the log. The guest's
# virtio drives are fresh, fully initialised ext4 images: /dev/vda, the quiet
# disk of the disk tests (internal/testing/disktest), whose /sys/block stat only
# their own I/O moves, and /dev/vdb, a slow device: QEMU serves it at 25 requests
# a second, so that its requests wait on the device, not in the guest's kernel.
boot() {
	local version=$1 log=$2 disk=$WORK/disk.$1.img slow=$WORK/slow.$1.img
	rm -f "$disk" "$slow"
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$disk" 64M
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$slow" 64M
	timeout "$KERNELS_TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m "$KERNELS_MEM" \
		-kernel "$KERNELS_CACHE/$version/vmlinuz" -initrd "$WORK/initramfs.cpio" \
		-drive "file=$disk,format=raw,if=virtio" \
		-drive "file=$slow,format=raw,if=virtio,throttling.iops-total=25" \
		-append "console=ttyS0 panic=-1 quiet" -nographic -no-reboot \
		</dev/null >"$log" 2>&1 || true
	tr -d '\r' <"$log" >"$log.tmp" && mv "$log.tmp" "$log"
}

# run_guest boots a kernel and prints its verdict line. QEMU's TCG sometimes
# faults in the kernel's own boot code (text patching; not seen under a real
# CPU): a kernel that oopses before /init runs is booted again, twice at most.
run_guest() {
	local version=$1 log=$KERNELS_LOGS/$1.log attempt start=$SECONDS
	for attempt in 1 2 3; do
		boot "$version" "$log"
		grep -q '^ETCDEBPF-GUEST-INIT' "$log" && break
		grep -qE 'Oops|PANIC|Kernel panic' "$log" || break
		log "$version: the emulated kernel faulted before /init (attempt $attempt), booting again"
	done
	verdict "$version" "$(cat "$KERNELS_CACHE/$version/release")" "$log" $((SECONDS - start))
}

# run_host runs the same test binaries on this machine's kernel.
run_host() {
	local log=$KERNELS_LOGS/host.log start=$SECONDS entry verdict=PASS
	: >"$log"
	for entry in "${TESTS[@]}"; do
		echo "ETCDEBPF-RUN ${entry%% *}" >>"$log"
		if (cd "$WORK/files/src" && ETCDEBPF_REQUIRE_ALL=1 ETCD_BIN=$WORK/files/opt/etcd ETCDEBPF_ETCDWRITER=$WORK/files/opt/etcdwriter/etcd \
			ETCDEBPF_COLLECTOR=$WORK/files/opt/otelcol-etcd "$WORK/files/bin/${entry%% *}" -test.v -test.count=1 -test.short \
			-test.timeout=20m -test.run "${entry#* }") >>"$log" 2>&1; then
			echo "ETCDEBPF-RESULT ${entry%% *} PASS" >>"$log"
		else
			echo "ETCDEBPF-RESULT ${entry%% *} FAIL" >>"$log"
			verdict=FAIL
		fi
	done
	echo "ETCDEBPF-VERDICT $verdict" >>"$log"
	verdict host "$(uname -r)" "$log" $((SECONDS - start))
}

# verdict prints the kernel's line; on failure, the failed tests and the log's tail.
verdict() {
	local version=$1 release=${2:-?} log=$3 secs=$4 result
	result=$(sed -n 's/^ETCDEBPF-VERDICT //p' "$log")
	log "$version: ${result:-NO VERDICT} after ${secs}s"
	case $result in
	PASS)
		printf '%-5s %-28s PASS  %4ds  %s\n' "$version" "$release" "$secs" "$log"
		sed -n 's/^ETCDEBPF-SKIP /      skipped: /p' "$log"
		;;
	*)
		[ -n "$result" ] || result="NO VERDICT (the guest crashed or timed out after ${KERNELS_TIMEOUT}s)"
		printf '%-5s %-28s FAIL  %4ds  %s: %s\n' "$version" "$release" "$secs" "$log" "$result"
		grep -E '^(--- FAIL|    --- FAIL|ETCDEBPF-RESULT .* FAIL)' "$log" | sed 's/^/      /' || true
		echo "      last lines of $log:"
		tail -n 40 "$log" | sed 's/^/      | /'
		;;
	esac
}

if [ "${1:-}" = "--fetch-only" ]; then
	shift
	for k in ${*:-5.10 6.1 6.12}; do fetch_kernel "$k"; done
	exit 0
fi

[ "$(id -u)" = 0 ] || die "the tests load BPF programs and run as nobody: run as root (sudo make kernels)"
for k in $KERNELS; do
	[ "$k" = host ] || suite_of "$k" >/dev/null || die "unknown kernel $k" "KERNELS takes any of: 5.10 6.1 6.12 host"
done
for tool in qemu-system-x86_64 busybox cpio apt-get dpkg-deb mkfs.ext4; do
	command -v "$tool" >/dev/null || die "$tool is missing" "apt-get install qemu-system-x86 busybox-static cpio e2fsprogs"
done
! ldd "$(command -v busybox)" >/dev/null 2>&1 || die "busybox is not the static one" "apt-get install busybox-static"

mkdir -p "$KERNELS_LOGS"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for k in $KERNELS; do [ "$k" = host ] || fetch_kernel "$k"; done
build_guest_files
build_initramfs
log "initramfs: $(du -m "$WORK/initramfs.cpio" | cut -f1) MB; kernels: $KERNELS; per-kernel logs in $KERNELS_LOGS"

# Guests run side by side, KERNELS_JOBS at a time (each is one emulated CPU);
# the host line runs alone after them. Verdicts print in the order asked.
running=0
for k in $KERNELS; do
	[ "$k" = host ] && continue
	if [ "$running" -ge "$KERNELS_JOBS" ]; then
		wait -n || true
		running=$((running - 1))
	fi
	log "booting $k"
	run_guest "$k" >"$WORK/verdict.$k" &
	running=$((running + 1))
done
wait
for k in $KERNELS; do
	if [ "$k" = host ]; then
		log "running the tests on this machine's kernel"
		run_host >"$WORK/verdict.host"
	fi
done
echo
FAILED=0
for k in $KERNELS; do
	cat "$WORK/verdict.$k"
	grep -q '^[^ ]* *[^ ]* *PASS ' "$WORK/verdict.$k" || FAILED=1
done
exit $FAILED
