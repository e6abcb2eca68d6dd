#!/usr/bin/env bash
# Regenerate the release images' A/B bootloader scripts from firmware/disk.rs (the one place
# for the slot layout and the A/B rule): board/<board>/grub.cfg (GRUB, locked) and
# board/qemu-aarch64-virt/boot.cmd (U-Boot). The first line of each file is the command that
# made it; `cargo test -p appliance committed_release_boot_scripts` fails when one is stale.
# usage: buildroot-ext/scripts/update-boot-scripts.sh   (from anywhere; builds the tool)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "${root}"
cargo build --locked -q -p appliance
tool=${CARGO_TARGET_DIR:-${root}/target}/debug/appliance

gen() { # OUT ARGS... : the command line as a comment, then its output
	local out=$1
	shift
	{ echo "# appliance firmware $*"; "${tool}" firmware "$@"; } >"${out}.tmp"
	mv "${out}.tmp" "${out}"
	echo "update-boot-scripts: ${out}"
}

facts() { echo "board/$1/rootfs-overlay/etc/appliance/board.toml"; }

gen board/pcengines-apu2/grub.cfg grub-cfg --board-file "$(facts pcengines-apu2)" \
	--root PARTUUID=51b10ad2-0 --locked
gen board/qemu-x86_64/grub.cfg grub-cfg --board-file "$(facts qemu-x86_64)" \
	--root /dev/vdb --locked
gen board/qemu-aarch64-virt/boot.cmd uboot-script --board-file "$(facts qemu-aarch64-virt)" \
	--uboot-disk virtio:1 --root /dev/vdb --console ttyAMA0
