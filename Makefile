# libdpm: the two commands of the README, and their parts.
.PHONY: setup demo test bench build examples install valgrind

setup:
	./scripts/setup

build: setup
	cargo build --release

# The main job.
demo: setup
	cargo run --release --bin dpm -- demo

# Every test.
test: setup
	./scripts/test

# Benchmarks (criterion): not part of the test command.
bench: setup
	cargo bench

# The C examples (examples-c/), against target/release/libdpm.so.
examples: build
	$(MAKE) -C examples-c

# A host-ready layout: PREFIX/lib/libdpm.so (+ ONNX Runtime beside it), PREFIX/include/dpm.h,
# PREFIX/lib/pkgconfig/dpm.pc, PREFIX/lib/cmake/dpm/ (find_package(dpm)).
PREFIX ?= /usr/local
install: build
	./scripts/install $(PREFIX)

# The C API tests and examples under valgrind memcheck (slow: not part of `make test`).
valgrind: setup
	cargo build --lib
	cargo test --test c_api --no-run
	./scripts/valgrind
