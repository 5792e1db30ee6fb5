# Build and test entry points. `make` builds the static binaries; `make test` runs every test.
SHELL := /bin/bash
MUSL := x86_64-unknown-linux-musl
CARGO ?= cargo

.PHONY: all build build-deps test-deps msrv bundle bundle-config vib install uninstall test package-check lint clean bench bench-counter cache-tests demo bench-tools soak

# `make CONFIG=path/to/config.toml` also builds the script bundle.
all: build vib $(if $(CONFIG),bundle)
ifndef CONFIG
	@echo "To build the Auto Deploy script bundle: make bundle CONFIG=path/to/config.toml (see bundle/config.example.toml)"
endif

build: build-deps dist/esxi-tweet dist/autodeploy-cache

# Debian packages the build and the tests need beyond rustup (rust-toolchain.toml brings the
# toolchain, clippy, rustfmt and the musl target): said in one line instead of a compiler error.
build-deps:
	@command -v musl-gcc >/dev/null || { echo "make: the static build needs musl-gcc: apt-get install musl-tools (bash .ci/run installs everything)"; exit 1; }
test-deps:
	@missing=""; for c in busybox ss prlimit ar prometheus-alertmanager; do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then echo "make test: missing$$missing: apt-get install busybox-static iproute2 util-linux binutils prometheus-alertmanager (bash .ci/run installs everything)"; exit 1; fi

# The oldest Rust the code builds with (rust-version in Cargo.toml).
MSRV := $(shell sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
msrv:
	rustup toolchain install $(MSRV) --profile minimal
	$(CARGO) +$(MSRV) check --locked --workspace --lib --bins

# Always ask cargo: it knows whether sources changed.
dist/esxi-tweet: FORCE
	$(CARGO) build --release --locked --target $(MUSL) -p esxi-tweet
	@mkdir -p dist
	$(foreach b,esxi-tweet esxi-tweet-bundle esxi-tweet-vib,$(call install_bin,$(b),release))
	@echo "built dist/esxi-tweet ($$(stat -c %s dist/esxi-tweet) bytes)"

dist/autodeploy-cache: FORCE
	$(CARGO) build --profile proxy --locked --target $(MUSL) -p autodeploy-cache
	@mkdir -p dist
	$(call install_bin,autodeploy-cache,proxy)
	@echo "built dist/autodeploy-cache ($$(stat -c %s dist/autodeploy-cache) bytes)"

FORCE:

# Copy, then rename over the old file: a running binary (a proxy started from dist/) does not
# stop a rebuild with "Text file busy", and nobody runs a half-copied file.
define install_bin
cp target/$(MUSL)/$(2)/$(1) dist/.$(1).tmp && mv -f dist/.$(1).tmp dist/$(1)

endef

# Said before anything is built: the bundle needs the config (credentials, message).
bundle-config:
	@[ -n "$(CONFIG)" ] || { echo "make bundle: CONFIG is not set: make bundle CONFIG=path/to/config.toml (copy bundle/config.example.toml)"; exit 2; }

# VIB=1: the config-only bundle for hosts that get the agent from the VIB (ESXi 8 and 9), under
# a name of its own so that it never replaces the full bundle unnoticed.
BUNDLE_OUT := dist/esxi-tweet-bundle$(if $(VIB),-vib).tgz
bundle: bundle-config dist/esxi-tweet
	dist/esxi-tweet-bundle --config $(CONFIG) $(if $(VIB),--vib,--binary dist/esxi-tweet) --output $(BUNDLE_OUT)

# The agent as a community VIB and an offline depot (ESXi 8 and 9); dated by the last commit
# so that the same commit gives the same bytes.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
vib: dist/esxi-tweet
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) dist/esxi-tweet-vib --binary dist/esxi-tweet --out-dir dist

# `make install` after `make`: the two programs and the packaging tools in $(PREFIX)/bin, the
# documentation in $(PREFIX)/share/doc/esxi-tweet. DESTDIR for packagers.
PREFIX ?= /usr/local
INSTALLED := esxi-tweet autodeploy-cache esxi-tweet-bundle esxi-tweet-vib
install:
	@for b in $(INSTALLED); do [ -x dist/$$b ] || { echo "make install: dist/$$b is missing: run make first"; exit 2; }; done
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/doc/esxi-tweet
	install -m 0755 $(addprefix dist/,$(INSTALLED)) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 README.md CHANGELOG.md LICENSE docs/*.md bundle/config.example.toml $(DESTDIR)$(PREFIX)/share/doc/esxi-tweet/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/bin/,$(INSTALLED))
	rm -rf $(DESTDIR)$(PREFIX)/share/doc/esxi-tweet

test: test-deps build vib lint package-check
	ESXI_TWEET_BIN=$(CURDIR)/dist/esxi-tweet AUTODEPLOY_CACHE_BIN=$(CURDIR)/dist/autodeploy-cache $(CARGO) test --locked --workspace

# Benchmarks: timing targets live here, never in `make test`.
BENCH_PACKAGES := nginx-light varnish wrk iperf3 time hyperfine openssl curl
bench-tools:
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; fi

bench: build bench-tools bench-counter
	python3 scripts/bench.py

# The public HTTP caching tests (cache-tests.fyi) through the proxy: bench/cache-tests.md.
# CACHE_TESTS_DIR is a checkout of github.com/http-tests/cache-tests; needs node and npm.
cache-tests: build
	python3 scripts/cache_tests.py

# The text counter on hostile input (64 KiB to 1 MiB of each family): bench/counter.md.
bench-counter:
	$(CARGO) bench --locked -q -p twitter-text-pure --bench counter | tee bench/counter.md.tmp
	@{ echo "# The text counter on hostile input"; echo; echo "\`make bench-counter\` ($$(date -u +%F), $$(nproc) cores): the least of three runs, release build."; echo; cat bench/counter.md.tmp; } > bench/counter.md && rm bench/counter.md.tmp

demo: build bench-tools
	python3 scripts/demo.py

# Long fault tests: 200 kill -9 rounds, 2,000 connections for five minutes, a 1 GiB object
# to 200 slow readers, and a million
# cases for each parser property test (failures are kept in proptest-regressions/).
soak: build
	SOAK=1 AUTODEPLOY_CACHE_BIN=$(CURDIR)/dist/autodeploy-cache $(CARGO) test --locked -p autodeploy-cache -- --test-threads=1 --nocapture crash load fuzz a_large_object

# twitter-text-pure is a crate of its own: it must package (and build) alone.
package-check:
	$(CARGO) package --locked --allow-dirty -q -p twitter-text-pure

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

clean:
	rm -rf dist
	$(CARGO) clean
