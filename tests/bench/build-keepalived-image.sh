#!/bin/bash
# Build the keepalived BENCHMARK variant of the dev image. Never the
# product image and never committed: the output lives in build/ (gitignored).
#
# It takes the dev image's initramfs (tests/image/build-image.sh) unchanged and
# appends a second cpio archive (the kernel unpacks concatenated archives in
# order, later files replacing earlier ones) holding:
#   - Debian's keepalived 2.2 (/usr/sbin/keepalived, installed on the host by
#     apt) and sipp (/usr/bin/sipp, package sip-tester) with every shared
#     library `ldd` names, plus the dynamic loader;
#   - /etc/keepalived/script.sh + options.xml: the seed's MISC_CHECK (one sipp
#     OPTIONS, -m 1, exit code = health), each real server its own local port;
#   - /etc/keepalived/keepalived{,-dl1,-dl120}.conf generated from the lab
#     addresses (VIP 203.0.113.10:5060 UDP, rr, NAT, persistence_engine sip),
#     delay_loop 1 (active at boot) and the seed's 120;
#   - an inittab running keepalived instead of `appliance daemon` (the
#     appliance binary stays only for `appliance net apply`).
#
# Pair variant (PAIR_DIR set; tests/src/bin/ha_bench.rs --variant keepalived):
# keepalived runs VRRP as well (no --check), one image for both boxes; the
# kernel command line's `kabench.box=a|b` picks the box's files:
#   - /etc/appliance/pair-X.toml: PAIR_DIR/X.toml (the lab pair's per-box
#     config with [ha] on, so `appliance net apply` leaves the VIP and the
#     LAN gateway to keepalived);
#   - /etc/keepalived/pair-X.conf: a vrrp_sync_group of a WAN instance (vrid
#     51, the VIP) and a LAN instance (vrid 52, the servers' gateway), A
#     priority 150 / B 100, both BACKUP + nopreempt (like the appliance pair's
#     preempt = false), advert_int PAIR_ADVERT (seconds; < 1 uses VRRPv3),
#     `lvs_sync_daemon eth1 VI_LAN` (2.x syntax, sync id 51), and the
#     virtual_server with `ops`, persistence_granularity 0.0.0.0 and each
#     MISC_CHECK sent from the box's own LAN address.
#
# usage: build-keepalived-image.sh     env: OUT_DIR (build/), SKIP_DEV_BUILD=1
#        (reuse an existing build/initramfs.cpio), SERVERS (lab server IPs),
#        PAIR_DIR and PAIR_ADVERT (pair variant)
# Prints the kernel and initramfs paths (like build-image.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT_DIR:-$root/build}
vip=203.0.113.10
vport=5060
lan=198.51.100.1
servers=${SERVERS:-"198.51.100.11 198.51.100.12 198.51.100.13"}

log() { echo "build-keepalived-image: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for bin in /usr/sbin/keepalived /usr/bin/sipp; do
    [ -x "$bin" ] || die "$bin missing: apt-get install keepalived sip-tester (tests/setup-host.sh)"
done
kver=$(/usr/sbin/keepalived --version 2>&1 || true)
kver=${kver%%$'\n'*}
case $kver in
    *"v2.2."*) ;;
    *) die "expected Debian's keepalived 2.2, found: $kver" ;;
esac

if [ "${SKIP_DEV_BUILD:-0}" != 1 ] || [ ! -s "$out/initramfs.cpio" ]; then
    "$root/tests/image/build-image.sh" >/dev/null
fi
dev=$out/initramfs.cpio
[ -s "$dev" ] || die "$dev missing (build-image.sh with INITRAMFS_COMPRESS=none)"
[ -s "$out/bzImage" ] || die "$out/bzImage missing"

vout=$out/keepalived${PAIR_DIR:+-pair}
staging=$vout/rootfs
rm -rf "$staging"
mkdir -p "$staging"/{etc/keepalived,etc/init.d,usr/sbin,usr/bin,lib64,lib/x86_64-linux-gnu,run/keepalived}

# Binaries and their libraries, at the paths ldd resolves them to (Debian's
# ld.so searches /lib/x86_64-linux-gnu by default; no ld.so.cache needed).
install -m 0755 /usr/sbin/keepalived "$staging/usr/sbin/keepalived"
install -m 0755 /usr/bin/sipp "$staging/usr/bin/sipp"
for bin in /usr/sbin/keepalived /usr/bin/sipp; do
    if ldd "$bin" | grep -q 'not found'; then
        die "$bin: missing libraries: $(ldd "$bin" | grep 'not found' | tr '\n' ' ')"
    fi
    ldd "$bin" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}' | while read -r lib; do
        base=$(basename "$lib")
        case $lib in
            */ld-linux-x86-64.so.2) cp -L "$lib" "$staging/lib64/$base" ;;
            *) cp -L "$lib" "$staging/lib/x86_64-linux-gnu/$base" ;;
        esac
    done
