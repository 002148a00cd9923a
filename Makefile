# libdpm: the two commands of the README, and their parts.
.PHONY: setup demo test bench build

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
