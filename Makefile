# The habits. `make demo` and `make test` each set up everything they need on a fresh machine.
PY := .venv/bin/python
SERVICES := scripts/services.sh

.PHONY: setup develop services services-down lint test test-rust test-python demo bench clean

setup:
	scripts/setup.sh

develop: setup

services:
	$(SERVICES) up >/dev/null

services-down:
	$(SERVICES) down

lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -q -- -D warnings
	.venv/bin/ruff check python tests benches
	.venv/bin/ruff format --check python tests benches
	.venv/bin/mypy
	.venv/bin/lint-imports
	$(PY) -m mypy.stubtest seamline._core

test-rust:
	cargo test -p seamline-core -p seamline-pg -q

test-python: setup services
	eval "$$($(SERVICES) env)" && $(PY) -m pytest -q tests

# The whole suite: lint, Rust unit tests, Python tests against the real services.
test: setup lint test-rust test-python

demo: setup services
	eval "$$($(SERVICES) env)" && .venv/bin/seamline demo

bench: setup services
	$(PY) benches/bench_arrow.py

clean:
	rm -rf target .venv .services benches/out
