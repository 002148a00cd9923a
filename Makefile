# libdpm: the two commands of the README, and their parts.
.PHONY: setup demo test bench build examples install valgrind sanitize fuzz gpu-check parity

setup:
	./scripts/setup

build: setup
	cargo build --release

# The main job: part 1 (swiss roll: train, sample, Chamfer distances, plots), then part 2
# (class-conditional images from the bundled demo model through the C example sample_afhq).
demo: setup
	cargo run --release --bin dpm -- demo
	$(MAKE) -C examples-c all
	./target/examples-c/sample_afhq --num 24 --solver dpm++2m --threshold 0.995 --out out/demo/images

# Every test.
test: setup
	./scripts/test

# Training parity against PyTorch (installs PyTorch; not part of the test command, which checks
# the committed fixture tests/data/parity/ instead). `scripts/parity runs` trains both on 6 seeds.
parity: setup
	./scripts/parity

# Benchmarks (criterion): not part of the test command.
bench: setup
	cargo bench

# The C examples (examples-c/), against target/release/libdpm.so.
examples: build
	$(MAKE) -C examples-c

# A host-ready, relocatable layout (see scripts/install); the libraries it installs are built
# without the tools (no bench, metrics, plots: the `tools` feature is the CLI's): PREFIX/lib/libdpm.so.VERSION with
# its SONAME symlinks, libdpm.a, ONNX Runtime beside them, PREFIX/bin/dpm,
# PREFIX/include/dpm.h, pkg-config files (dpm, dpm-static), PREFIX/lib/cmake/dpm/
# (find_package(dpm)), PREFIX/share/dpm/models. DPM_DEBUG=separate|keep for debug info.
PREFIX ?= /usr/local
install: build
	cargo build --release --lib --no-default-features
	./scripts/install $(PREFIX)

# The C API tests and examples under valgrind memcheck (also part of `make test`).
valgrind: setup
	cargo build --lib --no-default-features
	cargo test --test c_api --no-run
	./scripts/valgrind

# ASan/UBSan C tests and valgrind'd Rust tests (part of `make test`), plus the Rust tests
# rebuilt with AddressSanitizer (slow: not part of `make test`).
sanitize: setup
	cargo build --lib --no-default-features
	./scripts/sanitize --asan-rust

# Fuzz every target for FUZZ_SECONDS each (make test runs 10 s per target).
FUZZ_SECONDS ?= 300
fuzz: setup
	./scripts/fuzz $(FUZZ_SECONDS)

# The CUDA provider against the CPU, and timed (needs an NVIDIA GPU; not part of `make test`).
gpu-check: setup
	./scripts/setup-gpu
	cargo build --release
	$(MAKE) -C examples-c all
	./scripts/gpu-check
