#!/bin/bash
# Build the offline dev image: kernel (cached, see build-kernel.sh) + initramfs
# with BusyBox (Debian busybox-static), the static `appliance` binary and the
# rootfs overlays, plus tests/image/dev-overlay (the test shell). Rebuilds the binary every time (cargo is incremental) so the
# image always carries the current code.
#
# usage: build-image.sh        env: BOARD (qemu-x86_64), OUT_DIR (build/),
#                                   INITRAMFS_COMPRESS (none|gzip, default none)
# Outputs: $OUT_DIR/bzImage, $OUT_DIR/initramfs.cpio[.gz]; prints both paths.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
board=${BOARD:-qemu-x86_64}
out=${OUT_DIR:-$root/build}
compress=${INITRAMFS_COMPRESS:-none}
target=x86_64-unknown-linux-gnu
busybox=${BUSYBOX:-/bin/busybox} # BUSYBOX: another x86-64 busybox-static, e.g. when a cross package replaced /bin/busybox

log() { echo "build-image: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ -x "$busybox" ] || die "$busybox missing: run tests/setup-host.sh (installs busybox-static)"
readelf -l "$busybox" | grep -q 'program interpreter' && die "$busybox is not static: install busybox-static, not busybox"
mkdir -p "$out"

# Only one image build at a time per output dir (parallel test processes).
exec 8>"$out/.build-image.lock"
flock 8

kernel=$("$here/build-kernel.sh")

log "building static appliance binary"
(
    cd "$root"
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build --release --locked --target "$target" -p appliance
) >&2
bin=${CARGO_TARGET_DIR:-$root/target}/$target/release/appliance
[ -x "$bin" ] || die "cargo did not produce $bin"
# Static(-pie) binaries have no ELF interpreter; the initramfs has no libc.
if readelf -l "$bin" | grep -q 'program interpreter'; then
    die "$bin is dynamically linked; build it with -C target-feature=+crt-static"
fi

staging=$out/rootfs
rm -rf "$staging"
mkdir -p "$staging"
(
    cd "$staging"
    mkdir -p bin sbin usr/bin usr/sbin etc proc sys dev run tmp root var/log mnt
    chmod 1777 tmp
    chmod 0700 root
    cp "$busybox" bin/busybox
    # One symlink per applet at BusyBox's own idea of its path.
    "$busybox" --list-full | while read -r applet; do
        [ -e "$applet" ] || [ -L "$applet" ] || ln -s /bin/busybox "$applet"
    done
    [ -e init ] || ln -s /bin/busybox init
    install -m 0755 "$bin" usr/sbin/appliance
)
for overlay in "$root/rootfs-overlay" "$root/board/$board/rootfs-overlay"; do
    if [ -d "$overlay" ]; then
        cp -a "$overlay/." "$staging/"
    fi
done
# Dev/test image only (never in Buildroot release images): the boot tests' root
# shell on ttyS1, parked unless the kernel command line has appliance.testshell=1.
# Tests read /proc/net/ip_vs, /proc/mtd, dmesg... through it, independently of the
# appliance's own reports.
cp -a "$here/dev-overlay/." "$staging/"
cat >>"$staging/etc/inittab" <<'INITTAB'

# Dev/test image only (tests/image/build-image.sh): boot-test root shell.
ttyS1::respawn:/etc/init.d/testshell
INITTAB

# newc entry for /dev/console (char 5:1), written by hand so no root or mknod
# is needed: the kernel opens it for init's stdio before /dev is mounted.
cpio_entry() { # name mode(hex) rdevmajor rdevminor
    local name=$1 mode=$2 maj=$3 min=$4 hdr pad
    local namesize=$(( ${#name} + 1 ))
    hdr=$(printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        0 "$((16#$mode))" 0 0 1 0 0 0 0 "$maj" "$min" "$namesize" 0)
    printf '%s%s\0' "$hdr" "$name"
    pad=$(( (4 - (110 + namesize) % 4) % 4 ))
    head -c "$pad" /dev/zero
}

img=$out/initramfs.cpio
rm -f "$img" "$img.gz"
(
    cd "$staging"
    # Sorted and root-owned, whoever builds it.
    find . -mindepth 1 | LC_ALL=C sort | sed 's|^\./||' \
        | cpio --quiet -o -H newc -R 0:0 --reproducible
    cpio_entry dev/console 21A4 5 1
    cpio_entry TRAILER!!! 0 0 0
) >"$img"
if [ "$compress" = gzip ]; then
    gzip -n -6 "$img"
    img=$img.gz
elif [ "$compress" != none ]; then
    die "INITRAMFS_COMPRESS must be none or gzip, not $compress"
fi

cp "$kernel" "$out/bzImage"
cp "$(dirname "$kernel")/config" "$out/kernel.config"
log "kernel:    $out/bzImage ($(stat -c %s "$out/bzImage") bytes)"
log "initramfs: $img ($(stat -c %s "$img") bytes)"
echo "$out/bzImage"
echo "$img"
