#!/bin/bash
# Install what the offline image build, the QEMU boot tests and the SIP lab
# need on a fresh Debian bookworm host. Idempotent and quiet: it only runs
# apt-get (update + install) when a package is missing. Needs root.
#
# usage: tests/setup-host.sh [--check]   (--check: list missing, install nothing)
set -euo pipefail

packages=(
    # kernel build (tests/image/build-kernel.sh)
    linux-source-6.1 build-essential bc flex bison libelf-dev libssl-dev
    xz-utils lz4 cpio util-linux binutils
    # userland and image assembly (tests/image/build-image.sh)
    busybox-static
    # A/B boot disk for the firmware tests (tests/image/build-disk.sh): GRUB i386-pc
    # (boot.img, grub-mkimage, grub-editenv) and a FAT for its environment block
    grub-pc-bin grub-common dosfstools mtools
    # Buildroot post-image offline (tests/buildroot/check-images.sh): genimage, and
    # mkimage to compile the U-Boot A/B boot script
    genimage u-boot-tools
    # the U-Boot A/B boot script run in QEMU (tests/buildroot/uboot-ab-boot.sh)
    u-boot-qemu
    # running the image (tests/image/run-qemu.sh, tests/src/vm.rs)
    qemu-system-x86
    # SIP lab: peers, captures, namespaces, reference LVS tools
    sip-tester tshark tcpdump iproute2 keepalived ipvsadm socat
    # benchmarks only (tests/bench): the L7 comparison, Kamailio's dispatcher
    kamailio
    # observability lab peers: remote syslog collector and NTP server
    rsyslog chrony
    # Buildroot tree checks (tests/buildroot): tomllib needs python3 >= 3.11
    python3 shellcheck flake8
    # metrics test (tests/tests/metrics_prometheus.rs): the scraper and its API client
    prometheus curl
    # aarch64 dev image (BOARD=qemu-aarch64-virt, tests/tests/arm_boot.rs): cross gcc
    # and static glibc, Debian's Rust (rustc-web 1.96 carries an aarch64 std through
    # libstd-rust-web-dev:arm64; rustup cannot add targets offline), QEMU for arm.
    # The x86_64 build keeps using the rustup toolchain: these do not replace it.
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross rustc-web cargo-web
    libstd-rust-web-dev:arm64 qemu-system-arm
)

# BusyBox for the aarch64 image: busybox-static:arm64 cannot be installed next to
# the host's busybox-static (both own /bin/busybox), so its .deb is unpacked into
# the cache, where tests/image/boards.sh looks for it.
arm_busybox_dir=${APPLIANCE_CACHE:-/var/cache/sip-lb-appliance}/busybox-arm64
arm_busybox_ok() { [ -x "$arm_busybox_dir/bin/busybox" ]; }

# rustfmt and clippy for tests/run.sh's format/lint step. rustup may be offline:
# then say so; run.sh fails that step in CI and skips it loudly elsewhere.
if command -v rustup >/dev/null; then
    for c in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$c" && continue
        if [ "${1:-}" = --check ]; then
            echo "setup-host: missing rust component $c"
        elif ! rustup component add "$c" >/dev/null 2>&1; then
            echo "setup-host: WARNING: 'rustup component add $c' failed (offline?): tests/run.sh cannot lint" >&2
        fi
    done
fi

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ] && arm_busybox_ok; then
    [ "${1:-}" = --check ] && echo "setup-host: all ${#packages[@]} packages installed, arm64 busybox unpacked"
    exit 0
fi
if [ "${1:-}" = --check ]; then
    [ ${#missing[@]} -eq 0 ] || echo "setup-host: missing: ${missing[*]}"
    arm_busybox_ok || echo "setup-host: missing: busybox-static:arm64 in $arm_busybox_dir"
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "setup-host: ERROR: missing ${missing[*]} (or the arm64 busybox); run as root to install them" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "setup-host: adding the arm64 architecture (multiarch) for the aarch64 image" >&2
    dpkg --add-architecture arm64
fi
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-host: installing ${missing[*]}" >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! arm_busybox_ok; then
    echo "setup-host: unpacking busybox-static:arm64 into $arm_busybox_dir" >&2
    dl=$(mktemp -d)
    trap 'rm -rf "$dl"' EXIT
    (cd "$dl" && chmod 0777 . && apt-get download -qq busybox-static:arm64)
    rm -rf "$arm_busybox_dir"
    mkdir -p "$arm_busybox_dir"
    dpkg-deb -x "$dl"/busybox-static_*_arm64.deb "$arm_busybox_dir"
    arm_busybox_ok || { echo "setup-host: ERROR: no bin/busybox in busybox-static:arm64" >&2; exit 1; }
fi
echo "setup-host: done" >&2
# Kamailio is only a benchmark peer run inside a guest: never a host service
# (Debian enables and starts it on install).
if command -v systemctl >/dev/null && systemctl list-unit-files kamailio.service >/dev/null 2>&1; then
    systemctl disable --now kamailio.service >/dev/null 2>&1 || true
fi
