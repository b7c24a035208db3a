# chestfs — see README.md. `make demo` mounts the bundled test image; `make test` runs every test.
GO        ?= go
BIN       ?= bin/chestfs
PKGS      := ./...
# Test images are built once per run and shared by the packages that compare with the kernel.
TESTIMG   ?= $(CURDIR)/.testimg
TESTFLAGS ?= -count=1 -timeout 25m

.PHONY: all build install man setup setup-apt setup-npm demo demo-keyfile test test-arm64 vet fuzz bench bench-xts bench-verity bench-mount bench-blob bench-pack testdata clean

all: build

# The version, commit and build time `chestfs version` prints (also where GOFLAGS=-buildvcs=false).
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(shell git rev-parse HEAD 2>/dev/null) -X main.buildDate=$(shell date -u +%Y-%m-%dT%H:%M:%SZ)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/chestfs

# Installs bin/chestfs as $(PREFIX)/bin/chestfs (default /usr/local; PREFIX=$$HOME/.local for a user).
PREFIX ?= /usr/local
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/chestfs

# The manual page, made from the command definitions.
man: build
	mkdir -p docs && $(BIN) man > docs/chestfs.1

# Everything the tests need on a fresh Debian machine (root): the real cryptsetup, e2fsprogs and fuse3
# that make and check the images, and Azurite (npm) for the blob tests.
setup: setup-apt setup-npm

setup-apt:
	@missing=""; for c in cryptsetup:cryptsetup-bin veritysetup:cryptsetup-bin mkfs.ext4:e2fsprogs fusermount3:fuse3 setfattr:attr openssl:openssl getfacl:acl unshare:util-linux podman:podman runc:runc qemu-aarch64-static:qemu-user-static; do \
		command -v $${c%%:*} >/dev/null 2>&1 || missing="$$missing $${c##*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

setup-npm:
	@if [ ! -x tools/azurite/node_modules/.bin/azurite-blob ]; then npm ci --prefix tools/azurite --no-audit --no-fund; fi

demo: setup-apt build
	./scripts/demo.sh

demo-keyfile: setup-apt build
	./scripts/demo.sh --key-file

vet:
	$(GO) vet $(PKGS)

test: setup vet
	mkdir -p $(TESTIMG)
	CHESTFS_TESTIMG_DIR=$(TESTIMG) $(GO) test $(TESTFLAGS) $(PKGS)
	$(MAKE) test-arm64

# The arm64 XTS paths under qemu-user (Debian: apt-get install qemu-user-static),
# which emulates the ARMv8 crypto extensions: the armv8 path must be selected.
# Correctness only: throughput under emulation means nothing (see bench-xts).
test-arm64:
	@command -v qemu-aarch64-static >/dev/null || { echo "qemu-aarch64-static missing: apt-get install qemu-user-static"; exit 1; }
	CHESTFS_XTS_WANT_ARMV8=1 GOARCH=arm64 $(GO) test $(TESTFLAGS) -exec qemu-aarch64-static ./xts/

# Coverage-guided fuzzing of every parser, FUZZTIME each (the seed corpora also run in `make test`).
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) ./scripts/fuzz.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./xts/ ./blockdev/...

bench-xts:
	./xts/bench.sh

# The dm-verity tree check (go test -bench) beside `openssl speed -evp sha256`, in one run.
bench-verity:
	./blockdev/verity/bench.sh

# A >= 256 MiB file read through a real mount of a blob behind 10 ms of
# latency, against the Azure sidecar's reader and parallel ranged GETs.
bench-blob: setup-npm
	./scripts/bench-blob.sh

# Sequential read and ls -l through `chestfs mount` vs the kernel's loop mount of the plaintext (root).
bench-mount: build
	./scripts/bench-mount.sh

testdata:
	./testdata/mkdemo.sh

clean:
	rm -rf bin $(TESTIMG)
