#!/usr/bin/env bash
# The test command (README.md): installs what the tests need on a fresh machine, then runs
# every test — unit tests and the integration-test binary, which starts real servers on port 0.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers for the delivery tests (moto for EventBridge, standardwebhooks for signatures),
# in a virtual environment of their own under target/.
peers=target/peers
if [ ! -x "$peers/bin/python" ] || ! cmp -s tests/peers/requirements.txt "$peers/requirements.txt"; then
    echo "== installing test peers into $peers"
    rm -rf "$peers"
    python3 -m venv "$peers"
    "$peers/bin/pip" install --quiet --disable-pip-version-check -r tests/peers/requirements.txt
    cp tests/peers/requirements.txt "$peers/requirements.txt"
fi
export TEST_PEERS_PYTHON="$PWD/$peers/bin/python"

# The official Node SDK, as published (tests/sdk/package.json), under target/ too.
sdk_node=target/sdk-node
if [ ! -d "$sdk_node/node_modules/alloy-node" ] || ! cmp -s tests/sdk/package-lock.json "$sdk_node/package-lock.json"; then
    echo "== installing the Node SDK into $sdk_node"
    rm -rf "$sdk_node"
    mkdir -p "$sdk_node"
    cp tests/sdk/package.json tests/sdk/package-lock.json "$sdk_node/"
    (cd "$sdk_node" && npm ci --silent --no-audit --no-fund)
fi

# The edge and SSRF tests use prlimit and unshare (util-linux) and ip (iproute2), as root.
if ! command -v ip >/dev/null || ! command -v unshare >/dev/null || ! command -v prlimit >/dev/null; then
    echo "== installing iproute2 and util-linux"
    apt-get update -qq && apt-get install -y -qq iproute2 util-linux >/dev/null
fi

echo "== building and running the tests"
cargo test --locked
