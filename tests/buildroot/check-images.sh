#!/usr/bin/env bash
# Run the release images' post-image step offline, for every board: post-image.sh with
# genimage (Debian's genimage), the host `appliance` tool and stand-in kernel/rootfs, then
# check the disk genimage made against the layout the daemon uses (board.toml [firmware]):
# partition table, slot A's rootfs and kernel at their offsets, the first environment
# readable by `appliance firmware status`, the bundle verifying with the test key. U-Boot
# boards' boot.cmd is compiled with mkimage. Buildroot itself is not needed (nor reachable).
# usage: tests/buildroot/check-images.sh     (last line: "image-check: N boards ok")
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
fail() { echo "image-check: FAIL: $*" >&2; exit 1; }
missing=()
for t in genimage mkimage mcopy mkfs.fat; do command -v "$t" >/dev/null || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
    msg="missing ${missing[*]}: run tests/setup-host.sh (genimage, u-boot-tools, mtools, dosfstools)"
    if [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; then fail "$msg (a skip is a failure in CI)"; fi
    echo "image-check: SKIPPED (FAILS in CI): $msg" >&2
    exit 0
fi
(cd "$repo" && cargo build --locked -q -p appliance)
bin=$(mktemp -d /tmp/image-check.XXXXXX)
trap 'rm -rf "$bin"' EXIT
cp "${CARGO_TARGET_DIR:-$repo/target}/debug/appliance" "$bin/appliance"
export PATH="$bin:$PATH"
key=$repo/tests/image/keys/test-firmware.key
keyring=$repo/tests/image/dev-overlay/etc/appliance/firmware-keys

n=0
for board in qemu-x86_64 pcengines-apu2 qemu-aarch64-virt; do
    dir=$repo/board/$board
    facts=$dir/rootfs-overlay/etc/appliance/board.toml
    out=$bin/$board
    mkdir -p "$out"
    head -c 1500000 /dev/urandom >"$out/rootfs.squashfs"
    if grep -q '^bootloader = "uboot"' "$facts"; then
        head -c 900000 /dev/urandom >"$out/Image"; kernel=$out/Image
        mkimage -A arm64 -T script -C none -d "$dir/boot.cmd" "$out/boot.scr" >/dev/null \
            || fail "$board: mkimage cannot compile boot.cmd"
    else
        head -c 900000 /dev/urandom >"$out/bzImage"; kernel=$out/bzImage
        head -c 512 /dev/urandom >"$out/boot.img"
        head -c 30000 /dev/urandom >"$out/grub.img"
        sed 's/@SIP_LB_GRUB_PASSWORD_PBKDF2@/grub.pbkdf2.sha512.10000.00.00/' "$dir/grub.cfg" >"$out/grub.cfg"
    fi
    SIP_LB_FIRMWARE_KEY=$key SIP_LB_VERSION=1.2.3 bash "$repo/buildroot-ext/scripts/post-image.sh" \
        "$out" "$dir" >"$out.log" 2>&1 || { tail -20 "$out.log"; fail "$board: post-image.sh failed"; }
    disk=$out/disk.img
    # Partition table against board.toml: p1 1 MiB at 1 MiB, slots of slot_mib after it.
    python3 - "$disk" "$facts" <<'PY' || fail "$board: partition table does not match board.toml [firmware]"
import struct, sys, tomllib
disk, facts = sys.argv[1], sys.argv[2]
fw = tomllib.load(open(facts, "rb"))["firmware"]
mbr = open(disk, "rb").read(512)
assert mbr[510:] == b"\x55\xaa", "no MBR signature"
parts = [struct.unpack_from("<B3xB3xII", mbr, 446 + 16 * i) for i in range(4)]
slot = fw["slot_mib"] * 2048
want = [(2048, 2048), (4096, slot), (4096 + slot, slot)]
got = [(p[2], p[3]) for p in parts[:3]]
assert got == want, "partitions {} != {}".format(got, want)
assert parts[1][1] == parts[2][1] == 0xda, "slot partition types"
import os
end = (4096 + 2 * slot) * 512
assert os.path.getsize(disk) >= end, "disk image {} bytes, slot B ends at {}".format(os.path.getsize(disk), end)
PY
    # Slot A: rootfs at its start, kernel at the end (the daemon's Layout::area).
    slot_mib=$(sed -n 's/^slot_mib = //p' "$facts"); kernel_mib=$(sed -n 's/^kernel_mib = //p' "$facts")
    cmp -n "$(stat -c %s "$out/rootfs.squashfs")" "$out/rootfs.squashfs" <(tail -c +$((2 * 1048576 + 1)) "$disk") \
        || fail "$board: rootfs is not at the start of slot A"
    cmp -n "$(stat -c %s "$kernel")" "$kernel" <(tail -c +$(((2 + slot_mib - kernel_mib) * 1048576 + 1)) "$disk") \
        || fail "$board: kernel is not at the end of slot A"
    st=$(appliance firmware status --board-file "$facts" --disk "$disk" --booted A) \
        || fail "$board: appliance firmware status cannot read the image's environment"
    grep -q '1.2.3' <<<"$st" || fail "$board: status does not show slot A's version: $st"
    name=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$facts")
    appliance firmware verify "$out/update.bundle" --keyring "$keyring" --board "$name" >/dev/null \
        || fail "$board: the update bundle does not verify"
    echo "image-check: $board ok ($(stat -c %s "$disk") byte disk, bundle $(stat -c %s "$out/update.bundle") bytes)"
    n=$((n + 1))
done
echo "image-check: $n boards ok"
