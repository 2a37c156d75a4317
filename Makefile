# The one place that says how to build, test, lint and benchmark; CI calls these targets.
PY ?= python3
PIP ?= $(PY) -m pip

.PHONY: help demo install test test-rust test-python lint fmt bench bench-quick fuzz golden

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

demo: ## Install and run the demo (the README's main job)
	$(PIP) install -q '.[torch]'
	pixmo-stream demo

install: ## Editable install with the test tools
	$(PIP) install -q -e '.[test]'

test: install test-rust test-python ## Install, then run every Rust and Python test

test-rust: ## cargo test (core and bindings)
	cargo test --workspace -q

test-python: ## pytest (needs `make install` first)
	$(PY) -m pytest -q

lint: ## cargo fmt/clippy, ruff, and the native stubs against the module
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -q -- -D warnings
	$(PY) -m ruff check python tests benches
	$(PY) -m ruff format --check python tests benches
	$(PY) -m mypy.stubtest pixmo_stream._native

fmt: ## Format Rust and Python code
	cargo fmt --all
	$(PY) -m ruff format python tests benches
	$(PY) -m ruff check --fix python tests benches

bench: ## Full side-by-side benchmark against the peers (installs the bench extra)
	$(PIP) install -q -e '.[bench]'
	$(PY) -m benches.run

bench-quick: ## The same, small and fast (under 2 minutes)
	$(PIP) install -q -e '.[bench]'
	$(PY) -m benches.run --quick

fuzz: ## Fuzz shard opening and reading (by hand; see rust/fuzz/README.md)
	rust/fuzz/gen_seeds.sh > /dev/null
	RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir rust/fuzz open_shard -- -max_total_time=60

golden: ## Rewrite the golden files of the current format version (only when releasing one)
	$(PY) tests/golden/make_golden.py
