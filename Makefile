# go-bitvmx-p2p. The README's two commands: `make demo` and `make test`.
GO       ?= go
BIN      ?= bin
# A count of inputs, not a duration: Go 1.26's fuzzer can fail a target
# with "context deadline exceeded" when a duration ends while a worker is
# busy (golang/go#75804, fixed in Go 1.27), which a loaded CI machine hits.
FUZZTIME ?= 10000x
# What p2pnode --version prints: git describe of the tree built, or the
# module version from the build info when there is no git (see version.go).
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null)
# Packages the race-enabled test run covers; every package with tests.
PKGS     ?= ./...

.PHONY: all build test test-stress test-relay lint fuzz bench demo proto clean install install-systemd interop-deps netns-deps

all: build

## build: the p2pnode binary in bin/
build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/p2pnode ./cmd/p2pnode

## test: formatting, vet, the JS interop peer's dependencies, the tools of
## the network-namespace tests, the race-enabled test suite, the allocation
## guards without the race detector (which makes sync.Pool drop what it is
## given), and a short fuzz run
test: lint interop-deps netns-deps
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(GO) test -count=1 -run Allocations ./handler/ ./p2p/
	$(MAKE) --no-print-directory fuzz

## lint: gofmt, go vet and go mod tidy must be clean
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@out=$$($(GO) mod tidy -diff 2>&1) || { \
		echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit the result. go mod tidy -diff says:"; \
		echo "$$out"; exit 1; }

## test-stress: the race-enabled suite made to show timing dependencies, in
## three rounds: every package but cmd/ at GOMAXPROCS 1, 2 and 4, each
## STRESS_COUNT times; cmd/ at GOMAXPROCS 1, 2 and 4 once each (its tests
## mostly wait on child p2pnode processes, which -cpu does not reach, and
## take about 4.5 min a round at load 10-14 on two cores, 10 min beside two
## more busy threads); then the whole suite once more beside a CPU hog
## (internal/cpuhog, HOG_PROCS busy threads: load about 8 on two cores),
## which is stopped however that round ends, and stops itself after HOG_FOR
## anyway. Every round runs; the target fails at the end if any failed.
## Each test binary is bounded by STRESS_TIMEOUT. About 25 min on two cores.
STRESS_CPU     ?= 1,2,4
STRESS_COUNT   ?= 3
STRESS_TIMEOUT ?= 30m
HOG_PROCS      ?= $$((3 * $$(nproc 2>/dev/null || echo 2)))
HOG_FOR        ?= 45m
test-stress: interop-deps
	$(GO) build -o $(BIN)/cpuhog ./internal/cpuhog
	$(GO) test -race -count 1 -run '^$$' $(PKGS) >/dev/null
	@failed=""; \
	echo "== round 1: -cpu $(STRESS_CPU) -count $(STRESS_COUNT), all but cmd/"; \
	$(GO) test -race -cpu $(STRESS_CPU) -count $(STRESS_COUNT) -timeout $(STRESS_TIMEOUT) \
		$$($(GO) list $(PKGS) | grep -v '/cmd/') || failed="$$failed 1"; \
	echo "== round 2: -cpu $(STRESS_CPU), cmd/"; \
	$(GO) test -race -cpu $(STRESS_CPU) -count 1 -timeout $(STRESS_TIMEOUT) ./cmd/... || failed="$$failed 2"; \
	echo "== round 3: everything beside a CPU hog"; \
	$(BIN)/cpuhog -procs $(HOG_PROCS) -for $(HOG_FOR) & hog=$$!; \
	trap 'kill $$hog 2>/dev/null; wait $$hog 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	echo "cpuhog: pid $$hog, $(HOG_PROCS) busy threads"; \
	$(GO) test -race -count 1 -timeout $(STRESS_TIMEOUT) $(PKGS) || failed="$$failed 3"; \
	if [ -n "$$failed" ]; then echo "test-stress: FAILED in round(s)$$failed"; exit 1; fi; \
	echo "test-stress: all rounds passed"

## interop-deps: the JS peer of test/interop (npm ci, pinned by its
## package-lock.json), only when node_modules is missing or older than the
## lock file; nothing without npm (the interop test then skips itself).
INTEROP ?= test/interop
interop-deps:
	@if command -v npm >/dev/null 2>&1; then \
		if [ ! -f $(INTEROP)/node_modules/.package-lock.json ] || \
		   [ $(INTEROP)/package-lock.json -nt $(INTEROP)/node_modules/.package-lock.json ]; then \
			npm ci --prefix $(INTEROP) --no-audit --no-fund; \
		fi; \
	fi

## netns-deps: iproute2 and iptables for the relay tests across network
## namespaces (cmd/p2pnode/e2e_relay_test.go), from Debian's apt when they are
## missing and this runs as root. Without them (or root) those tests skip,
## and fail when the environment variable CI is set.
netns-deps:
	@if ! command -v ip >/dev/null 2>&1 || ! command -v iptables >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 iptables; \
		else \
			echo "netns-deps: ip or iptables missing and not root with apt-get: the network-namespace relay tests will skip (fail under CI)"; \
		fi; \
	fi

## test-relay: the relay, NAT and hole-punching tests alone (the
## network-namespace ones need root: see netns-deps)
test-relay: netns-deps
	$(GO) test -race -count=1 -timeout 5m -run 'Relay|HolePunch|CheckWays|MemberACL|AcrossNATs' ./allowlist/ ./p2p/ ./cmd/p2pnode/

## fuzz: each fuzz target for FUZZTIME inputs (decoders of everything a peer or a file can send)
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzReadFrame$$' -fuzztime $(FUZZTIME) ./p2p/
	$(GO) test -run '^$$' -fuzz '^FuzzEnvelope$$' -fuzztime $(FUZZTIME) ./handler/
	$(GO) test -run '^$$' -fuzz '^FuzzRecords$$' -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./membership/
	$(GO) test -run '^$$' -fuzz '^FuzzOpenSealed$$' -fuzztime $(FUZZTIME) ./dht/
	$(GO) test -run '^$$' -fuzz '^FuzzReadFrame$$' -fuzztime $(FUZZTIME) ./membership/gossip/
	@for t in $$($(GO) test -list '^Fuzz' ./allowlist/ | grep '^Fuzz'); do \
		$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./allowlist/ || exit 1; done

## bench: the benchmarks, each reporting its ratio to a bare go-libp2p baseline (x-bare)
bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

## demo: local nodes exchanging messages on loopback, no files or flags needed
demo: build
	$(BIN)/p2pnode demo

## proto: regenerate the protobuf code (needs protoc: apt-get install protobuf-compiler;
## protoc-gen-go and protoc-gen-connect-go are pinned by go.mod)
proto:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go connectrpc.com/connect/cmd/protoc-gen-connect-go
	cd p2p/pb && PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc --go_out=. --go_opt=paths=source_relative *.proto
	@if [ -d handler/pb ]; then cd handler/pb && PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc --go_out=. --go_opt=paths=source_relative *.proto; fi
	cd membership/pb && PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc --go_out=. --go_opt=paths=source_relative *.proto
	cd control/pb && PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc --go_out=. --go_opt=paths=source_relative \
		--connect-go_out=. --connect-go_opt=paths=source_relative,simple control.proto
	cd membership/gossip/pb && PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc --go_out=. --go_opt=paths=source_relative *.proto

clean:
	rm -rf $(BIN)

## install: the p2pnode binary in $(DESTDIR)$(PREFIX)/bin (default /usr/local/bin)
PREFIX ?= /usr/local
install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN)/p2pnode $(DESTDIR)$(PREFIX)/bin/p2pnode

## install-systemd: the systemd unit in $(DESTDIR)/etc/systemd/system, running $(PREFIX)/bin/p2pnode
## (then: useradd --system --home-dir /var/lib/p2pnode --shell /usr/sbin/nologin p2pnode; systemctl daemon-reload)
install-systemd:
	install -d $(DESTDIR)/etc/systemd/system
	sed 's#/usr/local/bin/p2pnode#$(PREFIX)/bin/p2pnode#' contrib/systemd/p2pnode.service > $(DESTDIR)/etc/systemd/system/p2pnode.service
	chmod 0644 $(DESTDIR)/etc/systemd/system/p2pnode.service

## soak: the kill/restart soak test (real p2pnode processes SIGKILLed and restarted), SOAK_EXCHANGES requests per variant, without -race
SOAK_EXCHANGES ?= 1000
.PHONY: soak
soak:
	SOAK_EXCHANGES=$(SOAK_EXCHANGES) $(GO) test -run '^TestSoakKillRestart$$' -count=1 -timeout 30m -v ./cmd/p2pnode/
