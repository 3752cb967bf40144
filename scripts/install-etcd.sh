#!/usr/bin/env bash
# install-etcd.sh - build etcd (server), etcdctl and etcd's benchmark tool from
# the Go module proxy and install them into a cache directory, idempotently.
#
# Usage: scripts/install-etcd.sh [--print-dir]
#
#   (no args)    Install if needed. Progress goes to stderr; the last line on
#                stdout is the absolute bin directory, so callers can do
#                  ETCD_BIN=$(scripts/install-etcd.sh | tail -1)
#   --print-dir  Only print the bin directory this script installs into
#                (does not check, download or build anything).
#
# Environment:
#   ETCD_VERSION  etcd version to build, e.g. 3.6.14 (a leading "v" is accepted).
#                 Default: pinned below. Only 3.5.x and newer are supported.
#   ETCD_CACHE    cache root. Default: /var/cache/etcdebpf.
#                 Binaries go to $ETCD_CACHE/etcd-v$ETCD_VERSION/bin/{etcd,etcdctl,benchmark}.
#   GO            go command to use. Default: go from PATH, else /usr/local/go/bin/go.
#   GOPROXY, GOTOOLCHAIN, GOMODCACHE, GOCACHE are honoured as usual.
#
# Why not `go install go.etcd.io/etcd/server/v3@vX`: etcd's modules carry
# replace directives, which `go install pkg@version` rejects. Instead we create
# a throwaway module, `go get` all of etcd's modules at the same version, and
# `go build` the three main packages from it.
#
# Why 3.6.14: it is the newest 3.6 patch for which the proxy serves *every*
# module we need. The root module go.etcd.io/etcd/v3 (which holds
# tools/benchmark) answers 403 "not available" for v3.6.15 and v3.6.16 even
# though server/etcdctl/etc. exist at those versions.
#
# The server binary is installed as "etcd" so the process name (comm) is
# exactly "etcd", which the eBPF receiver matches on.

set -euo pipefail

readonly DEFAULT_ETCD_VERSION=3.6.14

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'install-etcd.sh: error: %s\n' "$1" >&2
  shift
  local line
  for line in "$@"; do printf '  fix: %s\n' "$line" >&2; done
  exit 1
}

usage() {
  sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
}

print_dir_only=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --print-dir) print_dir_only=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" "run: $0 [--print-dir]" ;;
  esac
  shift
done

# ---- version and paths ------------------------------------------------------

version="${ETCD_VERSION:-$DEFAULT_ETCD_VERSION}"
version="${version#v}"
if ! [[ "$version" =~ ^3\.([0-9]+)\.([0-9]+)(-[0-9A-Za-z.]+)?$ ]]; then
  die "ETCD_VERSION='${ETCD_VERSION:-}' is not a valid etcd 3.x version" \
    "set ETCD_VERSION to something like $DEFAULT_ETCD_VERSION (or unset it for the default)"
fi
minor="${BASH_REMATCH[1]}"
patch="${BASH_REMATCH[2]}"
if ((minor < 5)); then
  die "etcd $version is not supported (module layout before 3.5 differs)" \
    "use ETCD_VERSION=3.5.x or newer (default $DEFAULT_ETCD_VERSION)"
fi

