#!/usr/bin/env bash
# Fails when a board binary is over its size budget (issue: 3 MiB stripped for
# aarch64-unknown-linux-musl with every feature enabled). The release profile strips, so the
# file size is the stripped size; a binary that still has symbols is refused rather than
# measured.
#
#   board/size-check.sh BINARY [MAX_BYTES]     (default 3145728 = 3 MiB)
set -euo pipefail
bin=${1:?usage: board/size-check.sh BINARY [MAX_BYTES]}
max=${2:-3145728}
if ! [[ $max =~ ^[0-9]+$ ]]; then
    echo "size-check: MAX_BYTES must be a number of bytes, got $max" >&2
    exit 2
fi
if [ ! -f "$bin" ]; then
    echo "size-check: $bin does not exist" >&2
    exit 2
fi
desc=$(file -b "$bin")
case $desc in
    *"not stripped"*)
        echo "size-check: $bin is not stripped ($desc); build with the release profile" >&2
        exit 1
        ;;
esac
size=$(stat -c %s "$bin")
kib=$(( (size + 1023) / 1024 ))
if [ "$size" -gt "$max" ]; then
    echo "size-check: FAIL $bin is $size bytes ($kib KiB), over the budget of $max bytes" >&2
    exit 1
fi
echo "size-check: ok $bin is $size bytes ($kib KiB), budget $max bytes ($(( (max - size) / 1024 )) KiB to spare)"
