# The habits. `make demo` and `make test` each set up everything they need on a fresh machine.
PY := .venv/bin/python
SERVICES := scripts/services.sh
K8S := scripts/k8s.sh

.PHONY: setup develop services services-down test-tools k8s k8s-down lint test test-rust test-python demo bench clean

setup:
	scripts/setup.sh

develop: setup

services:
	$(SERVICES) up >/dev/null

services-down:
	$(SERVICES) down

# chromium (the HTML report in a real browser) and promtool (the alerting rules), from Debian
test-tools:
	scripts/test-tools.sh

# A real Kubernetes control plane (etcd, API server, controllers, scheduler, kwok node) for the
# scale-out tests; the binaries are built once per machine into a cache outside the repo.
k8s:
	$(K8S) up >/dev/null

k8s-down:
	$(K8S) down

lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -q -- -D warnings
	.venv/bin/ruff check python tests benches
	.venv/bin/ruff format --check python tests benches
	.venv/bin/mypy
	.venv/bin/mypy benches
	.venv/bin/lint-imports
	$(PY) -m mypy.stubtest seamline._core

test-rust:
	cargo test -p seamline-core -p seamline-pg -p seamline-opensearch -p seamline-kafka -q

test-python: setup services test-tools k8s
	eval "$$($(SERVICES) env)" && eval "$$($(K8S) env)" && $(PY) -m pytest -q tests

# The whole suite: lint, Rust unit tests, Python tests against the real services.
test: setup lint test-rust test-python

demo: setup services
	eval "$$($(SERVICES) env)" && .venv/bin/seamline demo

bench: setup services
	$(PY) benches/bench_arrow.py

clean:
	rm -rf target .venv .services .tools benches/out
