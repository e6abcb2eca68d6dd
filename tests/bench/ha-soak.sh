#!/bin/bash
# HA pair soak and failover benchmark (NOT part of CI; never fails on a number).
#   bash tests/bench/ha-soak.sh [ha_bench options]
# Defaults: the product's advert interval (5 cs = 50 ms), a 10-minute soak at 2 calls/s
# counting every VRRP transition (WAN capture + both boxes' logs), then one power-off
# failover round at 2 and at 20 calls/s (switched calls as a share of in-progress calls).
# Writes the markdown summary to build/ha-soak.md. Root (namespaces, taps, QEMU) and the
# lab tools (tests/setup-host.sh). Bounded by HA_BENCH_TIMEOUT seconds (default 3600).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

[ "$(id -u)" = 0 ] || { echo "SKIPPED: the HA benchmark needs root (network namespaces, taps)" >&2; exit 0; }

cargo build --locked -p appliance-tests --bin ha_bench >&2
bin=${CARGO_TARGET_DIR:-$root/target}/debug/ha_bench
mkdir -p build
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--advert-cs 5 --soak-secs 600 --soak-rate 2 --rates 2,20 --rounds 1)
echo "ha-soak: ha_bench ${args[*]} (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
exec timeout --kill-after=30 "${HA_BENCH_TIMEOUT:-3600}" "$bin" --out build/ha-soak.md "${args[@]}"
