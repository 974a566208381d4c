#!/usr/bin/env bash
# The benchmark in one command: builds xmppd (release) and the load generator, installs Prosody
# and ejabberd from Debian's packages if missing, prepares all three in a temporary work
# directory (bench/peers.sh), runs every scenario against each server interleaved, and writes
# BENCHMARKS.md and bench/benchmarks.svg. Extra arguments go to `xmppd-bench suite`
# (see `xmppd-bench suite --help`), e.g. `bench/run.sh --reps 5 --servers xmppd,prosody`.
#
# Environment: BENCH_WORK=DIR reuses a work directory (accounts are created only once),
# BENCH_KEEP=1 keeps it afterwards.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

echo "run.sh: building xmppd (release) and xmppd-bench (profile generator)" >&2
cargo build --release --bin xmppd
cargo build --profile generator -p xmppd-bench
export XMPPD_BIN="$CARGO_TARGET_DIR/release/xmppd"

bench/peers.sh install
WORK="${BENCH_WORK:-$(mktemp -d /tmp/xmppd-bench.XXXXXX)}"
cleanup() {
    bench/peers.sh cleanup "$WORK" || true
    if [ -z "${BENCH_KEEP:-}" ] && [ -z "${BENCH_WORK:-}" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
BENCH_USERS="${BENCH_USERS:-201}" bench/peers.sh prepare "$WORK"

"$CARGO_TARGET_DIR/generator/xmppd-bench" suite --work "$WORK" \
    --command "bench/run.sh${*:+ $*}" "$@"
