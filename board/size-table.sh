#!/usr/bin/env bash
# Builds every board target (board/build.sh; quick when the target dir is warm) and prints
# the size table of board/README.md as Markdown. Extra arguments go to every build, e.g.
# --no-default-features.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=board/targets.sh
. "$here/targets.sh"
echo "| target | boards | stripped size | runs under |"
echo "|---|---|---|---|"
for t in $ALL_TARGETS; do
    out=$("$here/build.sh" "$t" "$@" 2>/dev/null | tail -n 1)
    size=${out##* }
    target_info "$t"
    mib=$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }')
    printf '| `%s` | %s | %s bytes (%s MiB) | %s |\n' "$t" "$BOARDS" "$size" "$mib" "${QEMU:-native}"
done
