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
)

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

if [ ${#missing[@]} -eq 0 ]; then
    [ "${1:-}" = --check ] && echo "setup-host: all ${#packages[@]} packages installed"
    exit 0
fi
if [ "${1:-}" = --check ]; then
    echo "setup-host: missing: ${missing[*]}"
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "setup-host: ERROR: missing ${missing[*]}; run as root to install them" >&2
    exit 1
fi

echo "setup-host: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup-host: done" >&2
# Kamailio is only a benchmark peer run inside a guest: never a host service
# (Debian enables and starts it on install).
if command -v systemctl >/dev/null && systemctl list-unit-files kamailio.service >/dev/null 2>&1; then
    systemctl disable --now kamailio.service >/dev/null 2>&1 || true
fi
