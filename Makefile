# corral — see README.md. Every target works on a fresh Debian machine.
GO        ?= go
BIN       ?= bin/corral
GOFLAGS   ?=
TEST_TIMEOUT ?= 25m
FUZZTIME  ?= 20s

.PHONY: all build run test test-deps unit integration e2e bench fuzz lint clean guest cross

all: build

build:
	$(GO) build $(GOFLAGS) -o $(BIN) ./cmd/corral

# The main job: the switch on its embedded default configuration.
run: build
	./$(BIN) run

# Everything the tests need (apt packages, the guest image), installed when missing.
test-deps:
	./contrib/test-deps.sh

# Every test: vet, unit tests, integration and end-to-end tests (root: network
# namespaces, TAP, QEMU), under the race detector. Nothing is skipped; a test
# that cannot run fails. Then the allocation tests (names containing "Alloc")
# once more without it: the race detector allocates, so some of them skip
# under -race, and this is the one test run without -race.
test: test-deps build cross
	$(GO) vet ./...
	CI=$${CI:-true} $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	CI=$${CI:-true} $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -run Alloc ./...

# The development loop, under a minute: -short skips every test that needs
# network namespaces, TAP devices, QEMU or root (each says so); the rest runs
# under the race detector.
unit:
	$(GO) test -race -count=1 -short ./...

integration e2e: test-deps build
	CI=$${CI:-true} $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -run 'TestIntegration|TestE2E' ./...

# macOS and FreeBSD: the whole module (tests included) vets, and corral
# builds, for darwin/arm64, darwin/amd64 and freebsd/amd64. Seconds.
cross:
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	GOOS=darwin GOARCH=amd64 $(GO) build -o /dev/null ./cmd/corral
	GOOS=freebsd GOARCH=amd64 $(GO) vet ./...

guest:
	./contrib/guest/build.sh

bench: test-deps build
	./contrib/bench/run.sh

fuzz:
	./contrib/fuzz.sh $(FUZZTIME)

lint: cross
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

clean:
	rm -rf bin
