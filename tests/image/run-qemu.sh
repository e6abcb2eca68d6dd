#!/bin/bash
# Boot the dev image in QEMU: headless, TCG only (no KVM assumed), serial
# console on this terminal (Ctrl-A X quits, Ctrl-A C toggles the QEMU monitor).
# Also the single place that knows the QEMU command line: the Rust boot-test
# harness (tests/src/vm.rs) runs this script with --serial0/--serial1 sockets.
#
# usage: run-qemu.sh [options]
#   --board NAME          qemu-x86_64 (default, or $BOARD) or qemu-aarch64-virt
#                         (qemu-system-aarch64 -M virt -cpu cortex-a53; console on
#                         ttyAMA0, test shell on the virtio console hvc0)
#   --build               build the image first (tests/image/build-image.sh)
#   --kernel PATH         kernel (default build/bzImage; build/<board>/Image on aarch64)
#   --initrd PATH         initramfs (default build[/<board>]/initramfs.cpio[.gz])
#   --disk PATH           config store disk, raw; created 1 MiB of 0xFF
#                         (erased flash) if missing (default build[/<board>]/store.img)
#   --boot-disk PATH      boot the A/B boot disk (tests/image/build-disk.sh) through
#                         GRUB instead of --kernel/--initrd; the kernel command line
#                         then comes from the disk (build-disk.sh APPEND=...)
#   --extra-disk PATH     another raw virtio disk after the store (and boot) disk,
#                         read-only (e.g. a bundle for the firmware tests); repeatable
#   --wan-tap NAME        attach existing tap NAME as eth0 (WAN)
#   --lan-tap NAME        attach existing tap NAME as eth1 (LAN)
#   --wan-mac MAC / --lan-mac MAC   (defaults 52:54:00:00:00:01 / :02)
#   --netns NAME          run QEMU inside network namespace NAME (taps live there)
#   --append ARGS         extra kernel command line arguments
#   --testshell           root shell on ttyS1/hvc0 (kernel flag appliance.testshell=1)
#   --serial0 SPEC        chardev for the console (ttyS0/ttyAMA0) instead of this
#                         terminal, e.g. socket,path=/tmp/s0.sock,server=on,wait=off
#   --serial1 SPEC        chardev for the test shell port ttyS1/hvc0 (default: none)
#   --monitor SPEC        chardev for the QEMU (HMP) monitor, e.g. a socket the
#                         harness uses for `set_link wan off` (cable pulls)
#   --no-reboot           exit QEMU when the guest reboots (or the watchdog fires)
#   --timeout SECS        kill QEMU after SECS (default 3600; 0 = no bound, for
#                         callers that enforce their own, like the test harness)
#   --memory SIZE         guest RAM (default 256M)
#   --rtc-base DATE       start the guest's CMOS clock at DATE (QEMU -rtc base=,
#                         e.g. 1970-01-01T00:00:00) instead of the host's time
#   --dry-run             print the QEMU command line and exit
# Networking: no NIC at all unless taps are given. Never user-mode networking.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/image/boards.sh
. "$here/boards.sh"
board=${BOARD:-qemu-x86_64}

kernel=
initrd=
disk=
boot_disk= extra_disks=() wan_tap= lan_tap= netns= append= testshell=0 serial0= serial1= monitor= noreboot=0
wan_mac=52:54:00:00:00:01 lan_mac=52:54:00:00:00:02
timeout=3600 memory=256M dryrun=0 build_first=0 rtc_base=

die() { echo "run-qemu: ERROR: $*" >&2; exit 2; }
need() { [ $# -ge 2 ] || die "$1 needs a value"; }

while [ $# -gt 0 ]; do
    case $1 in
        --board) need "$@"; board=$2; shift 2 ;;
        --build) build_first=1; shift ;;
        --kernel) need "$@"; kernel=$2; shift 2 ;;
        --initrd) need "$@"; initrd=$2; shift 2 ;;
        --disk) need "$@"; disk=$2; shift 2 ;;
        --boot-disk) need "$@"; boot_disk=$2; shift 2 ;;
        --extra-disk) need "$@"; extra_disks+=("$2"); shift 2 ;;
        --wan-tap) need "$@"; wan_tap=$2; shift 2 ;;
        --lan-tap) need "$@"; lan_tap=$2; shift 2 ;;
        --wan-mac) need "$@"; wan_mac=$2; shift 2 ;;
        --lan-mac) need "$@"; lan_mac=$2; shift 2 ;;
        --netns) need "$@"; netns=$2; shift 2 ;;
        --append) need "$@"; append=$2; shift 2 ;;
        --testshell) testshell=1; shift ;;
        --serial0) need "$@"; serial0=$2; shift 2 ;;
        --serial1) need "$@"; serial1=$2; shift 2 ;;
        --monitor) need "$@"; monitor=$2; shift 2 ;;
        --no-reboot) noreboot=1; shift ;;
        --timeout) need "$@"; timeout=$2; shift 2 ;;
        --memory) need "$@"; memory=$2; shift 2 ;;
        --rtc-base) need "$@"; rtc_base=$2; shift 2 ;;
        --dry-run) dryrun=1; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

