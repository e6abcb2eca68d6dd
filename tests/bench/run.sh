#!/bin/bash
# Benchmarks side by side with the seed's setup (keepalived + LVS) and a
# Kamailio dispatcher (L7 proxy): ONE command.
#   bash tests/bench/run.sh [bench options, e.g. --trials 5]
# Builds the dev image and the keepalived and Kamailio benchmark variants
# (build/, never committed), runs all three in the SIP lab one after the
# other, prints a markdown
# table (ratios first) and writes docs/benchmarks.md. Needs root (network
# namespaces, taps) and the lab tools (tests/setup-host.sh). Bounded: the whole
# run is killed after BENCH_TIMEOUT seconds (default 2400). BUSYBOX: see
# tests/image/build-image.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

[ "$(id -u)" = 0 ] || { echo "SKIPPED: benchmarks need root (network namespaces, taps)" >&2; exit 0; }

echo "bench: building the dev image and the keepalived and Kamailio variants" >&2
bash tests/image/build-image.sh >/dev/null
SKIP_DEV_BUILD=1 bash tests/bench/build-keepalived-image.sh >/dev/null
SKIP_DEV_BUILD=1 bash tests/bench/build-kamailio-image.sh >/dev/null
cargo build --release --locked -p appliance-tests --bin bench >&2
bin=${CARGO_TARGET_DIR:-$root/target}/release/bench

cmd="bash tests/bench/run.sh${*:+ $*}"
exec timeout --kill-after=30 "${BENCH_TIMEOUT:-2400}" \
    "$bin" --out docs/benchmarks.md --command "$cmd" "$@"
