#!/bin/bash
# Build the offline dev image: kernel (cached, see build-kernel.sh) + initramfs
# with BusyBox (Debian busybox-static), the static `appliance` binary and the
# rootfs overlays, plus tests/image/dev-overlay (the test shell). Rebuilds the binary every time (cargo is incremental) so the
# image always carries the current code.
#
# usage: build-image.sh        env: BOARD (qemu-x86_64 | qemu-aarch64-virt),
#                                   OUT_DIR (build/, build/<board>/ for other boards),
#                                   INITRAMFS_COMPRESS (none|gzip, default none)
# Outputs: $OUT_DIR/bzImage (x86_64) or $OUT_DIR/Image (aarch64),
# $OUT_DIR/initramfs.cpio[.gz]; prints both paths.
# The aarch64 binary is built with Debian's rustc-web (/usr/bin/cargo, /usr/bin/rustc),
# which carries the aarch64 standard library; x86_64 uses the rustup toolchain.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
board=${BOARD:-qemu-x86_64}
if [ "$board" = qemu-x86_64 ]; then
    out=${OUT_DIR:-$root/build}
else
    out=${OUT_DIR:-$root/build/$board}
fi
compress=${INITRAMFS_COMPRESS:-none}

log() { echo "build-image: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source=tests/image/boards.sh
. "$here/boards.sh"
load_board "$board" || die "set BOARD to a known board"
target=$rust_target
# BUSYBOX: another busybox-static for this board (e.g. when a cross package replaced /bin/busybox).
busybox=${BUSYBOX:-$busybox}
export BOARD=$board # build-kernel.sh below

[ -x "$busybox" ] || die "$busybox missing: run tests/setup-host.sh (installs $busybox_pkg)"
readelf -l "$busybox" | grep -q 'program interpreter' && die "$busybox is not static: install busybox-static, not busybox"
# The applet list comes from running BusyBox; a foreign-architecture one cannot
# run here, so the host's busybox-static of the same version lists it.
lister=$busybox
if ! "$busybox" true 2>/dev/null; then
    lister=/bin/busybox
    bbver() { grep -a -o -m1 'BusyBox v[0-9][0-9.]*' "$1" | head -n1; }
    [ -x "$lister" ] || die "$lister missing: run tests/setup-host.sh (installs busybox-static)"
    [ "$(bbver "$busybox")" = "$(bbver "$lister")" ] \
        || die "$busybox ($(bbver "$busybox")) and $lister ($(bbver "$lister")) differ: reinstall both from the same Debian release"
fi
mkdir -p "$out"

# Only one image build at a time per output dir (parallel test processes).
exec 8>"$out/.build-image.lock"
flock 8

kernel=$("$here/build-kernel.sh")

log "building static appliance binary ($target)"
(
    cd "$root"
    export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
    if [ "$rust_toolchain" = debian ]; then
        # Debian's rustc-web has the aarch64 std (libstd-rust-web-dev:arm64); the
        # cross gcc links against libc6-dev-arm64-cross's static glibc.
        [ -x /usr/bin/cargo ] && [ -d "/usr/lib/rustlib/$target" ] \
            || die "no Debian Rust for $target: run tests/setup-host.sh (rustc-web, cargo-web, libstd-rust-web-dev:arm64)"
        linker_var=CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_LINKER
        export "$linker_var=${cross_compile}gcc"
        RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
            /usr/bin/cargo build --release --locked --target "$target" -p appliance
    else
        cargo build --release --locked --target "$target" -p appliance
    fi
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
    "$lister" --list-full | while read -r applet; do
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
# The board's console tty (the shared inittab says ttyS0).
sed -i "s/^ttyS0::/${console_tty}::/" "$staging/etc/inittab"
grep -q "^${console_tty}::respawn:/usr/sbin/appliance console" "$staging/etc/inittab" \
    || die "inittab has no console line for $console_tty"
# Dev/test image only (never in Buildroot release images): the boot tests' root
# shell on ttyS1 (hvc0 on aarch64), parked unless the kernel command line has appliance.testshell=1.
# Tests read /proc/net/ip_vs, /proc/mtd, dmesg... through it, independently of the
# appliance's own reports.
cp -a "$here/dev-overlay/." "$staging/"
cat >>"$staging/etc/inittab" <<INITTAB

# Dev/test image only (tests/image/build-image.sh): boot-test root shell.
${test_tty}::respawn:/etc/init.d/testshell
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

cp "$kernel" "$out/$kernel_target"
cp "$(dirname "$kernel")/config" "$out/kernel.config"
log "kernel:    $out/$kernel_target ($(stat -c %s "$out/$kernel_target") bytes)"
log "initramfs: $img ($(stat -c %s "$img") bytes)"
echo "$out/$kernel_target"
echo "$img"