load_board "$board" || die "--board: unknown board"
if [ "$board" = qemu-x86_64 ]; then build=$root/build; else build=$root/build/$board; fi
[ -n "$kernel" ] || kernel=$build/$kernel_target
[ -n "$disk" ] || disk=$build/store.img
command -v "$qemu" >/dev/null \
    || die "$qemu not found: run tests/setup-host.sh (installs $qemu_pkg)"
[[ $timeout =~ ^[0-9]+$ ]] || die "--timeout must be whole seconds, not '$timeout'"
if [ "$build_first" = 1 ]; then
    BOARD=$board "$here/build-image.sh" >/dev/null || die "image build failed (see above)"
fi
if [ -z "$initrd" ]; then
    for c in "$build/initramfs.cpio" "$build/initramfs.cpio.gz"; do
        [ -r "$c" ] && { initrd=$c; break; }
    done
fi
if [ -n "$boot_disk" ]; then
    [ -r "$boot_disk" ] || die "boot disk $boot_disk missing: run tests/image/build-disk.sh"
    [ "$testshell" = 0 ] && [ -z "$append" ] \
        || die "--testshell/--append do not reach a kernel GRUB starts: build the disk with APPEND=..."
else
    [ -r "$kernel" ] || die "kernel $kernel missing: run tests/image/build-image.sh"
    [ -n "$initrd" ] && [ -r "$initrd" ] || die "initramfs missing: run tests/image/build-image.sh"
fi

if [ ! -e "$disk" ]; then
    # Fresh flash reads as all 0xFF; make the blank disk look the same.
    mkdir -p "$(dirname "$disk")"
    head -c 1048576 /dev/zero | tr '\0' '\377' >"$disk.tmp.$$"
    mv "$disk.tmp.$$" "$disk"
fi

cmdline="console=$console_tty,115200 panic=1 loglevel=4"
[ "$testshell" = 1 ] && cmdline="$cmdline appliance.testshell=1"
[ -n "$append" ] && cmdline="$cmdline $append"

args=(
    "$qemu"
    -name sip-lb-appliance
    "${qemu_machine[@]}" -m "$memory"
    -nodefaults -no-user-config -display none
    -drive "file=$disk,format=raw,if=none,id=store,cache=writeback"
    -device virtio-blk-pci,drive=store
    -device virtio-rng-pci
    -device i6300esb -action watchdog=reset
)
if [ -n "$boot_disk" ]; then
    # Second virtio disk (/dev/vdb; the store stays /dev/vda), first in the BIOS boot order.
    args+=(-drive "file=$boot_disk,format=raw,if=none,id=boot,cache=writeback"
        -device virtio-blk-pci,drive=boot,bootindex=0)
else
    args+=(-kernel "$kernel" -initrd "$initrd" -append "$cmdline")
fi
n=0
for d in ${extra_disks[@]+"${extra_disks[@]}"}; do
    args+=(-drive "file=$d,format=raw,if=none,id=extra$n,readonly=on"
        -device "virtio-blk-pci,drive=extra$n")
    n=$((n + 1))
done
if [ -n "$serial0" ]; then
    args+=(-chardev "$serial0,id=s0" -serial chardev:s0)
else
    # This terminal: Ctrl-C goes to the guest, Ctrl-A X quits QEMU.
    args+=(-chardev stdio,id=s0,mux=on,signal=off -serial chardev:s0 -mon chardev=s0)
fi
if [ -n "$serial1" ]; then
    if [ "$test_serial" = virtio ]; then
        args+=(-chardev "$serial1,id=s1" -device virtio-serial-pci -device virtconsole,chardev=s1)
    else
        args+=(-chardev "$serial1,id=s1" -serial chardev:s1)
    fi
fi
if [ -n "$monitor" ]; then
    args+=(-chardev "$monitor,id=mon" -mon chardev=mon,mode=readline)
fi
if [ -z "$wan_tap" ] && [ -z "$lan_tap" ]; then
    args+=(-nic none)
else
    # eth0 must be WAN and eth1 LAN: a LAN-only VM still gets an unplugged WAN NIC.
    if [ -n "$wan_tap" ]; then
        args+=(-netdev "tap,id=wan,ifname=$wan_tap,script=no,downscript=no")
    else
        args+=(-netdev "hubport,id=wan,hubid=0")
    fi
    args+=(-device "virtio-net-pci,netdev=wan,mac=$wan_mac")
    if [ -n "$lan_tap" ]; then
        args+=(-netdev "tap,id=lan,ifname=$lan_tap,script=no,downscript=no")
        args+=(-device "virtio-net-pci,netdev=lan,mac=$lan_mac")
    fi
fi
[ "$noreboot" = 1 ] && args+=(-no-reboot)
[ -n "$rtc_base" ] && args+=(-rtc "base=$rtc_base")

if [ -n "$netns" ]; then
    args=(ip netns exec "$netns" "${args[@]}")
fi
if [ "$timeout" != 0 ]; then
    # --foreground keeps QEMU on the terminal; -k: SIGKILL if SIGTERM is ignored.
    args=(timeout --foreground -k 5 "$timeout" "${args[@]}")
fi

if [ "$dryrun" = 1 ]; then
    printf '%q ' "${args[@]}"; echo
    exit 0
fi
exec "${args[@]}"