cache="${ETCD_CACHE:-/var/cache/etcdebpf}"
[[ -n "$cache" ]] || die "ETCD_CACHE is set but empty" "unset ETCD_CACHE or point it at a writable directory"
[[ "$cache" == /* ]] || cache="${PWD%/}/$cache"
cache="${cache%/}"
install_dir="$cache/etcd-v$version"
bin_dir="$install_dir/bin"

if ((print_dir_only)); then
  printf '%s\n' "$bin_dir"
  exit 0
fi

# is_installed DIR: all three binaries present and etcd reports $version.
is_installed() {
  local dir="$1" b out
  for b in etcd etcdctl benchmark; do
    [[ -f "$dir/$b" && -x "$dir/$b" ]] || return 1
  done
  out="$("$dir/etcd" --version 2>/dev/null)" || return 1
  [[ "$out" == *"etcd Version: $version"* ]] || return 1
  out="$("$dir/etcdctl" version 2>/dev/null)" || return 1
  [[ "$out" == *"etcdctl version: $version"* ]] || return 1
  return 0
}

if is_installed "$bin_dir"; then
  log "etcd $version already installed in $bin_dir"
  printf '%s\n' "$bin_dir"
  exit 0
fi

# ---- preflight --------------------------------------------------------------

GO="${GO:-}"
if [[ -z "$GO" ]]; then
  if command -v go >/dev/null 2>&1; then
    GO="$(command -v go)"
  elif [[ -x /usr/local/go/bin/go ]]; then
    GO=/usr/local/go/bin/go
    log "go not in PATH, using $GO"
  else
    die "go not found (not in PATH and no /usr/local/go/bin/go)" \
      "install Go 1.25 or newer from https://go.dev/dl/ and add its bin dir to PATH," \
      "or set GO=/path/to/go"
  fi
fi
"$GO" version >/dev/null 2>&1 || die "'$GO version' failed" "check your Go installation or set GO=/path/to/go"

if [[ -z "${HOME:-}" && -z "${GOCACHE:-}" ]]; then
  die "neither HOME nor GOCACHE is set, go cannot locate its build cache" \
    "export HOME=/root (or any writable dir), or set GOCACHE and GOMODCACHE"
fi

if ! mkdir -p "$cache" 2>/dev/null || [[ ! -w "$cache" ]]; then
  die "cache directory $cache is not writable" \
    "run as root, or set ETCD_CACHE to a writable directory (e.g. ETCD_CACHE=\$HOME/.cache/etcdebpf)"
fi

# Serialise concurrent runs for the same version (parallel CI jobs).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/.etcd-v$version.lock"
  if ! flock -n 9; then
    log "waiting for another install of etcd $version to finish"
    flock 9
  fi
  if is_installed "$bin_dir"; then
    log "etcd $version already installed in $bin_dir"
    printf '%s\n' "$bin_dir"
    exit 0
  fi
  # We hold the lock, so leftovers of interrupted (e.g. SIGKILLed) runs are stale.
  rm -rf "$cache/.tmp-etcd-v$version".* "$cache/.old-etcd-v$version".* 2>/dev/null || true
fi

# Scratch dir inside the cache, so the final rename is atomic (same filesystem).
work="$(mktemp -d "$cache/.tmp-etcd-v$version.XXXXXX")"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Controlled go environment; nothing is assumed about the caller's GOFLAGS.
export GOFLAGS="-mod=mod -buildvcs=false"
export GOWORK=off
export CGO_ENABLED=0
export GO111MODULE=on
unset GOOS GOARCH GOBIN # build for this machine; the binaries must run here

tag="v$version"
modules=(
  "go.etcd.io/etcd/v3@$tag"
  "go.etcd.io/etcd/server/v3@$tag"
  "go.etcd.io/etcd/client/v3@$tag"
  "go.etcd.io/etcd/client/pkg/v3@$tag"
  "go.etcd.io/etcd/api/v3@$tag"
  "go.etcd.io/etcd/pkg/v3@$tag"
  "go.etcd.io/etcd/etcdctl/v3@$tag"
  "go.etcd.io/etcd/etcdutl/v3@$tag"
  "go.etcd.io/etcd/tests/v3@$tag"
)
if ((minor == 5)); then
  # 3.5 still has raft in-tree and the v2 client; 3.6+ use go.etcd.io/raft/v3,
  # whose version is pinned by etcd's own go.mod files.
  modules+=(
    "go.etcd.io/etcd/raft/v3@$tag"
    "go.etcd.io/etcd/client/v2@v2.305.$patch${version#3.5."$patch"}"
  )
fi

log "etcd $version -> $bin_dir (using $("$GO" version))"
log "downloading modules"
# (&& chains: set -e is inactive inside a command that is followed by ||.)
(
  cd "$work" &&
    "$GO" mod init etcd-build &&
    "$GO" get "${modules[@]}"
) >&2 || die "downloading etcd $version modules failed (see go output above)" \
  "check that the Go module proxy is reachable: GOPROXY=$("$GO" env GOPROXY)" \
  "if go reports 'requires go >= X', upgrade Go or unset GOTOOLCHAIN=local so go can fetch a toolchain" \
  "check that the proxy serves all modules at $tag, e.g.: go list -m -json go.etcd.io/etcd/v3@$tag" \
  "or choose another version: ETCD_VERSION=$DEFAULT_ETCD_VERSION (list: go list -m -versions go.etcd.io/etcd/server/v3)"

stage="$work/stage"
mkdir -p "$stage/bin"
build() { # name package
  log "building $1"
  # Not stripped (-s -w) on purpose: uprobes resolve Go symbols from the ELF symtab.
  (cd "$work" && "$GO" build -trimpath -o "$stage/bin/$1" "$2") >&2 ||
    die "building $1 ($2) failed (see go output above)" \
      "if go asked for a newer toolchain, upgrade Go or unset GOTOOLCHAIN=local so go can fetch one"
}
build etcd go.etcd.io/etcd/server/v3
build etcdctl go.etcd.io/etcd/etcdctl/v3
build benchmark go.etcd.io/etcd/v3/tools/benchmark

log "verifying"
is_installed "$stage/bin" || die "built binaries do not report etcd version $version: $("$stage/bin/etcd" --version 2>&1 | head -1)" \
  "this is a bug in install-etcd.sh or an unexpected module layout for $version"

# Provenance: the exact dependency set the binaries were built from.
cp "$work/go.mod" "$work/go.sum" "$stage/"
{
  echo "etcd_version=$version"
  echo "go_version=$("$GO" env GOVERSION)"
  echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "go_get=go get ${modules[*]}"
} >"$stage/BUILD-INFO"

log "installing into $install_dir"
if [[ -e "$install_dir" ]]; then
  # Stale or broken previous install: move it aside, then swap in the new one.
  old="$(mktemp -d "$cache/.old-etcd-v$version.XXXXXX")"
  mv -T "$install_dir" "$old/dir"
  mv -T "$stage" "$install_dir"
  rm -rf "$old"
else
  mv -T "$stage" "$install_dir"
fi

log "done: etcd $version installed"
printf '%s\n' "$bin_dir"
