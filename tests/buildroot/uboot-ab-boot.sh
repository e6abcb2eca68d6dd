#!/usr/bin/env bash
# Prove the U-Boot A/B boot script in QEMU with Debian's U-Boot (u-boot-qemu, qemu_arm64):
# the aarch64 release disk from post-image.sh (stand-in kernel and rootfs, so booti refuses
# them and the script falls through), U-Boot's bootcmd from board/qemu-aarch64-virt/
# uboot.fragment put into its flash environment. Each run is one power-on; evidence is
# U-Boot's serial output and the environment the script saved on the disk, read with
# `appliance firmware status`:
#   run 1  fresh disk            -> slot A, A_LEFT 3 -> 2 saved
#   `appliance firmware install` of a bundle into slot B (B on trial, LEFT=1, first in ORDER)
#   run 2                        -> slot B, B_LEFT 1 -> 0 saved
#   run 3  B never marked good   -> back to slot A (the rollback by boot counting)
#   run 4  copy 1 torn           -> copy 2 read, slot A again
# usage: tests/buildroot/uboot-ab-boot.sh    (needs what check-images.sh needs + qemu-system-arm,
#        u-boot-qemu; last line "uboot-ab: ok")
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
fail() { echo "uboot-ab: FAIL: $*" >&2; exit 1; }
ubin=/usr/lib/u-boot/qemu_arm64/u-boot.bin
missing=()
for t in genimage mkimage mkenvimage qemu-system-aarch64; do command -v "$t" >/dev/null || missing+=("$t"); done
[ -f "$ubin" ] || missing+=("$ubin")
if [ ${#missing[@]} -gt 0 ]; then
    msg="missing ${missing[*]}: run tests/setup-host.sh (u-boot-qemu, u-boot-tools, genimage, qemu-system-arm)"
    if [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; then fail "$msg (a skip is a failure in CI)"; fi
    echo "uboot-ab: SKIPPED (FAILS in CI): $msg" >&2
    exit 0
fi
(cd "$repo" && cargo build --locked -q -p appliance)
w=$(mktemp -d /tmp/uboot-ab.XXXXXX)
qpid=
cleanup() { [ -n "$qpid" ] && kill "$qpid" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$w"; }
trap cleanup EXIT
mkdir -p "$w/bin" "$w/out"
cp "${CARGO_TARGET_DIR:-$repo/target}/debug/appliance" "$w/bin/"
export PATH="$w/bin:$PATH"
dir=$repo/board/qemu-aarch64-virt
facts=$dir/rootfs-overlay/etc/appliance/board.toml
key=$repo/tests/image/keys/test-firmware.key
keyring=$repo/tests/image/dev-overlay/etc/appliance/firmware-keys

head -c 1500000 /dev/urandom >"$w/out/rootfs.squashfs"
head -c 900000 /dev/urandom >"$w/out/Image"
mkimage -A arm64 -T script -C none -d "$dir/boot.cmd" "$w/out/boot.scr" >/dev/null
SIP_LB_FIRMWARE_KEY=$key SIP_LB_VERSION=1.0.0 bash "$repo/buildroot-ext/scripts/post-image.sh" \
    "$w/out" "$dir" >"$w/post-image.log" 2>&1 || { tail "$w/post-image.log"; fail "post-image.sh"; }
appliance firmware bundle --key "$key" --version 1.1.0 --board qemu-aarch64-virt -o "$w/new.bundle" \
    kernel="$w/out/Image" rootfs="$w/out/rootfs.squashfs" >/dev/null

bootcmd=$(sed -n 's/^CONFIG_BOOTCOMMAND="\(.*\)"$/\1/p' "$dir/uboot.fragment")
[ -n "$bootcmd" ] || fail "no CONFIG_BOOTCOMMAND in uboot.fragment"
# A flash environment replaces U-Boot's built-in one: carry over the load addresses the
# script uses (qemu_arm64's defaults) with the bootcmd.
strings "$ubin" | grep -E '^(scriptaddr|kernel_addr_r|loadaddr)=0x[0-9a-f]+$' | sort -u >"$w/env.txt"
[ "$(wc -l <"$w/env.txt")" = 3 ] || fail "cannot read the load addresses from $ubin"
printf 'bootcmd=%s\nbootdelay=0\n' "$bootcmd" >>"$w/env.txt"
mkenvimage -s 0x40000 -o "$w/flash1.img" "$w/env.txt"
truncate -s 64M "$w/flash1.img"
cp "$ubin" "$w/flash0.img"
truncate -s 64M "$w/flash0.img"

boot() { # $1 = run number: one power-on until U-Boot gives up (or 60 s)
    local log=$w/run$1.log
    qemu-system-aarch64 -M virt -cpu cortex-a53 -m 256 -nographic -nodefaults -serial "file:$log" \
        -name "uboot-ab-$$-$1" -no-reboot \
        -drive if=pflash,format=raw,unit=0,file="$w/flash0.img",readonly=on \
        -drive if=pflash,format=raw,unit=1,file="$w/flash1.img" \
        -drive file="$w/out/store.img",format=raw,if=none,id=store -device virtio-blk-pci,drive=store \
        -drive file="$w/out/disk.img",format=raw,if=none,id=boot -device virtio-blk-pci,drive=boot \
        -nic none &
    qpid=$!
    for _ in $(seq 120); do
        grep -q 'A/B boot failed' "$log" 2>/dev/null && break
        sleep 0.5
    done
    kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null || true; qpid=
    grep -q 'A/B boot failed' "$log" || { tail -20 "$log"; fail "run $1: the boot script did not run to its end"; }
}
status() { appliance firmware status --board-file "$facts" --disk "$w/out/disk.img" --booted "$1"; }
expect() { # $1 = run, $2 = text the serial log must hold
    grep -qF "$2" "$w/run$1.log" || { tail -20 "$w/run$1.log"; fail "run $1: no '$2' on the serial console"; }
}
status A >"$w/status0"
boot 1
expect 1 "A/B environment: copy 1"
expect 1 "booting slot A (1.0.0)"
status A >"$w/status1"
diff "$w/status0" "$w/status1" >/dev/null && fail "run 1: the environment on the disk did not change"

appliance firmware install "$w/new.bundle" --board-file "$facts" --disk "$w/out/disk.img" --booted A \
    --keyring "$keyring" >"$w/install.log" 2>&1 || { cat "$w/install.log"; fail "install into slot B"; }
boot 2
expect 2 "booting slot B (1.1.0)"
boot 3
expect 3 "booting slot A (1.0.0)"
# Tear copy 1 of the environment: the script must read copy 2.
printf 'XXXXXXXX' | dd of="$w/out/disk.img" bs=1 seek=$((1048576 + 100)) conv=notrunc 2>/dev/null
boot 4
expect 4 "A/B environment: copy 2"
expect 4 "booting slot A (1.0.0)"
echo "uboot-ab: status after the runs:"
status A
echo "uboot-ab: ok"
