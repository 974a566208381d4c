#!/usr/bin/env bash
# Builds a static, size-optimised xmppd for one board, without Docker (the recipe CI uses;
# with Docker or Podman, `cross` and Cross.toml do the same job).
#
#   board/build.sh TARGET [cargo build arguments...]
#
#   board/build.sh aarch64-unknown-linux-musl                     # Pi 3/4/5 64-bit
#   board/build.sh mipsel-unknown-linux-musl --no-default-features  # MT7621 router, own certificate
#
# Targets: see board/targets.sh or `board/build.sh --list`. Installs what it needs first
# (board/install-deps.sh; set XMPPD_NO_INSTALL=1 to skip). Prints the binary's path and size
# on the last line of stdout. The release profile in Cargo.toml (opt-level "z", fat LTO, one
# codegen unit, panic = "abort", strip) applies to every target.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=board/targets.sh
. "$here/targets.sh"

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
if [ "$1" = "--list" ]; then
    for t in $ALL_TARGETS; do
        target_info "$t"
        printf '%-32s %-4s %s\n' "$t" "$METHOD" "$BOARDS"
    done
    exit 0
fi
target=$1
shift
if ! target_info "$target"; then
    echo "build.sh: unknown target $target (known: $ALL_TARGETS)" >&2
    exit 2
fi

if [ -z "${XMPPD_NO_INSTALL:-}" ]; then
    "$here/install-deps.sh" "$target"
fi

cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
env_name=$(target_env_name "$target")
cc_var="CC_${target//-/_}"

case $METHOD in
    gcc)
        if [ -n "$LINKER" ]; then
            export "CARGO_TARGET_${env_name}_LINKER=$LINKER"
        fi
        export "$cc_var=$CC_BIN"
        cargo build --release --target "$target" "$@" >&2
        ;;
    zig)
        # build-std leaves rustc's self-contained musl start files out of the sysroot: let
        # zig supply them (link-self-contained=no). MIPS musl targets link dynamically by
        # default (OpenWrt's musl is shared): +crt-static makes the binary static like the
        # others. linker_messages: zig's harmless note about the missing prebuilt-std dir.
        # RUSTFLAGS_EXTRA: see targets.sh (MIPS: musl's 64-bit time_t, or timers hang).
        export "CARGO_TARGET_${env_name}_RUSTFLAGS=-C target-feature=+crt-static -C link-self-contained=no -A linker_messages${RUSTFLAGS_EXTRA:+ $RUSTFLAGS_EXTRA}"
        PATH="$ZIG_VENV/bin:$PATH" RUSTUP_TOOLCHAIN="$XMPPD_NIGHTLY" \
            cargo-zigbuild build --release --target "$target" \
            -Z build-std=std,panic_abort "$@" >&2
        ;;
esac

bin=$target_dir/$target/release/xmppd
if [ ! -x "$bin" ]; then
    echo "build.sh: $bin was not produced" >&2
    exit 1
fi
# A board has whatever C library its firmware has, or none we know of: refuse anything but
# a static binary (a dynamically linked musl PIE runs on this PC and crashes elsewhere).
case $(file -b "$bin") in
    *"statically linked"* | *"static-pie linked"*) ;;
    *)
        echo "build.sh: $bin is not statically linked: $(file -b "$bin")" >&2
        exit 1
        ;;
esac
echo "$bin $(stat -c %s "$bin")"
