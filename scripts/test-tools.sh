#!/usr/bin/env bash
# scripts/test-tools.sh — the programs the tests drive from outside Python, from Debian's packages.
# Idempotent: installs only what is missing. Progress on stderr.
#
#   chromium  the HTML report is opened in a real headless browser (tests/test_html_browser.py,
#             through pip's playwright with executable_path=/usr/bin/chromium: no browser download)
#   promtool  from Debian's prometheus package, extracted into .tools/bin (the package itself is not
#             installed, so no Prometheus daemon is set up or started); checks the alerting rules and
#             the Grafana dashboard's queries (tests/test_deploy.py)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools/bin"

log() { printf 'test-tools: %s\n' "$*" >&2; }

updated=0
apt_update() {
    if [[ $updated == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        updated=1
    fi
}

if ! command -v chromium >/dev/null 2>&1; then
    log "apt-get install chromium"
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
fi

if [[ ! -x "$TOOLS/promtool" ]]; then
    log "promtool: extracting it from Debian's prometheus package into .tools/bin"
    apt_update
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    chmod 755 "$work"  # apt's download user must be able to write there
    (cd "$work" && apt-get download -qq prometheus >&2)
    dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
    mkdir -p "$TOOLS"
    install -m 755 "$work/root/usr/bin/promtool" "$TOOLS/promtool"
fi
"$TOOLS/promtool" --version 2>&1 | head -n 1 >&2
