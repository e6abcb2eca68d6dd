#!/usr/bin/env bash
# Watch the appliance work: builds the dev image, creates the SIP lab (network
# namespaces: a client side, three SIP servers, bridges to the VM's WAN/LAN),
# boots the appliance in QEMU between them, runs a sipp call load with a live
# per-server table (one server's SIP process is killed a third of the way in
# and restarted at two thirds), then attaches the appliance's serial console.
# Ctrl-C at any time (or Ctrl-] on the console) tears everything down.
#
# usage: sudo tests/demo.sh [--duration SECS] [--rate CALLS_PER_S] [--no-failure] [--no-console]
# Needs: root; tests/setup-host.sh (called first) installs the rest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" != 0 ]; then
    echo "demo.sh: run as root: the demo creates network namespaces, taps and a QEMU VM" >&2
    exit 1
fi
# Installs whatever is missing (quiet and quick when everything is there).
bash tests/setup-host.sh

echo "demo.sh: building the image (kernel cached; appliance binary incremental)..."
bash tests/image/build-image.sh >/dev/null
echo "demo.sh: building the lab driver..."
cargo build --quiet --locked -p appliance-tests --bin lab-demo
target=${CARGO_TARGET_DIR:-target}
exec "$target/debug/lab-demo" "$@"
