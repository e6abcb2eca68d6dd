#!/bin/bash
# Build a signed firmware bundle from the dev image's kernel and initramfs.
#
# usage: build-bundle.sh OUT.bundle    env: VERSION (default: the crate version),
#        BOARD (qemu-x86_64), KEY (tests/image/keys/test-firmware.key, the PUBLIC test key),
#        KERNEL / ROOTFS (default: build/bzImage and build/initramfs.cpio[.gz]),
#        UNSIGNED=1 (test bundles only)
# The signing itself is `appliance firmware bundle`, built for the host.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: build-bundle.sh OUT.bundle}
board=${BOARD:-qemu-x86_64}
key=${KEY:-$here/keys/test-firmware.key}
build=${OUT_DIR:-$root/build}
kernel=${KERNEL:-$build/bzImage}
rootfs=${ROOTFS:-}
if [ -z "$rootfs" ]; then
    for c in "$build/initramfs.cpio.gz" "$build/initramfs.cpio"; do
        [ -f "$c" ] && { rootfs=$c; break; }
    done
fi
log() { echo "build-bundle: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ -f "$kernel" ] || die "kernel $kernel missing: run tests/image/build-image.sh first"
[ -n "$rootfs" ] && [ -f "$rootfs" ] || die "initramfs missing in $build: run tests/image/build-image.sh first"

(cd "$root" && cargo build --locked -p appliance) >&2
tool=${CARGO_TARGET_DIR:-$root/target}/debug/appliance
version=${VERSION:-$("$tool" version | awk '{print $2}')}

sign=(--key "$key")
[ "${UNSIGNED:-0}" = 1 ] && sign=(--unsigned)
"$tool" firmware bundle "${sign[@]}" --version "$version" --board "$board" -o "$out" \
    --description "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)" \
    kernel="$kernel" rootfs="$rootfs" >&2
echo "$out"
