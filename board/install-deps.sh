#!/usr/bin/env bash
# Installs what board/build.sh needs to build the given targets and what qemu-user needs to
# run them, on Debian / Ubuntu / Raspberry Pi OS. Idempotent: whatever is present is left
# alone, so a second run takes a second or two.
#
#   board/install-deps.sh TARGET...        (no TARGET: every board target)
#
# Installs: Debian packages (gcc cross compilers, musl-tools, qemu-user-static, python3-venv),
# rustup targets (stable), the nightly toolchain with rust-src (for build-std), and
# cargo-zigbuild + zig from PyPI in a venv under $XMPPD_CROSS_HOME (default
# ~/.cache/xmppd-cross).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=board/targets.sh
. "$here/targets.sh"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    read -r -a targets <<<"$ALL_TARGETS"
fi

say() { echo "install-deps: $*" >&2; }

apt_wanted=(qemu-user-static file)
need_zig=
need_stable=()
for t in "${targets[@]}"; do
    if ! target_info "$t"; then
        say "unknown target $t (known: $ALL_TARGETS)"
        exit 2
    fi
    case $METHOD in
        gcc)
            read -r -a pkgs <<<"$APT"
            apt_wanted+=("${pkgs[@]}")
            need_stable+=("$t")
            ;;
        zig) need_zig=1 ;;
    esac
done
if [ -n "$need_zig" ]; then
    apt_wanted+=(python3-venv)
fi

# --- Debian packages -------------------------------------------------------------------
missing=()
for p in "${apt_wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    say "apt-get install ${missing[*]}"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- Rust --------------------------------------------------------------------------------
if ! command -v rustup >/dev/null; then
    say "rustup is needed (https://rustup.rs); cargo alone cannot add targets"
    exit 1
fi
installed_targets=$(rustup target list --installed)
for t in "${need_stable[@]}"; do
    if ! grep -qx "$t" <<<"$installed_targets"; then
        say "rustup target add $t"
        rustup target add "$t"
    fi
done

if [ -n "$need_zig" ]; then
    if ! rustup run "$XMPPD_NIGHTLY" rustc --version >/dev/null 2>&1; then
        say "rustup toolchain install $XMPPD_NIGHTLY"
        rustup toolchain install "$XMPPD_NIGHTLY" --profile minimal --component rust-src
    fi
    if ! rustup component list --installed --toolchain "$XMPPD_NIGHTLY" | grep -q '^rust-src'; then
        say "rustup component add rust-src --toolchain $XMPPD_NIGHTLY"
        rustup component add rust-src --toolchain "$XMPPD_NIGHTLY"
    fi

    # --- cargo-zigbuild and zig, both from PyPI (prebuilt; nothing to compile) ----------
    want="cargo-zigbuild $ZIGBUILD_VERSION"
    have=$("$ZIG_VENV/bin/cargo-zigbuild" --version 2>/dev/null || true)
    zig_have=$("$ZIG_VENV/bin/python" -m ziglang version 2>/dev/null || true)
    if [ "$have" != "$want" ] || [ "$zig_have" != "$ZIG_VERSION" ]; then
        say "pip install cargo-zigbuild==$ZIGBUILD_VERSION ziglang==$ZIG_VERSION into $ZIG_VENV"
        mkdir -p "$XMPPD_CROSS_HOME"
        [ -x "$ZIG_VENV/bin/pip" ] || python3 -m venv "$ZIG_VENV"
        "$ZIG_VENV/bin/pip" install -q --disable-pip-version-check \
            "cargo-zigbuild==$ZIGBUILD_VERSION" "ziglang==$ZIG_VERSION"
    fi
fi