done
[ -e "$staging/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$staging/lib64/"

install -m 0755 "$here/keepalived/script.sh" "$staging/etc/keepalived/script.sh"
install -m 0644 "$here/keepalived/options.xml" "$staging/etc/keepalived/options.xml"
install -m 0644 "$here/keepalived/inittab" "$staging/etc/inittab"
install -m 0755 "$here/keepalived/bench-net" "$staging/etc/init.d/bench-net"

# keepalived.conf from the lab addresses: the seed's virtual_server with
# `persistence_engine sip` (Debian's 2.2 keyword; the seed's patched build
# said `pe SIP`), one MISC_CHECK per real server with its own local port
# (5080, 5100, ... like the seed's 5080/5100). misc_timeout 3: above the
# script's own 1 s bound, so keepalived never kills a check that would pass.
gen_conf() { # delay_loop [pair: box-letter priority own-lan-address]
    local dl=$1 box=${2:-} prio=${3:-} src=${4:-$lan} port=5080 s
    cat <<CONF
! keepalived BENCHMARK variant: the seed's recipe on the lab.
! Generated by tests/bench/build-keepalived-image.sh; delay_loop $dl.
global_defs {
    router_id sip-lb-bench${box}
CONF
    if [ -n "$box" ]; then
        local ver=2
        case $PAIR_ADVERT in 0.*) ver=3 ;; esac
        cat <<CONF
    lvs_sync_daemon eth1 VI_LAN id 51
    vrrp_version $ver
}

vrrp_sync_group SIPLB {
    group {
        VI_WAN
        VI_LAN
    }
}

vrrp_instance VI_WAN {
    state BACKUP
    nopreempt
    interface eth0
    virtual_router_id 51
    priority $prio
    advert_int $PAIR_ADVERT
    virtual_ipaddress {
        $vip/24 dev eth0
    }
}

vrrp_instance VI_LAN {
    state BACKUP
    nopreempt
    interface eth1
    virtual_router_id 52
    priority $prio
    advert_int $PAIR_ADVERT
    virtual_ipaddress {
        $lan/24 dev eth1
    }
}
CONF
    else
        echo "}"
    fi
    cat <<CONF

virtual_server $vip $vport {
    delay_loop $dl
    lb_algo rr
    lb_kind NAT
    persistence_timeout 60
    persistence_engine sip
    protocol UDP
CONF
    if [ -n "$box" ]; then
        # The appliance's defaults: one-packet scheduling, granularity 0.0.0.0.
        echo "    ops"
        echo "    persistence_granularity 0.0.0.0"
    fi
    for s in $servers; do
        cat <<CONF

    real_server $s $vport {
        weight 1
        MISC_CHECK {
            misc_path "/etc/keepalived/script.sh $s $port $src"
            misc_timeout 3
        }
    }
CONF
        port=$((port + 20))
    done
    echo "}"
}
gen_conf 1 >"$staging/etc/keepalived/keepalived-dl1.conf"
gen_conf 120 >"$staging/etc/keepalived/keepalived-dl120.conf"
cp "$staging/etc/keepalived/keepalived-dl1.conf" "$staging/etc/keepalived/keepalived.conf"
if [ -n "${PAIR_DIR:-}" ]; then
    : "${PAIR_ADVERT:?PAIR_ADVERT (advert_int, seconds) is needed with PAIR_DIR}"
    mkdir -p "$staging/etc/appliance"
    for b in a b; do
        [ -s "$PAIR_DIR/$b.toml" ] || die "$PAIR_DIR/$b.toml missing"
        install -m 0644 "$PAIR_DIR/$b.toml" "$staging/etc/appliance/pair-$b.toml"
    done
    gen_conf 1 a 150 198.51.100.2 >"$staging/etc/keepalived/pair-a.conf"
    gen_conf 1 b 100 198.51.100.3 >"$staging/etc/keepalived/pair-b.conf"
    # VRRP too: the health checker-only flag goes.
    sed -i 's/ --check / /' "$staging/etc/inittab"
    grep -q -- ' --check ' "$staging/etc/inittab" && die "inittab still runs the checker only"
fi

# Syntax check with the same binary (config test mode, no daemon started).
for conf in "$staging"/etc/keepalived/keepalived.conf "$staging"/etc/keepalived/pair-*.conf; do
    [ -e "$conf" ] || continue
    # The host may lack eth0/eth1: test a copy on one of its own non-loopback
    # interfaces (only the names change; keepalived refuses lo for VRRP).
    ifc=$(ip -o link show | awk -F': ' '$2 != "lo" && /MULTICAST/ {sub(/@.*/, "", $2); print $2; exit}')
    sed "s/\beth[01]\b/${ifc:-eth0}/g" "$conf" >"$vout/config-test.conf"
    if ! /usr/sbin/keepalived --config-test --use-file "$vout/config-test.conf" >"$vout/config-test.log" 2>&1; then
        die "keepalived rejects the generated $(basename "$conf"): $(cat "$vout/config-test.log")"
    fi
done

extra=$vout/extra.cpio
(
    cd "$staging"
    find . -mindepth 1 | LC_ALL=C sort | sed 's|^\./||' \
        | cpio --quiet -o -H newc -R 0:0 --reproducible
) >"$extra"
img=$vout/initramfs.cpio
cat "$dev" "$extra" >"$img"
log "keepalived: $kver"
log "initramfs:  $img ($(stat -c %s "$img") bytes; dev image $(stat -c %s "$dev"))"
echo "$out/bzImage"
echo "$img"
