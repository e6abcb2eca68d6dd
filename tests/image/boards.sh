# shellcheck shell=bash disable=SC2034
# Per-board facts of the dev image, sourced by build-kernel.sh, build-image.sh and
# run-qemu.sh (the one place that knows them). `load_board NAME` sets:
#   kernel_arch cross_compile kernel_target kernel_image   kernel build
#   rust_target rust_toolchain                            appliance binary
#   busybox_pkg                                           BusyBox (Debian busybox-static)
#   qemu qemu_pkg qemu_machine[]                          QEMU
#   console_tty test_tty                                  guest ttys (inittab, console=)
#   test_serial                                           how the test shell port is wired:
#                                                         "serial" (2nd UART) or "virtio" (hvc0)
# The x86_64 board uses the host's tools (rustup toolchain, gcc, /bin/busybox); the
# aarch64 board is cross-built with Debian's gcc-aarch64-linux-gnu, rustc-web +
# libstd-rust-web-dev:arm64 and busybox-static:arm64 unpacked (tests/setup-host.sh).

# Where setup-host.sh unpacks busybox-static:arm64 (it cannot be installed next to
# the host's amd64 busybox-static: both own /bin/busybox).
boards_cache=${APPLIANCE_CACHE:-/var/cache/sip-lb-appliance}
busybox_arm64=$boards_cache/busybox-arm64/bin/busybox

load_board() {
    case "$1" in
        qemu-x86_64)
            kernel_arch=x86_64 cross_compile="" kernel_target=bzImage
            kernel_image=arch/x86/boot/bzImage
            rust_target=x86_64-unknown-linux-gnu rust_toolchain=host
            busybox=/bin/busybox busybox_pkg=busybox-static
            qemu=qemu-system-x86_64 qemu_pkg=qemu-system-x86
            qemu_machine=(-machine pc -accel tcg -cpu max)
            console_tty=ttyS0 test_tty=ttyS1 test_serial=serial
            ;;
        qemu-aarch64-virt)
            kernel_arch=arm64 cross_compile=aarch64-linux-gnu- kernel_target=Image
            kernel_image=arch/arm64/boot/Image
            rust_target=aarch64-unknown-linux-gnu rust_toolchain=debian
            busybox=$busybox_arm64 busybox_pkg=busybox-static:arm64
            qemu=qemu-system-aarch64 qemu_pkg=qemu-system-arm
            qemu_machine=(-machine virt -accel tcg -cpu cortex-a53)
            # virt has a single PL011: the test shell is a virtio console.
            console_tty=ttyAMA0 test_tty=hvc0 test_serial=virtio
            ;;
        *)
            echo "unknown BOARD '$1' (known: qemu-x86_64, qemu-aarch64-virt)" >&2
            return 1
            ;;
    esac
}
