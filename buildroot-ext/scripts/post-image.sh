#!/usr/bin/env bash
# Post-image step shared by every SIP_LB defconfig: the A/B boot disk and the signed update
# bundle. The slot layout and the first environment come from `appliance firmware` (built
# for the host by host-appliance) reading the board's board.toml [firmware], so the dev
# image, these images and the running daemon share one rule (firmware/disk.rs).
#   slot-a.img     rootfs.squashfs at 0, the kernel at the end of the slot
#   grubenv        GRUB boards: first GRUB environment (grub.cfg comes from post-build.sh)
#   boot-env.img   U-Boot boards: both U-Boot environment copies + boot.scr
#   disk.img ...   genimage with BOARD_DIR/genimage.cfg
#   update.bundle  signed with SIP_LB_FIRMWARE_KEY (a key from `appliance firmware keygen`)
# usage (BR2_ROOTFS_POST_IMAGE_SCRIPT): post-image.sh BINARIES_DIR BOARD_DIR [CONSOLE]
# env: HOST_DIR (Buildroot), SIP_LB_FIRMWARE_KEY (required), SIP_LB_VERSION (default: the
#      appliance version), GENIMAGE (default: genimage in HOST_DIR/bin or PATH)
set -euo pipefail

binaries=${1:?BINARIES_DIR missing}
board_dir=${2:?BOARD_DIR missing (set BR2_ROOTFS_POST_SCRIPT_ARGS)}

die() { echo "post-image: ERROR: $*" >&2; exit 1; }

cfg="${board_dir}/genimage.cfg"
facts="${board_dir}/rootfs-overlay/etc/appliance/board.toml"
[ -f "${cfg}" ] || die "${cfg} does not exist"
[ -f "${facts}" ] || die "${facts} does not exist"
PATH="${HOST_DIR:+${HOST_DIR}/bin:}${PATH}"
command -v appliance >/dev/null \
	|| die "no host appliance tool: enable BR2_PACKAGE_HOST_APPLIANCE"
genimage=${GENIMAGE:-genimage}
command -v "${genimage}" >/dev/null || die "genimage missing: enable BR2_PACKAGE_HOST_GENIMAGE"
key=${SIP_LB_FIRMWARE_KEY:-}
[ -f "${key}" ] \
	|| die "SIP_LB_FIRMWARE_KEY unset or not a file: the update bundle must be signed. Make a key with 'appliance firmware keygen NAME' and export SIP_LB_FIRMWARE_KEY=NAME.key before make."

kernel=
for k in bzImage Image; do
	[ -f "${binaries}/${k}" ] && kernel="${binaries}/${k}"
done
[ -n "${kernel}" ] || die "no kernel (bzImage or Image) in ${binaries}"
rootfs="${binaries}/rootfs.squashfs"
[ -f "${rootfs}" ] || die "${rootfs} missing: enable BR2_TARGET_ROOTFS_SQUASHFS"
version=${SIP_LB_VERSION:-$(appliance version | awk '{print $2}')}
board=$(sed -n 's/^name = "\(.*\)"$/\1/p' "${facts}")
[ -n "${board}" ] || die "${facts} has no name"

appliance firmware slot-image --board-file "${facts}" -o "${binaries}/slot-a.img" \
	kernel="${kernel}" rootfs="${rootfs}"
if grep -q '^bootloader = "uboot"' "${facts}"; then
	[ -f "${binaries}/boot.scr" ] \
		|| die "${binaries}/boot.scr missing: enable BR2_PACKAGE_HOST_UBOOT_TOOLS_BOOT_SCRIPT"
	appliance firmware env-image --board-file "${facts}" -o "${binaries}/boot-env.img" \
		--version "${version}" --boot-script "${binaries}/boot.scr" \
		kernel="${kernel}" rootfs="${rootfs}"
else
	[ -f "${binaries}/grub.cfg" ] || die "${binaries}/grub.cfg missing: post-build.sh makes it"
	appliance firmware env-image --board-file "${facts}" -o "${binaries}/grubenv" \
		--version "${version}" kernel="${kernel}" rootfs="${rootfs}"
fi

tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT
mkdir -p "${tmp}/root"
"${genimage}" --config "${cfg}" --rootpath "${tmp}/root" --tmppath "${tmp}/genimage" \
	--inputpath "${binaries}" --outputpath "${binaries}"

appliance firmware bundle --key "${key}" --version "${version}" --board "${board}" \
	-o "${binaries}/update.bundle" kernel="${kernel}" rootfs="${rootfs}"

echo "post-image: images in ${binaries}; see ${board_dir}/readme.txt to boot or flash them"
