#!/bin/bash
# Build the appliance kernel offline from Debian's linux-source-6.1 package:
# `make tinyconfig` + board/common + board/<board> fragments, then
# `make olddefconfig`, verified by check-dotconfig.sh. The result is cached under
#   ${APPLIANCE_CACHE:-/var/cache/sip-lb-appliance}/kernel/<key>/{<image>,config}
# where <key> = sha256(linux-source version, gcc version, fragments, this script),
# so a second run with unchanged inputs returns at once.
#
# Boards: qemu-x86_64 (bzImage, host gcc) and qemu-aarch64-virt (arm64 Image,
# cross-built with gcc-aarch64-linux-gnu).
#
# usage: build-kernel.sh            (BOARD=qemu-x86_64 by default)
# Prints the path of the cached kernel image on stdout (last line); logs go to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
board=${BOARD:-qemu-x86_64}
cache=${APPLIANCE_CACHE:-/var/cache/sip-lb-appliance}
tarball=/usr/src/linux-source-6.1.tar.xz
fragments=("$root/board/common/linux.fragment" "$root/board/$board/linux.fragment")

log() { echo "build-kernel: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ -r "$tarball" ] || die "$tarball missing: run tests/setup-host.sh (installs linux-source-6.1)"
for f in "${fragments[@]}"; do [ -r "$f" ] || die "fragment $f missing"; done
# shellcheck source=tests/image/boards.sh
. "$here/boards.sh"
load_board "$board" || die "set BOARD to a known board"
arch=$kernel_arch cross=$cross_compile target=$kernel_target image=$kernel_image
command -v "${cross}gcc" >/dev/null \
    || die "${cross}gcc not found: run tests/setup-host.sh (BOARD=$board)"
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1) || die "linux-source-6.1 is not installed"

key=$({
    echo "linux-source-6.1 $srcver"
    # Only the kernel facts of boards.sh: its QEMU or userland lines do not matter here.
    echo "board $board arch $arch cross $cross target $target image $image"
    "${cross}gcc" --version | head -n1
    for f in "${fragments[@]}"; do echo "== ${f#"$root"/}"; cat "$f"; done
    echo "== build-kernel.sh"; cat "${BASH_SOURCE[0]}"
} | sha256sum | cut -d' ' -f1)
out=$cache/kernel/$key

if [ -s "$out/$target" ]; then
    log "cache hit: $out"
    echo "$out/$target"
    exit 0
fi

mkdir -p "$cache/kernel"
# Several test processes may ask for the kernel at once: build it only once.
exec 9>"$cache/kernel/.lock"
flock 9
if [ -s "$out/$target" ]; then
    log "cache hit after waiting for another build: $out"
    echo "$out/$target"
    exit 0
fi

# Unpack the source once per package version; builds are out of tree (O=).
src=$cache/kernel/src/$srcver/linux-source-6.1
if [ ! -e "$src/.unpacked" ]; then
    log "unpacking $tarball ($srcver)"
    rm -rf "$cache/kernel/src/$srcver"
    mkdir -p "$cache/kernel/src/$srcver"
    tar -xJf "$tarball" -C "$cache/kernel/src/$srcver"
    touch "$src/.unpacked"
fi

obj=$cache/kernel/build-$board
mkdir -p "$obj"
kmake() { make -C "$src" O="$obj" ARCH="$arch" CROSS_COMPILE="$cross" "$@"; }

start=$(date +%s)
log "configuring in $obj (tinyconfig + fragments)"
kmake -s tinyconfig >&2
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "${fragments[@]}" >&2
kmake -s olddefconfig >&2
"$here/check-dotconfig.sh" "$obj/.config" "${fragments[@]}" >&2 \
    || die "kernel config does not match the fragments (see MISMATCH lines above)"

log "building $target ($arch) with $(nproc) jobs (log: $obj/build.log); progress every 20 s"
# The build takes minutes on 2 cores: say how far it is (files compiled, elapsed, and a
# percentage against the last build's count when one is known).
count_file=$cache/kernel/compiled-files-$board
: >"$obj/build.log"
(
    total=$(cat "$count_file" 2>/dev/null || echo 0)
    while sleep 20; do
        n=$(grep -c '^  CC ' "$obj/build.log" 2>/dev/null || true)
        pct=""
        [ "$total" -gt 0 ] && pct=" (~$(( n * 100 / total > 99 ? 99 : n * 100 / total ))%)"
        log "kernel: ${n:-0} files compiled$pct, $(( $(date +%s) - start )) s elapsed"
    done
) &
progress=$!
trap 'kill "$progress" 2>/dev/null || true' EXIT
if ! kmake -j"$(nproc)" "$target" >>"$obj/build.log" 2>&1; then
    tail -n 40 "$obj/build.log" >&2
    die "kernel build failed; full log in $obj/build.log"
fi
kill "$progress" 2>/dev/null || true
grep -c '^  CC ' "$obj/build.log" >"$count_file" || true
log "built in $(( $(date +%s) - start )) s"

tmp=$(mktemp -d "$cache/kernel/.tmp.XXXXXX")
chmod 0755 "$tmp"
cp "$obj/$image" "$tmp/$target"
cp "$obj/.config" "$tmp/config"
echo "linux-source-6.1 $srcver board=$board built=$(date -u +%FT%TZ)" >"$tmp/info"
rm -rf "$out"
mv "$tmp" "$out"
log "cached: $out ($(stat -c %s "$out/$target") bytes)"
echo "$out/$target"
