#!/usr/bin/env bash
# Profiles xmppd under each benchmark scenario with perf (Debian's linux-perf): a release build
# with symbols (cargo profile "profiling"), the same config as the benchmark, one `perf record`
# per scenario attached to the server's PID, and a flat report of where its CPU time went.
#
#   bench/profile.sh WORK [OUT]    WORK from `bench/peers.sh prepare WORK xmppd`;
#                                  OUT defaults to bench/profile/ (one .txt per scenario)
#
# PERF_FREQ (default 1999) sets the sampling rate; PERF_CALLGRAPH=1 records call graphs
# (DWARF unwinding: larger files, slower).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(cd "${1:?usage: bench/profile.sh WORK [OUT]}" && pwd)"
OUT="${2:-$ROOT/bench/profile}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
command -v perf >/dev/null || { echo "perf not found: apt-get install linux-perf" >&2; exit 1; }

cd "$ROOT"
cargo build --profile profiling --bin xmppd
cargo build --profile generator -p xmppd-bench
BIN="$CARGO_TARGET_DIR/profiling/xmppd"
BENCH="$CARGO_TARGET_DIR/generator/xmppd-bench"
SPEC="$WORK/xmppd"
mkdir -p "$OUT"

"$BIN" serve --config "$SPEC/xmppd.toml" 2>>"$SPEC/profile.log" &
PID=$!
trap 'kill "$PID" 2>/dev/null || true' EXIT
"$BENCH" run --spec "$SPEC" --scenario login >/dev/null 2>&1 || sleep 1
"$BENCH" run --spec "$SPEC" --scenario login
"$BENCH" run --spec "$SPEC" --scenario setup-fanout

callgraph=()
# shellcheck disable=SC2054 # "dwarf,16384" is one argument of perf, not two elements
[ -n "${PERF_CALLGRAPH:-}" ] && callgraph=(--call-graph dwarf,16384)

# Sums the self-time percentages of `perf report --sort symbol` by area of the code.
group() {
    awk '
    {
        pct = $1; sub(/%/, "", pct); sym = $0; sub(/^ *[0-9.]+% +/, "", sym)
        if (sym ~ /^\[k\]/) area = "kernel (syscalls, TCP, scheduler)"
        else if (sym ~ /ring_core|fiat_|fe4_|fe_|x25519|curve25519|nistz256|sha512|sha256|aes_|gcm|constant_time|p256|ecdsa|bn_|LIMBS|limbs/) area = "crypto (ring: handshake, AES-GCM)"
        else if (sym ~ /rustls::/) area = "rustls (TLS state machine, records)"
        else if (sym ~ /xmlparser|xmppd::xml::|validations::next_code_point|CharIndices|from_utf8/) area = "XML framing and parsing (xmlparser, xml::framer, UTF-8)"
        else if (sym ~ /async_executor|async_io|async_channel|async_task|event_listener|polling::|smol::|futures_lite|concurrent_queue|parking::/) area = "async runtime (executor, reactor, channels)"
        else if (sym ~ /malloc|_int_free|cfree|realloc|free_perturb|tcache|alloc::alloc|__rust_alloc|__rust_dealloc|sysmalloc|unlink_chunk/) area = "heap allocation (malloc/free)"
        else if (sym ~ /__mem|memcpy|memmove|memcmp|memset|memchr|strlen/) area = "libc memcpy/memcmp/memchr"
        else if (sym ~ /Mutex|futex|pthread|syscall$|__lll/) area = "locks and futex"
        else if (sym ~ /xmppd::/) area = "xmppd core (routing, sessions, presence, sasl)"
        else if (sym ~ /base64|argh|log::/) area = "other crates"
        else area = "other (std, libc, unresolved)"
        total[area] += pct
    }
    END { for (a in total) printf "%6.1f%%  %s\n", total[a], a }' | sort -rn
}

profile() { # NAME BENCH-ARGS...
    local name=$1
    shift
    echo "== $name: $*" >&2
    perf record -q -F "${PERF_FREQ:-1999}" "${callgraph[@]}" -p "$PID" -o "$OUT/$name.data" 2>/dev/null &
    local perf_pid=$!
    sleep 0.3
    "$BENCH" run --spec "$SPEC" --pid "$PID" "$@" | tee "$OUT/$name.result"
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    perf report -i "$OUT/$name.data" --stdio --no-children --sort symbol --percent-limit 0 2>/dev/null |
        grep -v '^#' | grep -v '^$' | sed 's/ *- *- *$//' >"$OUT/$name.symbols"
    {
        echo "# xmppd-bench run $*"
        cat "$OUT/$name.result"
        echo
        echo "## share of xmppd's CPU samples by area"
        group <"$OUT/$name.symbols"
        echo
        echo "## top symbols (self time)"
        head -25 "$OUT/$name.symbols"
    } | sed "s/[[:space:]]*$//" >"$OUT/$name.txt"
    rm -f "$OUT/$name.data" "$OUT/$name.data.old" "$OUT/$name.result" "$OUT/$name.symbols"
}

profile idle-tls --scenario idle --transport starttls --n 200
profile throughput-plain --scenario throughput --transport plain --secs 6
profile throughput-tls --scenario throughput --transport starttls --secs 6
profile latency --scenario latency --transport starttls --secs 4
profile storm --scenario storm --transport starttls --secs 6
profile fanout --scenario fanout --transport starttls --changes 300
echo "profiles in $OUT" >&2
