# shellcheck shell=bash
# Sourced by board/*.sh: what each board target needs to build without Docker and how
# qemu-user runs it. `target_info TRIPLE` sets:
#   METHOD  gcc: stable Rust with a prebuilt std from rustup, Debian's gcc as C compiler
#                and linker (ring has C and assembly);
#           zig: nightly Rust building std from source (-Z build-std) and zig as C compiler
#                and linker (through cargo-zigbuild).
#   CC_BIN  the C compiler for METHOD=gcc
#   LINKER  the linker for METHOD=gcc (empty: rustc's default, which links musl statically
#           with its own self-contained start files; musl-gcc as linker would produce a
#           dynamically linked PIE that crashes)
#   APT     Debian packages for METHOD=gcc
#   RUSTFLAGS_EXTRA  more rustc flags for the target
#   QEMU    command that runs a binary of the target under emulation, with a real CPU model
#           (qemu's default CPU accepts every instruction and would hide a wrong -march)
#   BOARDS  what runs it
#
# Why zig for the 32-bit ARM and MIPS targets:
# - OpenWrt's MIPS routers are soft-float; Debian has no soft-float MIPS C library, so its
#   gcc cannot compile ring for them. zig ships musl and compiler-rt for every target.
# - Debian's armhf gcc and libgcc are ARMv7 + Thumb-2; a Pi Zero/1 (ARMv6) would die with
#   SIGILL on them. zig builds compiler-rt for the exact CPU.
# - MIPS musl targets are tier 3 (no prebuilt std at all), and rustup here has no prebuilt
#   std for the two ARM musl targets either, so std is built from source for all four.

# MIPS: rustix (under polling/async-io, i.e. every smol timer) makes its own system calls
# on ARM and x86, but goes through the libc crate on MIPS (inline assembly is unstable
# there, and big-endian MIPS is not supported at all). On musl targets its libc path hands
# timerfd_settime a 64-bit-time itimerspec while the libc crate binds musl's 32-bit-time
# symbol: the timer is armed with garbage and never fires, so the group commit never
# completes and no roster change is acknowledged. Found by the smoke test under qemu-mips
# and qemu-mipsel; a C program making the same call works there, so it is not the
# emulator. `fix_y2038` is rustix's own cfg for 32-bit targets whose libc has 32-bit
# time_t (it is set for glibc, not for musl): rustix then converts to the 32-bit struct.
# (`--cfg libc_unstable_musl_v1_2` instead fixes little-endian MIPS only.)
MIPS_RUSTFLAGS="--cfg fix_y2038"

target_info() {
    METHOD= CC_BIN= LINKER= APT= QEMU= BOARDS= RUSTFLAGS_EXTRA=
    case "$1" in
        aarch64-unknown-linux-musl)
            METHOD=gcc
            CC_BIN=aarch64-linux-gnu-gcc
            LINKER=aarch64-linux-gnu-gcc
            # Without libc6-dev-arm64-cross, ring fails on a missing bits/libc-header-start.h.
            APT="gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
            QEMU="qemu-aarch64-static -cpu cortex-a53"
            BOARDS="Raspberry Pi 3/4/5 with a 64-bit OS, ARMv8 routers (MT7622, MT7981/7986, IPQ807x, BCM4908)"
            ;;
        x86_64-unknown-linux-musl)
            METHOD=gcc
            CC_BIN=musl-gcc
            APT="musl-tools"
            QEMU=""
            BOARDS="x86 OpenWrt, mini PCs"
            ;;
        armv7-unknown-linux-musleabihf)
            METHOD=zig
            QEMU="qemu-arm-static -cpu cortex-a7"
            BOARDS="Raspberry Pi 2/3 with a 32-bit OS, ARMv7 OpenWrt routers (IPQ40xx, MT7623, mvebu)"
            ;;
        arm-unknown-linux-musleabihf)
            METHOD=zig
            QEMU="qemu-arm-static -cpu arm1176"
            BOARDS="Raspberry Pi Zero / Zero W / 1 (ARMv6)"
            ;;
        mipsel-unknown-linux-musl)
            METHOD=zig
            RUSTFLAGS_EXTRA=$MIPS_RUSTFLAGS
            QEMU="qemu-mipsel-static -cpu 24Kc"
            BOARDS="little-endian MIPS OpenWrt routers (ramips: MT7621, MT7628/MT7688)"
            ;;
        mips-unknown-linux-musl)
            METHOD=zig
            RUSTFLAGS_EXTRA=$MIPS_RUSTFLAGS
            QEMU="qemu-mips-static -cpu 24Kc"
            BOARDS="big-endian MIPS OpenWrt routers (ath79: QCA9531/9563, AR934x)"
            ;;
        *)
            return 1
            ;;
    esac
}

ALL_TARGETS="aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf arm-unknown-linux-musleabihf mipsel-unknown-linux-musl mips-unknown-linux-musl x86_64-unknown-linux-musl"

# Pinned so that a build today and a build next month use the same linker.
ZIGBUILD_VERSION=0.24.0
ZIG_VERSION=0.17.1

# Where install-deps.sh keeps the zig venv (outside the repo: it is 300 MB).
XMPPD_CROSS_HOME=${XMPPD_CROSS_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/xmppd-cross}
ZIG_VENV=$XMPPD_CROSS_HOME/zig-venv

# The nightly toolchain for build-std (override to pin a date: XMPPD_NIGHTLY=nightly-2026-05-19).
XMPPD_NIGHTLY=${XMPPD_NIGHTLY:-nightly}

# `aarch64-unknown-linux-musl` -> `AARCH64_UNKNOWN_LINUX_MUSL`, as in cargo's
# CARGO_TARGET_<triple>_* variables.
target_env_name() {
    echo "$1" | tr 'a-z.-' 'A-Z__'
}
