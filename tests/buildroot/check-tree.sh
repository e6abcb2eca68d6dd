#!/usr/bin/env bash
# Static check of the Buildroot external tree (buildroot-ext/ and board/).
# No network, no Buildroot checkout. See check_tree.py for the list of checks.
#
# usage: tests/buildroot/check-tree.sh [--root REPO]              check the tree (default: this repo)
#        tests/buildroot/check-tree.sh --self-test [--root REPO]  prove the checks fail on broken copies
#
# Kernel symbols are checked against the Kconfig files of Debian's
# linux-source-6.1 (/usr/src/linux-source-6.1.tar.xz), extracted once into
# ${SIP_LB_KCONFIG_CACHE:-/tmp/sip-lb-kconfig-6.1}/<tarball size+mtime>.
# Last line: "buildroot-check: N passed, M failed". Exit status 1 on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
tarball=${LINUX_SOURCE_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
py=python3
# check_tree.py needs tomllib (3.11+); prefer the system interpreter.
[ -x /usr/bin/python3 ] && py=/usr/bin/python3

# A check that cannot run fails in CI (CI=true) or with APPLIANCE_STRICT=1.
skip() {
    if [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ] || [ "${APPLIANCE_STRICT:-}" = 1 ]; then
        echo "FAIL: cannot check (a skip is a failure in CI): $*" >&2
        exit 1
    fi
    echo "SKIPPED (FAILS in CI): $*" >&2
}

kconfig_dir() {
    if [ ! -r "$tarball" ]; then
        skip "$tarball missing (apt-get install linux-source-6.1): kernel symbols not checked"
        return 0
    fi
    local key dir
    key=$(stat -c '%s-%Y' "$tarball")
    dir=${SIP_LB_KCONFIG_CACHE:-/tmp/sip-lb-kconfig-6.1}/$key
    if [ ! -e "$dir/.complete" ]; then
        rm -rf "$dir.tmp.$$"
        mkdir -p "$dir.tmp.$$"
        tar -xJf "$tarball" -C "$dir.tmp.$$" --wildcards '*/Kconfig*' >&2
        touch "$dir.tmp.$$/.complete"
        rm -rf "$dir"
        mv "$dir.tmp.$$" "$dir"
    fi
    echo "$dir"
}

run_check() { # $1 = repo root
    "$py" "$here/check_tree.py" --root "$1" --kconfig-dir "$kdir"
}

selftest=0
while [ $# -gt 0 ]; do
    case "$1" in
        --self-test) selftest=1; shift ;;
        --root) repo=$(cd "${2:?--root needs a directory}" && pwd); shift 2 ;;
        *) echo "check-tree: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done

kdir=$(kconfig_dir)

if [ "$selftest" = 0 ]; then
    run_check "$repo"
    exit $?
fi

# ---- self-test: every injected defect must make the check fail ----------
work=$(mktemp -d /tmp/br-check-selftest.XXXXXX)
trap 'rm -rf "$work"' EXIT
pristine=$work/pristine
mkdir -p "$pristine"
# Copy only what the checker reads (no target/ or build/ trees).
tar -C "$repo" -cf - buildroot-ext board rootfs-overlay Cargo.lock appliance/Cargo.toml LICENSE 2>/dev/null \
    | tar -C "$pristine" -xf -

st_pass=0 st_fail=0
expect() { # $1 = description, $2 = expected status (ok|fail), $3 = shell edit run in the copy
    local copy=$work/case out status
    rm -rf "$copy"; cp -a "$pristine" "$copy"
    (cd "$copy" && eval "$3")
    if out=$(run_check "$copy" 2>&1); then status=ok; else status=fail; fi
    if [ "$status" = "$2" ]; then
        st_pass=$((st_pass + 1)); echo "self-test ok: $1 -> $status"
    else
        st_fail=$((st_fail + 1)); echo "self-test FAILED: $1 -> $status, expected $2"; echo "$out" | tail -5
    fi
}

