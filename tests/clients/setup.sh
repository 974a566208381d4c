#!/usr/bin/env bash
# Creates (once) the Python venv that the integration tests use to drive the
# server with an independent client library (slixmpp), and prints the path of
# its python on stdout (the only thing this script writes to stdout).
#
#   XMPPD_TEST_VENV    where the venv lives (default: <repo>/target/test-venv)
#   XMPPD_TEST_PYTHON  interpreter to build it from (default: python3, >= 3.11)
#
# Idempotent and fast when nothing changed: the venv carries a stamp with the
# hash of requirements.txt and is rebuilt only when that hash differs.
# Concurrent callers (parallel test processes) serialise on a lock file.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${XMPPD_TEST_VENV:-$repo/target/test-venv}"
python="${XMPPD_TEST_PYTHON:-python3}"
requirements="$here/requirements.txt"
stamp="$venv/.xmppd-requirements.sha256"

want="$(sha256sum "$requirements" | cut -d' ' -f1)"

is_current() {
    [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]
}

if is_current; then
    echo "$venv/bin/python"
    exit 0
fi

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
if ! flock -w 600 9; then
    echo "setup.sh: timed out waiting for $venv.lock" >&2
    exit 1
fi
# Another process may have built it while this one waited for the lock.
if is_current; then
    echo "$venv/bin/python"
    exit 0
fi

if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "setup.sh: '$python' is missing or older than Python 3.11 (slixmpp needs >= 3.11);" \
         "set XMPPD_TEST_PYTHON" >&2
    exit 1
fi

echo "setup.sh: building $venv from $requirements" >&2
rm -rf "$venv"
if ! "$python" -m venv "$venv" >&2; then
    echo "setup.sh: '$python -m venv' failed (on Debian: apt-get install python3-venv)" >&2
    exit 1
fi
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
    --prefer-binary -r "$requirements" >&2
"$venv/bin/python" - >&2 <<'PY'
import slixmpp
from slixmpp.util.sasl.client import MECHANISMS
for mech in ("PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"):
    assert mech in MECHANISMS, f"slixmpp {slixmpp.__version__} lacks SASL {mech}"
print(f"setup.sh: slixmpp {slixmpp.__version__} ready")
PY
echo "$want" > "$stamp"
echo "$venv/bin/python"
