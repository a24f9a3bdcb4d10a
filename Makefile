# Set-up, build, run and test of the classroom agent.
#
#   make run    install what is missing, build, start the agent on config/demo.toml
#   make test   install what is missing, run every test of the workspace
#               (among them tests/fuzz_corpus.rs, the replay of the fuzzing corpus)
#   make bench  the benchmarks whose figures the issues ask for
#   make fuzz   run each fuzzing harness of fuzz/ for FUZZ_RUNS executions (at most
#               FUZZ_SECONDS each), one after another
#
# Set-up installs Debian packages (with sudo when not root), the ONNX Runtime
# library from PyPI and the face models from their registries into .local/ and
# models/, each checked by SHA-256. Nothing is downloaded at build or run time.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ROOT := $(CURDIR)
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# Debian packages the build, the tests and the benches need.
DEBIAN_PACKAGES := build-essential pkg-config clang libclang-dev protobuf-compiler libprotobuf-dev \
	sqlite3 python3 python3-pip python3-venv unzip curl ca-certificates mosquitto \
	chromium libjs-pdf ghostscript nodejs libnss3-tools iproute2 util-linux e2fsprogs \
	libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
	gstreamer1.0-rtsp gstreamer1.0-tools gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 \
	gir1.2-gst-rtsp-server-1.0 python3-gi python3-grpcio python3-protobuf postgresql systemd
# Commands that may come from elsewhere than Debian (a NodeSource npm, say):
# their Debian package is installed only when the command is missing.
DEBIAN_COMMANDS := npm

export ORT_DYLIB_PATH ?= $(ROOT)/.local/onnxruntime/libonnxruntime.so
export FIRMWARE_AGENT_MODELS ?= $(ROOT)/models

# The harnesses of fuzz/fuzz_targets/, and how much each runs in `make fuzz`:
# FUZZ_RUNS executions (one million by default), or FUZZ_SECONDS if that comes
# first. The time cap is generous (an hour each, six hours at most in all) so
# that it only stops a harness far slower than expected; the table at the end
# says how many executions each reached. `make fuzz FUZZ_RUNS=10000` is a quick check.
FUZZ_TARGETS := tablet_messages config_file roster_csv hub_requests pushed_timetable image_decode
FUZZ_RUNS ?= 1000000
FUZZ_SECONDS ?= 3600
# cargo fuzz asks for nightly features; RUSTC_BOOTSTRAP lets the stable
# toolchain give them. No sanitizer: the agent's own code is safe Rust, and
# what libFuzzer looks for here is panics, hangs and huge allocations.
FUZZ := RUSTC_BOOTSTRAP=1 cargo fuzz
FUZZ_FLAGS := --sanitizer none
# A single allocation above this is a crash: the agent decodes 4K frames of
# 25 MB and holds its whole roll call in about 150 MB.
FUZZ_MALLOC_LIMIT_MB := 256

.PHONY: run test bench fuzz fuzz-report setup debian-packages models build clean

run: setup build
	@echo "Starting the demo room; the panel is at http://127.0.0.1:8080/ (Ctrl-C stops it)"
	target/release/firmware-agent run --config config/demo.toml

test: setup
	cargo test --release --workspace --no-fail-fast

bench: setup
	cargo bench --workspace

build:
	cargo build --release --workspace

# New inputs go to fuzz/work/<target>/ beside the committed seeds of
# fuzz/corpus/<target>/; a crash is written to fuzz/artifacts/<target>/.
# The table at the end gives each harness's executions and the coverage reached.
fuzz: debian-packages
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && $(FUZZ) build $(FUZZ_FLAGS)
	@cd fuzz && crashed=""; for target in $(FUZZ_TARGETS); do \
	  echo "Fuzzing $$target for $(FUZZ_RUNS) executions (at most $(FUZZ_SECONDS) s)"; \
	  mkdir -p work/$$target; \
	  $(FUZZ) run $(FUZZ_FLAGS) $$target work/$$target corpus/$$target -- \
	    -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_SECONDS) -timeout=10 -malloc_limit_mb=$(FUZZ_MALLOC_LIMIT_MB) \
	    -print_final_stats=1 > work/$$target.log 2>&1 || crashed="$$crashed $$target"; \
	done; \
	$(MAKE) -C $(ROOT) --no-print-directory fuzz-report; \
	for target in $$crashed; do tail -30 work/$$target.log; echo "$$target crashed: see fuzz/work/$$target.log"; done; \
	[ -z "$$crashed" ]

fuzz-report:
	@cd fuzz && printf '%-18s %12s %8s %8s %8s %6s\n' harness executions exec/s edges features inputs; \
	for target in $(FUZZ_TARGETS); do \
	  awk -v target=$$target ' \
	    /DONE/ || /pulse/ || /NEW/ || /REDUCE/ { for (i = 1; i < NF; i++) { \
	      if ($$i == "cov:") edges = $$(i + 1); if ($$i == "ft:") features = $$(i + 1); \
	      if ($$i == "corp:") { split($$(i + 1), c, "/"); inputs = c[1] } } } \
	    /stat::number_of_executed_units/ { executions = $$2 } \
	    /stat::average_exec_per_sec/ { rate = $$2 } \
	    END { printf "%-18s %12s %8s %8s %8s %6s\n", target, executions, rate, edges, features, inputs }' \
	    work/$$target.log; \
	done

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
