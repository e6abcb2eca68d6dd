#!/bin/bash
# Build the Kamailio BENCHMARK variant of the dev image. Never the product
# image and never committed: the output lives in build/ (gitignored).
#
# Like build-keepalived-image.sh, it takes the dev image's initramfs
# (tests/image/build-image.sh) unchanged and appends a second cpio archive
# (the kernel unpacks concatenated archives in order, later files replacing
# earlier ones) holding:
#   - Debian's Kamailio 5.6 (/usr/sbin/kamailio, /usr/sbin/kamcmd, package
#     kamailio) with the modules the config loads and every shared library
#     `ldd` names, plus the dynamic loader;
#   - /etc/kamailio/kamailio.cfg (from kamailio/kamailio.cfg.in) and
#     dispatcher.list generated from the lab addresses: a stateless proxy on
#     the VIP 203.0.113.10:5060, dispatcher set 1 = the lab's servers;
#   - an inittab running Kamailio instead of `appliance daemon` (the
#     appliance binary stays only for `appliance net apply`; no IPVS service
#     is programmed, so the VIP's packets reach Kamailio's socket).
#
# usage: build-kamailio-image.sh     env: OUT_DIR (build/), SKIP_DEV_BUILD=1
#        (reuse an existing build/initramfs.cpio), SERVERS (lab server IPs)
# Prints the kernel and initramfs paths (like build-image.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT_DIR:-$root/build}
vip=203.0.113.10
lan=198.51.100.1
servers=${SERVERS:-"198.51.100.11 198.51.100.12 198.51.100.13"}
mods=/usr/lib/x86_64-linux-gnu/kamailio/modules
modules="tm sl maxfwd pv kex corex ctl textops siputils dispatcher"

log() { echo "build-kamailio-image: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for bin in /usr/sbin/kamailio /usr/sbin/kamcmd; do
    [ -x "$bin" ] || die "$bin missing: apt-get install kamailio (tests/setup-host.sh)"
done
kver=$(/usr/sbin/kamailio -v 2>&1 | head -1 || true)
case $kver in
    *"kamailio 5."*) ;;
    *) die "expected Debian's Kamailio 5.x, found: $kver" ;;
esac

if [ "${SKIP_DEV_BUILD:-0}" != 1 ] || [ ! -s "$out/initramfs.cpio" ]; then
    "$root/tests/image/build-image.sh" >/dev/null
fi
dev=$out/initramfs.cpio
[ -s "$dev" ] || die "$dev missing (build-image.sh with INITRAMFS_COMPRESS=none)"
[ -s "$out/bzImage" ] || die "$out/bzImage missing"

vout=$out/kamailio
staging=$vout/rootfs
rm -rf "$staging"
mkdir -p "$staging"/{etc/kamailio,etc/init.d,usr/sbin,lib64,lib/x86_64-linux-gnu,run/kamailio,var/run/kamailio} \
    "$staging$mods"

install -m 0755 /usr/sbin/kamailio "$staging/usr/sbin/kamailio"
install -m 0755 /usr/sbin/kamcmd "$staging/usr/sbin/kamcmd"
objs=(/usr/sbin/kamailio /usr/sbin/kamcmd)
for m in $modules; do
    [ -f "$mods/$m.so" ] || die "module $mods/$m.so missing"
    install -m 0644 "$mods/$m.so" "$staging$mods/$m.so"
    objs+=("$mods/$m.so")
done
# Libraries at the paths ldd resolves them to (Debian's ld.so searches
# /lib/x86_64-linux-gnu by default; Kamailio's own libraries come by RUNPATH).
for o in "${objs[@]}"; do
    if ldd "$o" | grep -q 'not found'; then
        die "$o: missing libraries: $(ldd "$o" | grep 'not found' | tr '\n' ' ')"
    fi
    ldd "$o" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}' | while read -r lib; do
        case $lib in
            */ld-linux-x86-64.so.2) cp -L "$lib" "$staging/lib64/$(basename "$lib")" ;;
            /usr/lib/x86_64-linux-gnu/kamailio/*)
                mkdir -p "$staging$(dirname "$lib")"
                cp -L "$lib" "$staging$lib" ;;
            *) cp -L "$lib" "$staging/lib/x86_64-linux-gnu/$(basename "$lib")" ;;
        esac
    done
done
[ -e "$staging/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$staging/lib64/"

sed -e "s/@VIP@/$vip/g; s/@LAN@/$lan/g; s|@MODULES@|$mods/|g" "$here/kamailio/kamailio.cfg.in" \
    >"$staging/etc/kamailio/kamailio.cfg"
{
    echo "# setid destination flags priority (generated from the lab's servers)"
    for s in $servers; do echo "1 sip:$s:5060 0 0"; done
} >"$staging/etc/kamailio/dispatcher.list"
install -m 0644 "$here/kamailio/inittab" "$staging/etc/inittab"
install -m 0755 "$here/kamailio/bench-net" "$staging/etc/init.d/bench-net"

# Syntax check with the same binary on a copy whose addresses exist here
# (-c parses the config and loads the modules; it does not start).
chk=$vout/check
mkdir -p "$chk"
sed -e "s/@VIP@/127.0.0.1/g; s/@LAN@/127.0.0.1/g; s|@MODULES@|$mods/|g" \
    -e "s|/etc/kamailio/dispatcher.list|$staging/etc/kamailio/dispatcher.list|" \
    -e "s|unix:/var/run/kamailio/kamailio_ctl|unix:$chk/ctl|" "$here/kamailio/kamailio.cfg.in" \
    | awk '!(/^listen=/ && seen++)' >"$chk/kamailio.cfg"
if ! /usr/sbin/kamailio -c -f "$chk/kamailio.cfg" >"$vout/config-test.log" 2>&1; then
    die "kamailio rejects the generated config: $(tail -5 "$vout/config-test.log")"
fi

extra=$vout/extra.cpio
(
    cd "$staging"
    find . -mindepth 1 | LC_ALL=C sort | sed 's|^\./||' \
        | cpio --quiet -o -H newc -R 0:0 --reproducible
) >"$extra"
img=$vout/initramfs.cpio
cat "$dev" "$extra" >"$img"
log "kamailio: $kver"
log "initramfs:  $img ($(stat -c %s "$img") bytes; dev image $(stat -c %s "$dev"))"
echo "$out/bzImage"
echo "$img"
