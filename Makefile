# Build and test entry points. `make` builds the static binaries; `make test` runs every test.
SHELL := /bin/bash
MUSL := x86_64-unknown-linux-musl
CARGO ?= cargo

.PHONY: all build test lint clean

all: build

build: dist/esxi-tweet

# Always ask cargo: it knows whether sources changed.
dist/esxi-tweet: FORCE
	$(CARGO) build --release --locked --target $(MUSL) -p esxi-tweet
	@mkdir -p dist
	cp target/$(MUSL)/release/esxi-tweet dist/esxi-tweet
	@echo "built dist/esxi-tweet ($$(stat -c %s dist/esxi-tweet) bytes)"

FORCE:

test: build lint
	ESXI_TWEET_BIN=$(CURDIR)/dist/esxi-tweet $(CARGO) test --locked --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

clean:
	rm -rf dist
	$(CARGO) clean
