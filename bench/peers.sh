#!/usr/bin/env bash
# Peers for the benchmark: installs Prosody and ejabberd from Debian's packages, and prepares
# xmppd, Prosody and ejabberd side by side on loopback, each with its own ports, its own config
# and all of its state under one work directory. Nothing under /etc is read or changed, no system
# service is started, and every process this script starts is stopped by its PID.
#
#   bench/peers.sh install          apt-get install prosody ejabberd erlang-p1-sqlite3 (services
#                                   kept from starting), and strace and linux-perf (they count
#                                   the servers' sync calls in the archive scenario)
#   bench/peers.sh prepare WORK     certificate, configs, accounts;
#                                   WORK/NAME/{server.env,run.sh,reset.sh}
#   bench/peers.sh cleanup WORK     stop what prepare left running (ejabberd's epmd) by PID
#
# The benchmark (xmppd-bench suite --work WORK) starts each server with `exec WORK/NAME/run.sh`
# so that the PID it holds is the server's own (for /proc/PID/status and /proc/PID/stat), and
# runs WORK/NAME/reset.sh before every start, outside the timed window: it empties the message
# archive, so that every repetition starts from the same state. (A growing archive otherwise
# changes the peers' cost per message from one repetition to the next: Prosody's file storage
# reads a whole per-account list at the first message after a start and rewrites it at each
# 100 messages once an account holds 10000; ejabberd's mnesia archive is a bag with one key
# per account, so each message costs time proportional to the account's archive.)
#
# Alike on all three: domain "localhost"; STARTTLS offered but not required (the plain scenarios
# log in without TLS); direct TLS (XEP-0368) on a second port; the same ECDSA P-256 certificate;
# passwords stored as SCRAM-SHA-1 keys derived with 4096 PBKDF2 iterations; no rate limits
# (Prosody's mod_limits and ejabberd's shapers are off); logging at warning level to a file.
# Features: the peers load the counterparts of what xmppd has on by default — roster with
# versioning, disco, ping, version, offline storage (XEP-0160), stream management (XEP-0198),
# carbons (XEP-0280), client state indication (XEP-0352), a message archive that stores every
# chat message for sender and recipient (XEP-0313), PEP with entity caps (XEP-0163/0115),
# vCard with avatar hashes in presence (XEP-0054/0153/0398), private XML storage (XEP-0049),
# bookmarks (XEP-0402/0048) and blocking (XEP-0191); in-band registration stays off everywhere
# (xmppd's default). The report (bench/src/report.rs) lists the modules; keep the two in step.
# Archive storage: xmppd its own segment files; Prosody its internal file storage; ejabberd
# SQLite (erlang-p1-sqlite3), the backend its own start-up warning recommends for small
# servers, not mnesia: ejabberd 23.01's mnesia archive slowed from 460 to 190 messages/s over
# three 6-second runs here (2.2 → 5.5 ms of CPU per message) as the accounts' archives grew,
# and is limited to 2 GB.
#
# Environment (defaults in brackets): XMPPD_BIN [target/release/xmppd], BENCH_USERS [201: accounts
# PREFIX0 .. PREFIX200], BENCH_PREFIX [bench], BENCH_PASSWORD [bench-password],
# XMPPD_PORT/XMPPD_TLS_PORT [16222/16223], PROSODY_PORT/PROSODY_TLS_PORT [17222/17223],
# EJABBERD_PORT/EJABBERD_TLS_PORT [18222/18223], EJABBERD_EPMD_PORT [18369].
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DOMAIN=localhost
USERS="${BENCH_USERS:-201}"
PREFIX="${BENCH_PREFIX:-bench}"
PASSWORD="${BENCH_PASSWORD:-bench-password}"
ITERATIONS=4096
XMPPD_BIN="${XMPPD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/xmppd}"
XMPPD_PORT="${XMPPD_PORT:-16222}"
XMPPD_TLS_PORT="${XMPPD_TLS_PORT:-16223}"
PROSODY_PORT="${PROSODY_PORT:-17222}"
PROSODY_TLS_PORT="${PROSODY_TLS_PORT:-17223}"
EJABBERD_PORT="${EJABBERD_PORT:-18222}"
EJABBERD_TLS_PORT="${EJABBERD_TLS_PORT:-18223}"
EJABBERD_EPMD_PORT="${EJABBERD_EPMD_PORT:-18369}"
EJABBERD_NODE="xmppdbench@localhost"
EJABBERD_COOKIE="xmppdbenchcookie"

