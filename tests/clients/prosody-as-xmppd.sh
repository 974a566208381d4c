#!/usr/bin/env bash
# Stands in for the xmppd binary, backed by Debian's Prosody, so that the Rust
# harness (tests/common/mod.rs) and the scenarios can be validated against a
# working server before xmppd itself works. Used by tests/clients/main.rs.
#
# It implements just the CLI surface the harness uses:
#   serve --data-dir DIR --domain D --c2s ADDR --c2s-tls ADDR [--log-level L] [--config FILE]
#   user add JID --password PW --data-dir DIR
# `serve` prints the same readiness lines xmppd prints, writes the certificate
# to DIR/tls/cert.pem, then execs Prosody, so SIGTERM/SIGKILL reach Prosody
# itself. A config FILE containing `require_encryption = false` allows plain
# TCP logins, like xmppd's `[c2s] require_encryption = false`.
set -euo pipefail

die() { echo "prosody-as-xmppd: $*" >&2; exit 78; }
command -v prosody >/dev/null || die "prosody is not installed (apt-get install -y prosody)"

data_dir="" domain="localhost" c2s="" c2s_tls="" config="" password=""

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ADDR is 127.0.0.1:PORT; port 0 means "pick one" as it does for xmppd.
resolve_port() {
    local port="${1##*:}"
    if [ "$port" = 0 ]; then free_port; else echo "$port"; fi
}

write_config() {  # $1 = STARTTLS port, $2 = direct TLS port
    local plain=false
    if [ -n "$config" ] && grep -Eq '^[[:space:]]*require_encryption[[:space:]]*=[[:space:]]*false' "$config"; then
        plain=true
    fi
    local require=true allow_plain=false
    if [ "$plain" = true ]; then require=false; allow_plain=true; fi
    mkdir -p "$data_dir/prosody-data"
    cat > "$data_dir/prosody.cfg.lua" <<EOF
run_as_root = true
daemonize = false
pidfile = "$data_dir/prosody.pid"
data_path = "$data_dir/prosody-data"
log = { { levels = { min = "debug" }, to = "file", filename = "$data_dir/prosody.log" } }
interfaces = { "127.0.0.1" }
c2s_ports = { $1 }
c2s_direct_tls_ports = { $2 }
s2s_ports = { }
http_ports = { }
https_ports = { }
certificates = "$data_dir/tls"
modules_enabled = { "disco", "roster", "saslauth", "tls", "ping", "version", "posix" }
modules_disabled = { "s2s", "limits", "offline", "carbons" }
c2s_require_encryption = $require
allow_unencrypted_plain_auth = $allow_plain
authentication = "internal_plain"
VirtualHost "$domain"
EOF
}

ensure_certificate() {
    mkdir -p "$data_dir/tls"
    if [ ! -f "$data_dir/tls/cert.pem" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
            -subj "/CN=$domain" -addext "subjectAltName=DNS:$domain" \
            -addext basicConstraints=critical,CA:FALSE \
            -keyout "$data_dir/tls/key.pem" -out "$data_dir/tls/cert.pem" 2>/dev/null
        # Prosody finds certificates by host name in its certificates dir.
        ln -sf cert.pem "$data_dir/tls/$domain.crt"
        ln -sf key.pem "$data_dir/tls/$domain.key"
    fi
}

serve() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --data-dir) data_dir="$2"; shift ;;
            --domain) domain="$2"; shift ;;
            --c2s) c2s="$2"; shift ;;
            --c2s-tls) c2s_tls="$2"; shift ;;
            --config) config="$2"; shift ;;
            --log-level) shift ;;
            *) die "serve: unknown argument $1" ;;
        esac
        shift
    done
    [ -n "$data_dir" ] && [ -n "$c2s" ] && [ -n "$c2s_tls" ] || die "serve: missing arguments"
    mkdir -p "$data_dir"
    local p1 p2
    p1="$(resolve_port "$c2s")"
    p2="$(resolve_port "$c2s_tls")"
    while [ "$p2" = "$p1" ]; do p2="$(free_port)"; done
    ensure_certificate
    write_config "$p1" "$p2"
    echo "xmppd (prosody shim) starting, data dir $data_dir" >&2
    # Announce readiness the way xmppd does once both ports accept connections.
    (
        for _ in $(seq 1 200); do
            if python3 - "$p1" "$p2" <<'PY' 2>/dev/null; then
import socket, sys
for port in sys.argv[1:]:
    socket.create_connection(("127.0.0.1", int(port)), timeout=0.2).close()
PY
                echo "INFO c2s (STARTTLS) listening on 127.0.0.1:$p1" >&2
                echo "INFO c2s (direct TLS) listening on 127.0.0.1:$p2" >&2
                echo "INFO xmppd ready (domain $domain)" >&2
                exit 0
            fi
            sleep 0.05
        done
    ) &
    exec prosody --config "$data_dir/prosody.cfg.lua" -F
}

user_add() {
    local jid="$1"
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --password) password="$2"; shift ;;
            --data-dir) data_dir="$2"; shift ;;
            *) die "user add: unknown argument $1" ;;
        esac
        shift
    done
    [ -n "$data_dir" ] || die "user add: --data-dir is required"
    domain="${jid#*@}"
    mkdir -p "$data_dir"
    [ -f "$data_dir/prosody.cfg.lua" ] || write_config 0 0
    prosodyctl --config "$data_dir/prosody.cfg.lua" register "${jid%@*}" "$domain" "$password" \
        2>&1 | grep -v '^certmanager' >&2 || true
    # Prosody stores each name with every non-alphanumeric byte as %xx.
    local stored
    stored="$(python3 -c 'import re, sys
print(re.sub(r"[^A-Za-z0-9]", lambda m: "%%%02x" % ord(m.group()), sys.argv[1]))' "${jid%@*}")"
    [ -f "$data_dir/prosody-data/$domain/accounts/$stored.dat" ] || die "user add $jid failed"
}

case "${1:-}" in
    serve) shift; serve "$@" ;;
    user) [ "${2:-}" = add ] || die "only 'user add' is supported"; shift 2; user_add "$@" ;;
    *) die "usage: $0 serve ... | user add JID --password PW --data-dir DIR" ;;
esac
