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

# Node peers (tests/peers/package.json: the official Node SDK, an OAuth 2.0 provider), under
# target/ too, exactly as the lock file says.
node_peers=target/node-peers
if [ ! -d "$node_peers/node_modules" ] || ! cmp -s tests/peers/package-lock.json "$node_peers/package-lock.json"; then
    echo "== installing the Node peers into $node_peers"
    rm -rf "$node_peers"
    mkdir -p "$node_peers"
    cp tests/peers/package.json tests/peers/package-lock.json "$node_peers/"
    (cd "$node_peers" && npm ci --silent --no-audit --no-fund)
fi

# The page tests drive Debian's chromium (headless) with playwright-core.
# The official frontend SDK's test makes a self-signed certificate with openssl.
if [ ! -x /usr/bin/chromium ] || ! command -v openssl >/dev/null; then
    echo "== installing chromium and openssl"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium openssl >/dev/null
fi

# The edge and SSRF tests use prlimit and unshare (util-linux) and ip (iproute2), as root.
if ! command -v ip >/dev/null || ! command -v unshare >/dev/null || ! command -v prlimit >/dev/null; then
    echo "== installing iproute2 and util-linux"
    apt-get update -qq && apt-get install -y -qq iproute2 util-linux >/dev/null
fi

# The /readyz test loop-mounts an ext4 image (mkfs.ext4, losetup); the package test's scripts
# make the user with adduser.
if ! command -v mkfs.ext4 >/dev/null || ! command -v losetup >/dev/null || ! command -v adduser >/dev/null; then
    echo "== installing e2fsprogs, mount and adduser"
    apt-get update -qq && apt-get install -y -qq e2fsprogs mount adduser >/dev/null
fi

# The package test (tests/deb.rs) builds the .deb with cargo-deb, kept under target/ too.
if ! target/tools/bin/cargo-deb --version 2>/dev/null | grep -q '^3\.8\.0'; then
    echo "== installing cargo-deb into target/tools"
    cargo install --quiet --locked --root target/tools --version 3.8.0 cargo-deb
fi

echo "== building and running the tests"
cargo test --locked
