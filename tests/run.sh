#!/usr/bin/env bash
# The test command (README.md): installs what the tests need on a fresh machine, then runs
# every test — unit tests and the integration-test binary, which starts real servers on port 0.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building and running the tests"
cargo test --locked
