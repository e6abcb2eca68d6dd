#!/bin/bash
# Build the dev image's A/B boot disk: MBR with GRUB's boot.img, GRUB core.img (i386-pc,
# from grub-mkimage, grub.cfg inside a memdisk) before the first partition, a 1 MiB FAT
# holding only the GRUB environment block (mkfs.fat + mcopy on a file), slot A = the dev
# image's kernel + initramfs, slot B empty.
# No loop devices, no root: the layout comes from the board file through
# `appliance firmware make-disk` (firmware/disk.rs), the only place that knows it.
#
# usage: build-disk.sh OUT.img   env: BOARD (qemu-x86_64), OUT_DIR (build/), VERSION,
#                                     APPEND (extra kernel command line, kept in the env block),
#                                     KERNEL / ROOTFS (default: build/bzImage, build/initramfs.cpio)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: build-disk.sh OUT.img}
board=${BOARD:-qemu-x86_64}
build=${OUT_DIR:-$root/build}
kernel=${KERNEL:-$build/bzImage}
rootfs=${ROOTFS:-$build/initramfs.cpio}
board_file=$root/board/$board/rootfs-overlay/etc/appliance/board.toml
grub=/usr/lib/grub/i386-pc
log() { echo "build-disk: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ -f "$grub/boot.img" ] || die "$grub/boot.img missing: run tests/setup-host.sh (installs grub-pc-bin)"
command -v grub-mkimage >/dev/null || die "grub-mkimage missing: run tests/setup-host.sh (installs grub-common)"
command -v mkfs.fat >/dev/null && command -v mcopy >/dev/null \
    || die "mkfs.fat/mcopy missing: run tests/setup-host.sh (installs dosfstools, mtools)"
[ -f "$kernel" ] && [ -f "$rootfs" ] || die "kernel/initramfs missing: run tests/image/build-image.sh first"

(cd "$root" && cargo build --locked -p appliance) >&2
tool=${CARGO_TARGET_DIR:-$root/target}/debug/appliance
version=${VERSION:-$("$tool" version | awk '{print $2}')}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/memdisk/boot/grub"
"$tool" firmware grub-cfg --board-file "$board_file" >"$work/memdisk/boot/grub/grub.cfg"
tar -C "$work/memdisk" -cf "$work/memdisk.tar" boot
# biosdisk + part_msdos: the slots; loadenv: the A/B counters; linux: the loader;
# memdisk + tar: grub.cfg travels inside core.img; normal: the script language.
grub-mkimage -O i386-pc -o "$work/core.img" -p "(memdisk)/boot/grub" -m "$work/memdisk.tar" \
    biosdisk part_msdos fat loadenv test echo linux normal memdisk tar serial terminal
grub-editenv "$work/grubenv" create
mkfs.fat -C -n GRUBENV "$work/env.fat" 1024 >/dev/null
mcopy -i "$work/env.fat" "$work/grubenv" ::grubenv
"$tool" firmware make-disk --board-file "$board_file" -o "$out" \
    --boot-img "$grub/boot.img" --core-img "$work/core.img" --env-part "$work/env.fat" --version "$version" \
    --append "${APPEND:-}" kernel="$kernel" rootfs="$rootfs" >&2
log "core.img $(stat -c %s "$work/core.img") bytes"
echo "$out"
