#!/usr/bin/env bash
# Post-image step shared by every SIP_LB defconfig: lay out the images
# with genimage from BOARD_DIR/genimage.cfg.
# usage (BR2_ROOTFS_POST_IMAGE_SCRIPT): post-image.sh BINARIES_DIR BOARD_DIR [CONSOLE]
set -euo pipefail

binaries=${1:?BINARIES_DIR missing}
board_dir=${2:?BOARD_DIR missing (set BR2_ROOTFS_POST_SCRIPT_ARGS)}

die() { echo "post-image: ERROR: $*" >&2; exit 1; }

cfg="${board_dir}/genimage.cfg"
[ -f "${cfg}" ] || die "${cfg} does not exist"
# Post-image scripts run from the Buildroot top directory.
[ -x support/scripts/genimage.sh ] \
	|| die "run from the Buildroot top directory (support/scripts/genimage.sh not found)"

BINARIES_DIR="${binaries}" support/scripts/genimage.sh -c "${cfg}"

echo "post-image: images in ${binaries}; see ${board_dir}/readme.txt to boot or flash them"
