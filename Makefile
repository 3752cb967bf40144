# Everything runs as root: loading BPF programs needs it (or CAP_BPF+CAP_PERFMON).
GO          ?= $(or $(shell command -v go 2>/dev/null),/usr/local/go/bin/go)
# Tests build helpers with go: keep it on PATH under sudo, whose PATH may lack it.
export PATH := $(dir $(GO)):$(PATH)
OCB_VERSION := v0.165.0
# The Go that builds the collector: contrib's v0.165.1 modules (resourcedetectionprocessor)
# declare go 1.26.9. The go command fetches this toolchain once from the module proxy
# (golang.org/toolchain); the repository's own modules build with the installed Go.
# GOFLAGS -e reaches ocb's go mod tidy only: it records what it can of the modules of
# detectors that builder-config.yaml's build tags leave out, some of which are not served.
COLLECTOR_GOTOOLCHAIN := go1.26.9
OCB         := $(shell $(GO) env GOPATH)/bin/builder
COLLECTOR   := _build/otelcol-etcd/otelcol-etcd
# bpf2go's compiler; the committed objects were built with Debian 12's clang 14.
export BPF2GO_CC    ?= clang-14
export BPF2GO_STRIP ?= llvm-strip-14

.PHONY: test race generate check-generated collector collector-pprof ocb demo etcd vet kernels image

## test: build etcd and the collector if needed, then run every test (unit, kernel, real etcd, collector end to end):
##       the receiver's module, then the tooling module (demo, bench, e2e, examples); beside them throughout, the
##       agent through a ten-minute backend outage (LONG_TEST: a light, idle-waiting load that selects no one else's
##       processes), its output printed at the end
LONG_TEST := TestAgentUnderMemoryLimitThroughLongBackendOutage
test: etcd collector
	@mkdir -p _build; \
	(cd tooling && $(GO) test -count=1 -timeout 20m -run '^$(LONG_TEST)$$' -v ./e2e) > _build/long-test.log 2>&1 & long=$$!; \
	$(GO) test -count=1 -timeout 30m ./... && \
	(cd tooling && $(GO) test -count=1 -timeout 30m -skip '^$(LONG_TEST)$$' ./...); rc=$$?; \
	wait $$long; long_rc=$$?; echo "==> $(LONG_TEST), run beside the others:"; \
	grep -E '^(=== RUN|--- |ok|FAIL|panic)|_test.go:' _build/long-test.log; \
	[ $$rc -eq 0 ] && [ $$long_rc -eq 0 ]

## race: the receiver's and the tracer's tests again under the race detector (short mode: 20 start/stop cycles)
race: etcd
	$(GO) test -count=1 -race -short -timeout 20m . ./internal/...

