#!/bin/sh
# Installs xmppd as a system service on Raspberry Pi OS / Debian (any board with systemd).
#
#   sudo sh install.sh [--domain NAME] [BINARY]
#
# BINARY: the xmppd built for this board (default: ./xmppd next to this script, else the
# one board/build.sh made for this CPU). Safe to run again to upgrade: the config file and
# the accounts are kept.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
domain=
binary=
while [ $# -gt 0 ]; do
    case "$1" in
        --domain) domain=$2; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) binary=$1; shift ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run it as root (sudo sh install.sh)" >&2
    exit 1
fi

case "$(uname -m)" in
    aarch64) target=aarch64-unknown-linux-musl ;;
    armv7l) target=armv7-unknown-linux-musleabihf ;;
    armv6l) target=arm-unknown-linux-musleabihf ;;
    x86_64) target=x86_64-unknown-linux-musl ;;
    *) target= ;;
esac
# A 64-bit kernel with a 32-bit (armhf) userland reports aarch64: go by the userland.
if [ "$target" = aarch64-unknown-linux-musl ] && command -v dpkg >/dev/null &&
    [ "$(dpkg --print-architecture)" = armhf ]; then
    target=armv7-unknown-linux-musleabihf
fi
if [ -z "$binary" ]; then
    for candidate in "$here/xmppd" "$here/../../target/$target/release/xmppd"; do
        if [ -f "$candidate" ]; then binary=$candidate; break; fi
    done
fi
if [ -z "$binary" ] || [ ! -f "$binary" ]; then
    echo "install.sh: no xmppd binary found; build one for $target (board/build.sh $target)" >&2
    echo "            or pass its path: sudo sh install.sh /path/to/xmppd" >&2
    exit 1
fi
if ! "$binary" --help >/dev/null 2>&1; then
    echo "install.sh: $binary does not run on this machine ($(uname -m)); it should be built for $target" >&2
    exit 1
fi

echo "installing $binary as /usr/local/bin/xmppd"
install -m 0755 "$binary" /usr/local/bin/xmppd.new
mv /usr/local/bin/xmppd.new /usr/local/bin/xmppd

if ! getent passwd xmppd >/dev/null; then
    echo "creating system user xmppd"
    useradd --system --user-group --home-dir /var/lib/xmppd --no-create-home \
        --shell /usr/sbin/nologin xmppd
fi

install -d -m 0755 /etc/xmppd
if [ ! -f /etc/xmppd/xmppd.toml ]; then
    [ -n "$domain" ] || domain="$(hostname).local"
    sed "s/^domain = .*/domain = \"$domain\"/" "$here/xmppd.toml" > /etc/xmppd/xmppd.toml
    chmod 0644 /etc/xmppd/xmppd.toml
    echo "wrote /etc/xmppd/xmppd.toml (domain $domain)"
else
    echo "keeping /etc/xmppd/xmppd.toml"
    if [ -n "$domain" ]; then
        echo "  (--domain ignored: edit domain = in that file to change it)"
    fi
fi
/usr/local/bin/xmppd check-config --config /etc/xmppd/xmppd.toml

install -m 0644 "$here/xmppd.service" /etc/systemd/system/xmppd.service
if [ -d /etc/avahi/services ]; then
    install -m 0644 "$here/xmppd.avahi-service" /etc/avahi/services/xmppd.service
    echo "announcing _xmpp-client._tcp over mDNS (avahi)"
fi
systemctl daemon-reload
systemctl enable xmppd >/dev/null 2>&1
systemctl restart xmppd
sleep 2
if systemctl is-active --quiet xmppd; then
    echo
    echo "xmppd is running. Next steps:"
    echo "  add an account:  sudo -u xmppd xmppd user add alice@$(sed -n 's/^domain = "\(.*\)"/\1/p' /etc/xmppd/xmppd.toml) --config /etc/xmppd/xmppd.toml"
    echo "  certificate fingerprint (compare it in your app):"
    echo "                   journalctl -u xmppd | grep fingerprint"
else
    echo "xmppd did not start; see: journalctl -u xmppd -n 50" >&2
    exit 1
fi