expect "pristine copy" ok ":"
expect "trailing whitespace in appliance.mk" fail "sed -i '1s/\$/ /' buildroot-ext/package/appliance/appliance.mk"
expect "mk variable without package prefix" fail "echo 'FOO_BAR = 1' >> buildroot-ext/package/appliance/appliance.mk"
expect "spaces instead of tab in Config.in" fail "sed -i 's/^\tbool/    bool/' buildroot-ext/package/appliance/Config.in"
expect "consecutive empty lines in Config.in" fail "printf '\n\n' >> buildroot-ext/Config.in"
expect "defconfig without FORCE_CHECK_HASHES" fail "sed -i '/BR2_DOWNLOAD_FORCE_CHECK_HASHES/d' buildroot-ext/configs/sip_lb_apu2_defconfig"
expect "defconfig references a missing path" fail "sed -i 's|board/pcengines-apu2/linux.fragment|board/pcengines-apu2/nope.fragment|' buildroot-ext/configs/sip_lb_apu2_defconfig"
expect "defconfig uses an absolute path" fail "echo 'BR2_ROOTFS_USERS_TABLES=\"/etc/users\"' >> buildroot-ext/configs/sip_lb_apu2_defconfig"
expect "kernel version without hash" fail "sed -i 's/\"6.1.175\"/\"6.1.176\"/' buildroot-ext/configs/sip_lb_qemu_x86_64_defconfig"
expect "hash line with one space" fail "sed -i 's/^sha256  \\([0-9a-f]*\\)  COPYING/sha256 \\1 COPYING/' board/common/patches/linux/linux.hash"
expect "hash without origin comment" fail "sed -i '/^# Locally calculated/d' board/common/patches/linux/linux.hash"
expect "unknown kernel symbol in a fragment" fail "echo 'CONFIG_IP_VS_DOES_NOT_EXIST=y' >> board/pcengines-apu2/linux.fragment"
expect "no LICENSE for APPLIANCE_LICENSE_FILES" fail "rm LICENSE"
expect "missing board readme" fail "rm board/qemu-aarch64-virt/readme.txt"
expect "genimage input nobody builds" fail "sed -i 's/\"slot-a.img\"/\"slot-a.ext4\"/' board/pcengines-apu2/genimage.cfg"
expect "board.toml without watchdog" fail "sed -i 's|^watchdog = \"/dev/watchdog\"|watchdog = \"\"|' board/pcengines-apu2/rootfs-overlay/etc/appliance/board.toml"
# Release hardening: no test shell, no SysRq, a locked GRUB menu.
expect "test shell in the shared overlay" fail "printf '#!/bin/sh\\nexec /bin/sh\\n' > rootfs-overlay/etc/init.d/testshell"
expect "root shell on ttyS1 in the release inittab" fail "echo 'ttyS1::respawn:/bin/sh' >> rootfs-overlay/etc/inittab"
expect "getty in a board overlay inittab" fail "mkdir -p board/qemu-x86_64/rootfs-overlay/etc && echo 'ttyS1::respawn:/sbin/getty -L ttyS1 115200' > board/qemu-x86_64/rootfs-overlay/etc/inittab"
expect "post-build copies the dev overlay" fail "echo 'cp -a ../tests/image/dev-overlay/. /tmp/x' >> buildroot-ext/scripts/post-build.sh"
expect "Magic SysRq left on in release kernels" fail "sed -i '/CONFIG_MAGIC_SYSRQ is not set/d' board/common/linux-buildroot.fragment"
expect "GRUB menu without superusers" fail "sed -i '/^set superusers/d' board/pcengines-apu2/grub.cfg"
expect "GRUB menu without password" fail "sed -i '/^password_pbkdf2/d' board/pcengines-apu2/grub.cfg"
expect "A/B grub.cfg that never boots" fail "sed -i '/^  boot\$/d' board/pcengines-apu2/grub.cfg"
expect "GRUB default entry restricted" fail "printf 'menuentry \"a\" {\\n\\tboot\\n}\\n' >> board/pcengines-apu2/grub.cfg"
expect "second GRUB entry unrestricted" fail "printf 'menuentry \"a\" --unrestricted {\\n}\\nmenuentry \"rescue\" --unrestricted {\\n\\tlinux /boot/bzImage init=/bin/sh\\n}\\n' >> board/pcengines-apu2/grub.cfg"
expect "post-build ships the GRUB placeholder" fail "sed -i 's/SIP_LB_GRUB_PASSWORD_PBKDF2:-/SIP_LB_GRUB_PW:-/' buildroot-ext/scripts/post-build.sh"
expect "GRUB without password_pbkdf2 module" fail "sed -i 's/ password_pbkdf2\"/\"/' buildroot-ext/configs/sip_lb_apu2_defconfig"

# post-build.sh itself: refuses the APU2 menu without a password hash, fills it in with one.
pb_case() { # $1 = expected status (ok|fail), $2 = SIP_LB_GRUB_PASSWORD_PBKDF2 value
    local t=$work/pb status
    rm -rf "$t"; mkdir -p "$t/usr/sbin" "$t/etc/appliance" "$t/etc/init.d"
    printf '#!/bin/sh\n' > "$t/usr/sbin/appliance"; chmod +x "$t/usr/sbin/appliance"
    echo 'store = "x"' > "$t/etc/appliance/board.toml"
    cp "$repo/rootfs-overlay/etc/inittab" "$t/etc/inittab"
    if SIP_LB_GRUB_PASSWORD_PBKDF2=$2 BINARIES_DIR=$work bash "$repo/buildroot-ext/scripts/post-build.sh" \
        "$t" "$repo/board/pcengines-apu2" ttyS0 >/dev/null 2>&1 \
        && ! grep -q '@SIP_LB_GRUB_PASSWORD_PBKDF2@' "$work/grub.cfg" \
        && grep -q "^password_pbkdf2 root $2\$" "$work/grub.cfg"; then status=ok; else status=fail; fi
    if [ "$status" = "$1" ]; then
        st_pass=$((st_pass + 1)); echo "self-test ok: post-build with GRUB hash '${2:0:24}' -> $status"
    else
        st_fail=$((st_fail + 1)); echo "self-test FAILED: post-build with GRUB hash '${2:0:24}' -> $status, expected $1"
    fi
}
pb_case fail ""
pb_case fail "changeme"
pb_case ok "grub.pbkdf2.sha512.10000.0123456789ABCDEF.FEDCBA9876543210"

if command -v shellcheck >/dev/null; then
    expect "shellcheck warning in post-build.sh" fail "echo 'echo \$undefined_var_x' >> buildroot-ext/scripts/post-build.sh"
else
    skip "shellcheck not installed: shell lint self-test not run"
fi

echo "buildroot-check self-test: $st_pass passed, $st_fail failed"
[ "$st_fail" = 0 ]
