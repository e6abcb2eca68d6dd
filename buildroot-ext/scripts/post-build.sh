#!/usr/bin/env bash
# Post-build step shared by every SIP_LB defconfig.
# usage (BR2_ROOTFS_POST_BUILD_SCRIPT): post-build.sh TARGET_DIR BOARD_DIR [CONSOLE]
#   BOARD_DIR  board/<board> of the repository (board.toml, grub.cfg...)
#   CONSOLE    serial console of the menu, ttyS0 unless given (ttyAMA0...)
set -euo pipefail

target=${1:?TARGET_DIR missing}
board_dir=${2:?BOARD_DIR missing (set BR2_ROOTFS_POST_SCRIPT_ARGS)}
console=${3:-ttyS0}

die() { echo "post-build: ERROR: $*" >&2; exit 1; }

[ -d "${board_dir}" ] || die "board directory ${board_dir} does not exist"
[ -x "${target}/usr/sbin/appliance" ] \
	|| die "/usr/sbin/appliance missing: enable BR2_PACKAGE_APPLIANCE"
[ -s "${target}/etc/appliance/board.toml" ] \
	|| die "/etc/appliance/board.toml missing: add ${board_dir}/rootfs-overlay to BR2_ROOTFS_OVERLAY"
inittab="${target}/etc/inittab"
grep -q '/usr/sbin/appliance console' "${inittab}" \
	|| die "${inittab} does not start the console menu: is the shared rootfs-overlay in BR2_ROOTFS_OVERLAY?"

# The shared inittab runs the menu on ttyS0 (x86 8250 UART). Boards
# whose console UART has another name get the line rewritten.
if [ "${console}" != "ttyS0" ]; then
	sed -i "s|^ttyS0::respawn:/usr/sbin/appliance console|${console}::respawn:/usr/sbin/appliance console|" \
		"${inittab}"
	grep -q "^${console}::respawn:/usr/sbin/appliance console" "${inittab}" \
		|| die "could not move the console menu to ${console} in ${inittab}"
fi

# A board overlay may ship /etc/init.d/rcS.board (e.g. to name the
# config partition); run it right after the shared rcS.
if [ -x "${target}/etc/init.d/rcS.board" ] \
	&& ! grep -q '^::sysinit:/etc/init.d/rcS.board' "${inittab}"; then
	sed -i '\|^::sysinit:/etc/init.d/rcS$|a ::sysinit:/etc/init.d/rcS.board' "${inittab}"
	grep -q '^::sysinit:/etc/init.d/rcS.board' "${inittab}" \
		|| die "no '::sysinit:/etc/init.d/rcS' line in ${inittab} to hook rcS.board after"
fi

# BIOS boards boot with GRUB: its A/B grub.cfg (generated from firmware/disk.rs, see
# update-boot-scripts.sh) goes to the boot partition's FAT through genimage (post-image.sh),
# with the superuser's password hash filled in.
if [ -f "${board_dir}/grub.cfg" ]; then
	out="${BINARIES_DIR:?BINARIES_DIR unset (Buildroot exports it)}/grub.cfg"
	# The menu is locked with a superuser password; never ship the placeholder.
	placeholder='@SIP_LB_GRUB_PASSWORD_PBKDF2@'
	if grep -q "${placeholder}" "${board_dir}/grub.cfg"; then
		hash=${SIP_LB_GRUB_PASSWORD_PBKDF2:-}
		[[ "${hash}" =~ ^grub\.pbkdf2\.sha512\.[0-9]+\.[0-9A-F]+\.[0-9A-F]+$ ]] \
			|| die "SIP_LB_GRUB_PASSWORD_PBKDF2 unset or not a grub-mkpasswd-pbkdf2 hash (grub.pbkdf2.sha512.N.SALT.HASH): the GRUB menu would ship unlocked. Export it before make."
		install -D -m 0600 "${board_dir}/grub.cfg" "${out}"
		sed -i "s|${placeholder}|${hash}|" "${out}"
	else
		install -D -m 0600 "${board_dir}/grub.cfg" "${out}"
	fi
	grep -q '^password_pbkdf2 [a-z]* grub\.pbkdf2\.sha512\.' "${out}" \
		|| die "${board_dir}/grub.cfg has no password_pbkdf2 superuser: the GRUB menu would ship unlocked"
fi