log() { printf 'peers: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# --------------------------------------------------------------------------------------------
install_peers() {
    local missing=()
    command -v prosody >/dev/null || missing+=(prosody)
    [ -x /usr/sbin/ejabberdctl ] || missing+=(ejabberd)
    # ejabberd's SQLite driver, for its message archive.
    compgen -G "/usr/lib/erlang/lib/p1_sqlite3-*" >/dev/null || missing+=(erlang-p1-sqlite3)
    command -v openssl >/dev/null || missing+=(openssl)
    # What counts the servers' fsync-type calls in the archive scenario (--sync-tracer).
    command -v perf >/dev/null || missing+=(linux-perf)
    command -v strace >/dev/null || missing+=(strace)
    if [ ${#missing[@]} -eq 0 ]; then
        log "prosody, ejabberd (with erlang-p1-sqlite3), openssl, perf and strace are installed"
        return
    fi
    [ "$(id -u)" = 0 ] || die "installing ${missing[*]} needs root"
    # The packages' maintainer scripts would start system services on the default ports:
    # policy-rc.d exit 101 ("action forbidden") stops invoke-rc.d from doing so. An existing
    # policy-rc.d is left as it is; one we add is removed afterwards.
    local added_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
    [ -n "$added_policy" ] && rm -f /usr/sbin/policy-rc.d
    return 0
}

# --------------------------------------------------------------------------------------------
write_server_env() { # NAME PORT TLS_PORT DATA_DIR (what the archive scenario watches grow)
    cat >"$WORK/$1/server.env" <<EOF
name=$1
host=127.0.0.1
port=$2
tls_port=$3
domain=$DOMAIN
prefix=$PREFIX
password=$PASSWORD
users=$USERS
run=$WORK/$1/run.sh
reset=$WORK/$1/reset.sh
data=$4
EOF
}

write_reset() { # NAME SHELL-COMMANDS: what empties NAME's message archive (not timed)
    printf '#!/bin/sh\n# Empties the message archive before a start (bench/peers.sh).\nset -e\n%s\n' "$2" \
        >"$WORK/$1/reset.sh"
    chmod +x "$WORK/$1/reset.sh"
}

make_certificate() {
    # One ECDSA P-256 certificate for all three servers, so the TLS handshake costs the same
    # signature on each (xmppd would otherwise generate its own P-256 key, Prosody and ejabberd
    # ship RSA snakeoil certificates).
    mkdir -p "$WORK/tls"
    if [ ! -s "$WORK/tls/cert.pem" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" -days 3650 \
            -subj "/CN=$DOMAIN" -addext "subjectAltName=DNS:$DOMAIN" 2>/dev/null
        cat "$WORK/tls/cert.pem" "$WORK/tls/key.pem" >"$WORK/tls/combined.pem"
        chmod 644 "$WORK/tls/"*.pem
    fi
}

user_names() { seq 0 $((USERS - 1)) | sed "s/^/$PREFIX/"; }

# --------------------------------------------------------------------------------------------
prepare_xmppd() {
    local dir="$WORK/xmppd"
    [ -x "$XMPPD_BIN" ] || die "no xmppd binary at $XMPPD_BIN (cargo build --release, or set XMPPD_BIN)"
    mkdir -p "$dir"
    cat >"$dir/xmppd.toml" <<EOF
domain = "$DOMAIN"
data_dir = "$dir/data"
log_level = "warn"
scram_iterations = $ITERATIONS

[tls]
certificate = "$WORK/tls/cert.pem"
key = "$WORK/tls/key.pem"

[c2s]
listen = ["127.0.0.1:$XMPPD_PORT"]
listen_tls = ["127.0.0.1:$XMPPD_TLS_PORT"]
require_encryption = false
allow_plain_unencrypted = true

[limits]
# Room for the 201 bench accounts and their sessions, all from 127.0.0.1, and no inbound
# rate limit (the peers run without mod_limits / shapers too).
max_connections = 256
max_connections_per_ip = 256
max_accounts = 1000
inbound_bytes_per_sec = 16777216
inbound_burst_bytes = 16777216
EOF
    "$XMPPD_BIN" check-config --config "$dir/xmppd.toml" >&2
    cat >"$dir/run.sh" <<EOF
#!/bin/sh
exec "$XMPPD_BIN" serve --config "$dir/xmppd.toml" 2>>"$dir/xmppd.log"
EOF
    chmod +x "$dir/run.sh"
    # The archive (offline messages included) is its own directory, apart from the accounts.
    write_reset xmppd "rm -rf '$dir/data/archive'"
    if [ ! -f "$dir/users.done" ]; then
        log "xmppd: creating $USERS accounts"
        rm -rf "$dir/data"
        # One at a time: `user add` locks the store (a second one would take it for a server).
        user_names | xargs -I{} "$XMPPD_BIN" user add "{}@$DOMAIN" --password "$PASSWORD" \
            --config "$dir/xmppd.toml" >/dev/null
        touch "$dir/users.done"
    fi
    write_server_env xmppd "$XMPPD_PORT" "$XMPPD_TLS_PORT" "$dir/data"
}

# --------------------------------------------------------------------------------------------
prepare_prosody() {
    local dir="$WORK/prosody"
    mkdir -p "$dir/data"
    cat >"$dir/prosody.cfg.lua" <<EOF
-- Generated by bench/peers.sh; all state under $dir.
run_as_root = true            -- the benchmark runs as root in a throwaway machine
daemonize = false
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
plugin_paths = {}
admins = {}
certificates = "$WORK/tls"
network_backend = "epoll"
log = { warn = "$dir/prosody.log" }

-- The counterparts of xmppd's default features (bench/peers.sh's header lists them).
-- mod_limits is NOT loaded (it would throttle each connection to ~3000 bytes/s). "offline"
-- (XEP-0160) is auto-loaded, as are presence, message, iq and c2s. Roster versioning is part of
-- mod_roster; entity caps are handled by mod_pep.
modules_enabled = {
    "roster", "saslauth", "tls", "disco", "ping", "version",
    "smacks",                      -- XEP-0198 (in Prosody's core since 0.12)
    "carbons",                     -- XEP-0280
    "csi_simple",                  -- XEP-0352 (pulls in mod_csi)
    "mam",                         -- XEP-0313
    "pep",                         -- XEP-0163 on XEP-0060, XEP-0115 caps for +notify
    "vcard_legacy",                -- XEP-0054 on PEP, XEP-0398 avatar conversion, XEP-0153 hash
    "private",                     -- XEP-0049
    "bookmarks",                   -- XEP-0402 with the XEP-0048 view
    "blocklist",                   -- XEP-0191
}
-- Auto-loaded modules without an xmppd counterpart.
modules_disabled = { "s2s", "s2s_auth_certs" }

-- The archive as xmppd keeps it: every chat message with a body, for both parties, without
-- any client having asked for it, at most 10000 messages per account, kept for a year.
default_archive_policy = true
mam_smart_enable = false
storage_archive_item_limit = 10000
archive_expires_after = "1y"
-- XEP-0198 resumption window: xmppd's limits.sm_resume_secs default.
smacks_hibernation_time = 600

authentication = "internal_hashed"
default_iteration_count = $ITERATIONS  -- Prosody's default is 10000; xmppd and ejabberd use 4096
storage = "internal"          -- files under data_path, the archive included

c2s_require_encryption = false
allow_unencrypted_plain_auth = true
c2s_ports = { $PROSODY_PORT }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { $PROSODY_TLS_PORT }
c2s_direct_tls_interfaces = { "127.0.0.1" }
s2s_ports = {}
component_ports = {}
http_ports = {}
https_ports = {}

ssl = { certificate = "$WORK/tls/cert.pem", key = "$WORK/tls/key.pem" }

VirtualHost "$DOMAIN"
    ssl = { certificate = "$WORK/tls/cert.pem", key = "$WORK/tls/key.pem" }
EOF
    cat >"$dir/run.sh" <<EOF
#!/bin/sh
exec prosody --config "$dir/prosody.cfg.lua" -F
EOF
    chmod +x "$dir/run.sh"
    write_reset prosody "rm -rf '$dir/data/$DOMAIN/archive' '$dir/data/$DOMAIN/archive_cleanup'"
    if [ ! -f "$dir/users.done" ]; then
        log "prosody: creating $USERS accounts"
        rm -rf "$dir/data" && mkdir -p "$dir/data"
        user_names | xargs -P 2 -I{} prosodyctl --config "$dir/prosody.cfg.lua" \
            register "{}" "$DOMAIN" "$PASSWORD" >/dev/null
        touch "$dir/users.done"
    fi
    write_server_env prosody "$PROSODY_PORT" "$PROSODY_TLS_PORT" "$dir/data"
}

# --------------------------------------------------------------------------------------------
ejabberd_env() {
    # Its own epmd port (ERL_EPMD_PORT) and node name, so it can never clash with a system
    # ejabberd or any other Erlang node; HOME points into WORK so no ~/.erlang.cookie is written.
    export HOME="$WORK/ejabberd"
    export ERL_EPMD_PORT="$EJABBERD_EPMD_PORT"
    export ERL_EPMD_ADDRESS=127.0.0.1
    export ERL_LIBS=/usr/lib/x86_64-linux-gnu
    export EJABBERD_CONFIG_PATH="$WORK/ejabberd/ejabberd.yml"
    export EJABBERD_LOG_PATH="$WORK/ejabberd/log/ejabberd.log"
    export ERL_CRASH_DUMP="$WORK/ejabberd/log/erl_crash.dump"
    export ERL_INETRC="$WORK/ejabberd/inetrc"
    export ERL_MAX_PORTS=32000 ERL_MAX_ETS_TABLES=1400
}

start_epmd() {
    local pidfile="$WORK/ejabberd/epmd.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return; fi
    ejabberd_env
    epmd -address 127.0.0.1 -port "$EJABBERD_EPMD_PORT" >/dev/null 2>&1 &
    echo $! >"$pidfile"
    sleep 0.3
}

ejabberd_rpc() { # ERLANG-EXPRESSION (evaluated on the ejabberd node)
    ejabberd_env
    erl -sname "xmppdbenchctl$$" -hidden -noinput -setcookie "$EJABBERD_COOKIE" -start_epmd false \
        -eval "R = rpc:call('$EJABBERD_NODE', erlang, apply, [fun() -> $1 end, []]), io:format(\"~p~n\", [R]), halt()."
}

prepare_ejabberd() {
    local dir="$WORK/ejabberd"
    [ -d /usr/lib/x86_64-linux-gnu/ejabberd-23.01 ] || log "warning: expected ejabberd 23.01 (Debian 12)"
    mkdir -p "$dir/spool" "$dir/log"
    echo '{lookup,[file,native]}.' >"$dir/inetrc"
    echo '127.0.0.1 localhost.' >/dev/null
    cat >"$dir/ejabberd.yml" <<EOF
# Generated by bench/peers.sh; all state under $dir.
loglevel: warning
log_rotate_count: 0
hosts:
  - "$DOMAIN"
certfiles:
  - "$WORK/tls/combined.pem"
listen:
  -
    port: $EJABBERD_PORT
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 65536
    starttls: true
    starttls_required: false
    shaper: none
  -
    port: $EJABBERD_TLS_PORT
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 65536
    tls: true
    shaper: none
auth_method: internal
# Only the message archive is in SQL (mod_mam's db_type); everything else stays in mnesia.
# ejabberd creates the database with its lite.sql schema at its first query (prepare makes one).
sql_type: sqlite
sql_database: "$dir/spool/mam.db"
auth_password_format: scram
auth_scram_hash: sha
disable_sasl_mechanisms:
  - "digest-md5"
  - "x-oauth2"
acl:
  local:
    user_regexp: ""
access_rules:
  c2s:
    allow: all
  local:
    allow: local
  pubsub_createnode:
    allow: local
shaper_rules:
  max_user_sessions: 10
  # xmppd's limits.max_offline_messages default.
  max_user_offline_messages: 100
  c2s_shaper: none
# The counterparts of xmppd's default features (bench/peers.sh's header lists them); no
# registration, no web/API/MQTT/STUN listeners. Storage in mnesia, the archive in SQLite.
modules:
  mod_roster:
    versioning: true
  mod_disco: {}
  mod_ping: {}
  mod_version:
    show_os: false
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  # Every chat message archived for sender and recipient, without any client having asked.
  mod_mam:
    db_type: sql
    default: always
  mod_carboncopy: {}
  mod_stream_mgmt:
    resend_on_timeout: if_offline
    resume_timeout: 600
    max_resume_timeout: 3600
  mod_client_state: {}
  mod_caps: {}
  # PEP; the "flat" plugin comes first as in ejabberd's packaged configuration (it also gives
  # a pubsub.$DOMAIN service, which the benchmark never uses).
  mod_pubsub:
    access_createnode: pubsub_createnode
    plugins:
      - flat
      - pep
    force_node_config:
      "storage:bookmarks":
        access_model: whitelist
  mod_vcard:
    search: false
  mod_vcard_xupdate: {}
  mod_avatar: {}
  mod_private: {}
  mod_blocking: {}
  mod_privacy: {}
EOF
    cat >"$dir/run.sh" <<EOF
#!/bin/sh
# erl execs erlexec, which execs beam.smp: the PID stays the same.
export HOME="$dir" ERL_EPMD_PORT="$EJABBERD_EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1
export ERL_LIBS=/usr/lib/x86_64-linux-gnu
export EJABBERD_CONFIG_PATH="$dir/ejabberd.yml" EJABBERD_LOG_PATH="$dir/log/ejabberd.log"
export ERL_CRASH_DUMP="$dir/log/erl_crash.dump" ERL_INETRC="$dir/inetrc"
export ERL_MAX_PORTS=32000 ERL_MAX_ETS_TABLES=1400
cd "$dir"
# The flags ejabberdctl passes (+K true +P 250000), its own node name, no epmd of its own.
exec erl -sname "$EJABBERD_NODE" -setcookie "$EJABBERD_COOKIE" -start_epmd false \\
    +K true +P 250000 -noinput -noshell \\
    -mnesia dir '"$dir/spool"' -s ejabberd >>"$dir/log/stdout.log" 2>&1
EOF
    chmod +x "$dir/run.sh"
    start_epmd
    if [ ! -f "$dir/users.done" ]; then
        log "ejabberd: starting it once to create $USERS accounts"
        rm -rf "$dir/spool" && mkdir -p "$dir/spool"
        "$dir/run.sh" &
        local pid=$!
        local up=""
        for _ in $(seq 1 120); do
            if [ "$(ejabberd_rpc 'ejabberd_auth:user_exists(<<"probe">>, <<"'"$DOMAIN"'">>)' 2>/dev/null)" = false ]; then
                up=1; break
            fi
            sleep 0.5
        done
        [ -n "$up" ] || { kill "$pid"; die "ejabberd did not come up; see $dir/log/"; }
        # One RPC registers every account (ejabberdctl register would start a VM per account).
        local n=$((USERS - 1))
        ejabberd_rpc "[ejabberd_auth:try_register(list_to_binary(\"$PREFIX\" ++ integer_to_list(I)), <<\"$DOMAIN\">>, <<\"$PASSWORD\">>) || I <- lists:seq(0, $n)]" >"$dir/register.out"
        grep -q error "$dir/register.out" && { kill "$pid"; die "ejabberd registration failed: $(head -c 300 "$dir/register.out")"; }
        # ejabberd opens the SQLite archive (creating it with its schema) at the first query,
        # which would otherwise be the first archived message of a measured run: one query now,
        # and the empty database is kept for reset.sh.
        ejabberd_rpc "ejabberd_sql:sql_query(<<\"$DOMAIN\">>, [<<\"SELECT count(*) FROM archive;\">>])" >"$dir/sql.out"
        grep -q selected "$dir/sql.out" || { kill "$pid"; die "ejabberd's SQLite archive: $(head -c 300 "$dir/sql.out")"; }
        kill -TERM "$pid"
        wait "$pid" || true
        cp "$dir/spool/mam.db" "$dir/spool/mam-empty.db"
        touch "$dir/users.done"
    fi
    write_reset ejabberd "rm -f '$dir/spool/mam.db-journal'
if [ -f '$dir/spool/mam-empty.db' ]; then cp '$dir/spool/mam-empty.db' '$dir/spool/mam.db'; else rm -f '$dir/spool/mam.db'; fi"
    write_server_env ejabberd "$EJABBERD_PORT" "$EJABBERD_TLS_PORT" "$dir/spool"
}

# --------------------------------------------------------------------------------------------
cleanup() {
    local pidfile="$WORK/ejabberd/epmd.pid"
    if [ -f "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
}

cmd="${1:-}"
case "$cmd" in
install) install_peers ;;
prepare)
    WORK="$(mkdir -p "${2:?usage: peers.sh prepare WORK [xmppd prosody ejabberd]}" && cd "$2" && pwd)"
    shift 2
    servers=("$@")
    [ ${#servers[@]} -gt 0 ] || servers=(xmppd prosody ejabberd)
    make_certificate
    for s in "${servers[@]}"; do "prepare_$s"; done
    ;;
cleanup)
    WORK="$(cd "${2:?usage: peers.sh cleanup WORK}" && pwd)"
    cleanup
    ;;
*) sed -n '2,12p' "$0"; exit 2 ;;
esac