## vet: go vet and gofmt of both modules; the root module also for linux/arm64, and for linux/s390x, macOS and Windows (where the receiver says it needs linux/amd64 or arm64)
vet:
	$(GO) vet ./...
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...
	GOOS=linux GOARCH=arm64 $(GO) vet ./...
	GOOS=linux GOARCH=s390x $(GO) vet ./...
	cd tooling && $(GO) vet ./...
	cd tooling && GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	cd tooling && GOOS=windows GOARCH=amd64 $(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: run gofmt -w on the files above"; exit 1; }

## generate: regenerate the BPF objects (bpf2go) and the mdatagen code
generate:
	$(GO) generate ./bpf
	@# mdatagen names the generated tests' package after the checkout's folder: run it
	@# through a link named like the package, so any checkout folder works.
	tmp=$$(mktemp -d) && ln -s "$(CURDIR)" "$$tmp/etcdebpfreceiver" && \
		(cd internal/tools && $(GO) tool mdatagen "$$tmp/etcdebpfreceiver/metadata.yaml"); \
		rc=$$?; rm -rf "$$tmp"; exit $$rc

## check-generated: fail if the committed generated files differ from a fresh generate
check-generated: generate
	@git diff --exit-code --stat -- bpf internal/metadata internal/metadatatest generated_*.go documentation.md \
		|| { echo "generated files are stale: run 'make generate' and commit the result"; exit 1; }

## kernels: the kernel-facing tests on Debian's 5.10, 6.1 and 6.12 kernels under QEMU and on this machine's
##          kernel, one verdict line each (needs root, qemu-system-x86, busybox-static, cpio, e2fsprogs, debian-archive-keyring; ~6 min, kernels
##          fetched once into /var/cache/etcdebpf/kernels). Choose with KERNELS="5.10 6.1"
KERNELS ?= 5.10 6.1 6.12 host
kernels: etcd collector
	@KERNELS="$(KERNELS)" GO="$(GO)" scripts/kernels.sh

## etcd: build etcd 3.6 from the Go module proxy into /var/cache/etcdebpf (once)
etcd:
	@scripts/install-etcd.sh >/dev/null

## collector: build the otelcol-etcd distribution with ocb (pinned version; ocb builds with -trimpath, CGO_ENABLED=0)
collector: ocb
	@mkdir -p $(dir $(patsubst %/,%,$(dir $(COLLECTOR))))
	@echo "==> building $(COLLECTOR) with ocb $(OCB_VERSION) (about 2 minutes cold, seconds warm)"
	@# The stamp, dated from the start of a successful build, is what the e2e test and the demo
	@# compare with the sources: a file saved during the build, or a build cut short, means rebuild.
	@rm -f $(COLLECTOR).stamp
	@start=$$(date +%s.%N) && GOFLAGS='-buildvcs=false -e' GOTOOLCHAIN=$(COLLECTOR_GOTOOLCHAIN) $(OCB) --config builder-config.yaml && touch -d "@$$start" $(COLLECTOR).stamp
	@echo "==> built $(COLLECTOR)"

## collector-pprof: the same distribution plus contrib's pprof extension, into $(COLLECTOR_PPROF), for the
##        bench's profile of the collector (etcdbench -collcpu-profile); the shipped build stays without it
COLLECTOR_PPROF := _build/otelcol-etcd-pprof/otelcol-etcd
collector-pprof: ocb
	@mkdir -p _build
	@# The manifest is builder-config.yaml with another output path and one more extension, at contrib's release.
	@sed -e 's|output_path: ./_build/otelcol-etcd$$|output_path: ./_build/otelcol-etcd-pprof|' \
		-e 's|^extensions:$$|extensions:\n  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/extension/pprofextension v0.165.1|' \
		builder-config.yaml > _build/builder-config-pprof.yaml
	@grep -q 'otelcol-etcd-pprof$$' _build/builder-config-pprof.yaml && grep -q pprofextension _build/builder-config-pprof.yaml
	@GOFLAGS='-buildvcs=false -e' GOTOOLCHAIN=$(COLLECTOR_GOTOOLCHAIN) $(OCB) --config _build/builder-config-pprof.yaml
	@echo "==> built $(COLLECTOR_PPROF)"

IMAGE ?= localhost/otelcol-etcd:0.1.0
## image: the collector's container image $(IMAGE), built offline with podman from Containerfile (FROM scratch,
##        the built binary only); examples/kubernetes/daemonset.yaml runs it (docs/kubernetes.md)
image: collector
	@ctx=$$(mktemp -d) && cp $(COLLECTOR) "$$ctx/" && \
		podman build --pull=never --network=none -f Containerfile -t $(IMAGE) "$$ctx"; \
		rc=$$?; rm -rf "$$ctx"; exit $$rc

# ocb: install the pinned ocb unless the one in GOPATH/bin is already that version.
ocb:
	@$(OCB) version 2>&1 | grep -qx 'ocb version $(OCB_VERSION)' \
		|| { echo "==> installing ocb $(OCB_VERSION)"; GOFLAGS= $(GO) install go.opentelemetry.io/collector/cmd/builder@$(OCB_VERSION); }

## demo: trace a real local etcd through the collector to an OTLP backend (needs root; builds the collector
##       and installs etcd first if needed). Flags: make demo DEMO_FLAGS="-duration 10s -v"
demo:
	@echo "==> compiling tooling/cmd/etcdebpf-demo"
	@cd tooling && $(GO) run ./cmd/etcdebpf-demo $(DEMO_FLAGS)

.PHONY: bench
## bench: cost to etcd (A-E rounds vs bpftrace and strace), tight loop, ceiling, BPF stats; report in bench/results/latest.md (needs root; ~12-17 min)
bench: etcd
	cd tooling && $(GO) run ./cmd/etcdbench -out $(CURDIR)/bench/results/latest.md $(BENCH_FLAGS)

.PHONY: bench-gateway
## bench-gateway: 16 simulated agents into one gateway (examples/kubernetes/gateway.yaml): every call's records
##       into VictoriaLogs at rising rates, then slow calls + histograms' points of many nodes into VictoriaMetrics:
##       its CPU per record and per point, memory, counters and what was stored; report in bench/results/gateway.md
##       (needs root; ~10-25 min). Flags: make bench-gateway BENCH_FLAGS="-gateway-rate 4000 -gateway-nodes 64"
bench-gateway:
	cd tooling && $(GO) run ./cmd/etcdbench -phases gateway,gateway-metrics -out $(CURDIR)/bench/results/gateway.md $(BENCH_FLAGS)
