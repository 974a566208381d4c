#!/usr/bin/env bash
# Runs a board binary on this PC under qemu-user with the board's real CPU model, e.g. to
# try a build before copying it to the router:
#
#   board/qemu-run.sh mips-unknown-linux-musl serve --data-dir /tmp/xmppd-mips
#   board/qemu-run.sh armv7-unknown-linux-musleabihf user list --data-dir /tmp/xmppd-mips
#
# The binary is $CARGO_TARGET_DIR/TARGET/release/xmppd (build it with board/build.sh), or
# the file named by XMPPD_BIN.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=board/targets.sh
. "$here/targets.sh"
target=${1:?usage: board/qemu-run.sh TARGET [xmppd arguments...]}
shift
if ! target_info "$target"; then
    echo "qemu-run: unknown target $target (known: $ALL_TARGETS)" >&2
    exit 2
fi
bin=${XMPPD_BIN:-${CARGO_TARGET_DIR:-$here/../target}/$target/release/xmppd}
read -r -a qemu <<<"$QEMU"
exec "${qemu[@]}" "$bin" "$@"
