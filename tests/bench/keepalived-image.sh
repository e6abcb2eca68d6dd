#!/bin/bash
# Benchmark-only image variant (issue 12): the dev image's root filesystem plus
# Debian's keepalived 2.2 and sipp (for keepalived's MISC_CHECK, as in the
# seed) with their shared-library closures copied from this host. The host
# kernel has no IPVS, so the seed's setup can only run inside the VM; it uses
# the same kernel as the product image. Never shipped: the product image is
# built by tests/image/build-image.sh and Buildroot only.
#
# usage: keepalived-image.sh        env: OUT_DIR (build/)
# Needs: the dev image built first (tests/image/build-image.sh leaves
# $OUT_DIR/rootfs), root (mknod), packages keepalived and sip-tester.
# Prints the initramfs path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT_DIR:-$root/build}
die() { echo "keepalived-image: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (creates device nodes in the image)"
[ -d "$out/rootfs" ] || die "$out/rootfs missing: run tests/image/build-image.sh first"
for b in /usr/sbin/keepalived /usr/bin/sipp; do
    [ -x "$b" ] || die "$b missing: apt-get install keepalived sip-tester"
done

staging=$out/rootfs-keepalived
rm -rf "$staging"
cp -a "$out/rootfs" "$staging"
copy() { # file: copy with its directory, following symlinks
    mkdir -p "$staging$(dirname "$1")"
    cp -L "$1" "$staging$1"
}
for b in /usr/sbin/keepalived /usr/bin/sipp; do
    copy "$b"
    ldd "$b" | awk '/=>/ {print $3} /^[ \t]*\// {print $1}' | while read -r lib; do
        [ -n "$lib" ] && [ -e "$lib" ] && copy "$lib"
    done
done
# glibc's loader looks in /lib64 for itself and in the default paths for the rest.
mkdir -p "$staging/etc/keepalived"
[ -e "$staging/dev/console" ] || mknod -m 600 "$staging/dev/console" c 5 1
(
    cd "$staging"
    find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0
) >"$out/initramfs-keepalived.cpio"
echo "keepalived-image: $(du -h "$out/initramfs-keepalived.cpio" | cut -f1) initramfs with keepalived $(/usr/sbin/keepalived -v 2>&1 | head -1)" >&2
echo "$out/initramfs-keepalived.cpio"
