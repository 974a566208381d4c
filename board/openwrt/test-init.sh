#!/bin/sh
# Runs the procd init script's start_service and service_triggers off the router, with
# OpenWrt's functions (config_get, uci, procd_*) replaced by stubs that log their calls, so
# that tests/cross_smoke.rs can check what the script asks procd and uci to do. The real
# uci-to-toml and `xmppd check-config` run.
#
#   sh board/openwrt/test-init.sh XMPPD_BINARY WORKDIR [UCI_FILE]
#   (XMPPD_TEST_DATA_DIR overrides the data dir, which defaults to WORKDIR/data)
#
# Writes WORKDIR/calls (procd/chown/logger calls, one a line), WORKDIR/uci-batch (what
# would be set in /etc/config/dhcp) and WORKDIR/xmppd.toml; prints "start_service: N" with
# its exit status.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
xmppd=$1
work=$2
uci_file=${3:-$here/files/xmppd.config}
mkdir -p "$work"
: > "$work/calls"

# What config_load would read, flattened: CFG_<section>_<option>, lists space-separated.
eval "$(awk '
    function val(s) { sub(/^[ \t]+/, "", s); sub(/^[^ \t]+[ \t]+[^ \t]+[ \t]*/, "", s); gsub(/^\047|\047$/, "", s); return s }
    $1 == "config" { sec = $3; gsub(/\047/, "", sec) }
    $1 == "option" { printf "CFG_%s_%s=\047%s\047\n", sec, $2, val($0) }
    $1 == "list" { l[sec "_" $2] = l[sec "_" $2] (l[sec "_" $2] == "" ? "" : " ") val($0) }
    END { for (k in l) printf "CFG_%s=\047%s\047\n", k, l[k] }
' "$uci_file")"

log() { echo "$*" >> "$work/calls"; }
config_load() { :; }
config_get() { eval "$1=\"\${CFG_$2_$3:-${4:-}}\""; }
config_get_bool() {
    config_get "$@"
    eval "case \"\$$1\" in 1|on|true|yes|enabled) $1=1 ;; *) $1=0 ;; esac"
}
uci() {
    case "$*" in
        "-q export xmppd") cat "$uci_file" ;;
        "-q get network.lan.ipaddr") echo "192.168.1.1/24" ;;
        "-q batch") cat > "$work/uci-batch" ;;
        "-q changes dhcp") ;;
        *) log "uci $*" ;;
    esac
}
chown() { log "chown $*"; }
logger() { log "logger $*"; }
procd_open_instance() { log "procd_open_instance"; }
procd_set_param() { log "procd_set_param $*"; }
procd_close_instance() { log "procd_close_instance"; }
procd_add_mdns() { log "procd_add_mdns $*"; }
procd_add_reload_trigger() { log "procd_add_reload_trigger $*"; }
procd_add_restart_mount_trigger() { log "procd_add_restart_mount_trigger $*"; }

# shellcheck source=board/openwrt/files/xmppd.init
. "$here/files/xmppd.init"
PROG=$xmppd
TRANSLATE=$here/files/uci-to-toml.sh
CONF=$work/xmppd.toml
# The data dir goes to the work dir, not /etc (XMPPD_TEST_DATA_DIR: somewhere else).
CFG_main_data_dir=${XMPPD_TEST_DATA_DIR:-$work/data}

set +e
start_service
echo "start_service: $?"
set -e
service_triggers
