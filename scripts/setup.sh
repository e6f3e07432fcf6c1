#!/usr/bin/env bash
# Set up a development environment from a fresh clone: the Python venv (.venv) with every
# dependency, and the native module built in release mode. Idempotent: re-running only rebuilds
# what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust (rustup) first" >&2
  exit 2
fi
# the Kafka reader builds librdkafka (and zlib, zstd) from source: a C compiler and make
missing=""
for tool in cc make; do command -v "$tool" >/dev/null || missing=1; done
if [ -n "$missing" ]; then
  echo "setup: apt-get install build-essential (a C compiler and make, for librdkafka)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential >&2
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.seamline-deps
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python dependencies" >&2
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q "maturin>=1.7,<2"
  # the project's declared dependencies (runtime, every store extra, dev), read from pyproject.toml
  # (`stores` only names the per-store extras)
  deps=$(.venv/bin/python - <<'PY'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = [d for ds in p["optional-dependencies"].values() for d in ds if not d.startswith("seamline[")]
print("\n".join(p["dependencies"] + extras))
PY
)
  echo "$deps" | xargs -d '\n' .venv/bin/pip install -q
  touch "$stamp"
fi
echo "setup: building the native module (release)" >&2
.venv/bin/maturin develop --release -q >&2
