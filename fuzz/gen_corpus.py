#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/seeds/<target>/.

The seeds come from the project's own test material: XML strings of the framer's unit
tests and of the transcript tests (src/xml/framer.rs, src/core/tests.rs,
tests/c2s_transcripts.rs), JIDs of src/jid.rs and RFC 7622, SCRAM messages of RFC 5802
and RFC 7677, config texts of config/ and src/config/, and whole client sessions built
from the session target's traffic table (fuzz/src/lib.rs). Each target's input format is
described at the top of its file in fuzz/fuzz_targets/.

Run it again after changing a target's input format or CLIENT_TRAFFIC:
    python3 fuzz/gen_corpus.py
It rewrites fuzz/seeds/ from scratch, deterministically.
"""

import base64
import hashlib
import re
import shutil
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
SEEDS = FUZZ / "seeds"

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")


def write(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# ---- Rust string literals ------------------------------------------------------------

LITERAL = re.compile(r'(?<![A-Za-z0-9_#])b?"((?:[^"\\\n]|\\.|\\\n)*)"')
RAW_LITERAL = re.compile(r'r#"(.*?)"#', re.S)


def unescape(body):
    """Rust string escapes: \\n \\r \\t \\0 \\\\ \\" \\' \\xNN \\u{...}, line continuations."""
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        n = body[i + 1]
        if n == "\n":  # continuation: skip the newline and leading blanks
            i += 2
            while i < len(body) and body[i] in " \t":
                i += 1
            continue
        simple = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}
        if n in simple:
            out.append(simple[n])
            i += 2
        elif n == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", body[i + 2:i + 4]):
            out.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        elif n == "u" and body[i + 2:i + 3] == "{" and "}" in body[i:]:
            end = body.index("}", i)
            try:
                out.append(chr(int(body[i + 3:end], 16)))
            except ValueError:  # not an escape (text inside a raw string)
                out.append(body[i:end + 1])
            i = end + 1
        else:
            out.append(n)
            i += 2
    return "".join(out)


def literals(path, keep):
    """The string and byte-string literals of a file that `keep` (given the text) wants,
    as bytes: a byte string's \\xNN is that byte, so invalid UTF-8 tests stay invalid."""
    text = (ROOT / path).read_text()
    seen = []
    for m in LITERAL.finditer(text):
        if "{" in m.group(1):  # format! templates are not data
            continue
        s = unescape(m.group(1))
        data = s.encode("latin-1") if m.group(0).startswith("b") else s.encode()
        if keep(s) and data not in seen:
            seen.append(data)
    return seen


# ---- framer ---------------------------------------------------------------------------

def framer_seed(stream, limit=4, depth=23, attrs=31, addresses=0b0101, sizes=()):
    """[stanza-limit] [depth] [attributes] [addresses] [n] [sizes] [stream]"""
    if isinstance(stream, str):
        stream = stream.encode()
    return bytes([limit, depth, attrs, addresses, len(sizes)]) + bytes(sizes) + stream


def gen_framer():
    xml = []
    for path in ["src/xml/framer.rs", "src/core/tests.rs", "tests/c2s_transcripts.rs"]:
        xml += [s for s in literals(path, lambda s: "<" in s and len(s) > 3) if s not in xml]
    splits = [(), (1,), (7, 13), (64,), (2, 3, 5)]
    for i, s in enumerate(xml):
        whole = b"stream:stream" in s or s.startswith((b"<?xml", "\ufeff".encode()))
        stream = s if whole else HEADER.encode() + s
        sizes = splits[i % len(splits)]
        write("framer", f"test-{i:03}", framer_seed(stream, sizes=sizes))
    # A whole session as one stream, and with the restarts the core makes (size 0 =
    # reset: after <proceed/> and <success/>).
    session = HEADER + "".join(CLIENT_TRAFFIC[k] for k in (1, 3, 5, 6, 8, 12, 16, 39, 17, 25))
    write("framer", "session-whole", framer_seed(session))
    write("framer", "session-bytewise", framer_seed(session, sizes=(1,)))
    write("framer", "session-small-limits", framer_seed(session, limit=0, depth=3, attrs=3))
    restart = (HEADER + CLIENT_TRAFFIC[26] + HEADER + CLIENT_TRAFFIC[1] + HEADER
               + CLIENT_TRAFFIC[3])
    cut = len(HEADER + CLIENT_TRAFFIC[26])
    write("framer", "restarts", framer_seed(restart, sizes=(cut % 256, 0, 200, 0, 255)))
    prefixed = ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
                " xmlns:x='urn:example' xmlns:c='jabber:client'>"
                "<c:message to='a@b' xmlns:p='urn:p'><x:y p:a='1'/><body xml:lang='en'>t</body></c:message>"
                "<message from='z@z'><x:e/></message><iq type='get' id='1'><x:q/></iq>")
    for addresses in (0, 0b0101, 0b1010, 0b1111):
        write("framer", f"prefixes-{addresses:04b}", framer_seed(prefixed, addresses=addresses))


# ---- jid -----------------------------------------------------------------------------

RFC7622_JIDS = [
    # RFC 7622 §3.5 examples, valid and invalid
    "juliet@example.com", "juliet@example.com/foo", "juliet@example.com/foo bar",
    "juliet@example.com/foo@bar", "foo\\20bar@example.com", "fussball@example.com",
    "fu\u00dfball@example.com", "\u03c0@example.com", "\u03a3@example.com/foo",
    "\u03c3@example.com/foo", "\u03c2@example.com/foo", "king@example.com/\u265a",
    "example.com", "example.com/foobar", "a.example.com/b@example.net",
    "\"juliet\"@example.com", "foo bar@example.com", "juliet@example.com/ foo",
    "@example.com/", "henry\u2163@example.com", "\u265a@example.com", "juliet@", "/foobar",
    # addresses and normalisation corners
    "[::1]", "[2001:DB8::1]/r", "127.0.0.1", "localhost.", "EXAMPLE.com", "a@b@c",
    "x@\u3002example\uff0ecom", "\uff21\uff22@example.com", "caf\u0065\u0301@example.com",
    "user@xn--bcher-kva.example", "user@b\u00fccher.example/\u0130", "\u0627\u0628@example.com",
]


def gen_jid():
    rfc = [j.encode() for j in RFC7622_JIDS]
    # The test literals of jid.rs that look like addresses (not messages).
    ours = literals("src/jid.rs", lambda s: 0 < len(s) < 300 and not re.search(r"[a-z] [a-z]", s))
    for i, s in enumerate(rfc + [s for s in ours if s not in rfc]):
        write("jid", f"jid-{i:03}", s)
    # from_parts: NUL-separated local, domain, resource
    for i, parts in enumerate([("alice", "localhost", "phone"), ("", "example.com", ""),
                               ("Alice", "LOCALHOST.", "Ph\u00f6ne"), ("a/b", "c", "d"),
                               ("a", "b/c", ""), ("a", "b@c", "r/s@t")]):
        write("jid", f"parts-{i}", "\0".join(parts).encode())


# ---- scram ---------------------------------------------------------------------------

def scram_seed(mode, *messages):
    out = bytes([mode])
    for m in messages:
        if isinstance(m, str):
            m = m.encode()
        out += struct.pack("<H", len(m)) + m
    return out


MECH = {"SCRAM-SHA-256-PLUS": 0, "SCRAM-SHA-1-PLUS": 1, "SCRAM-SHA-256": 2, "SCRAM-SHA-1": 3,
        "PLAIN": 4}
CB, NO_INITIAL, CORRECT_FINAL, APPEND_PROOF = 0x08, 0x10, 0x20, 0x40


def gen_scram():
    # RFC 5802 §5 and RFC 7677 §3 example exchanges (user "user", unknown here), and the
    # same shapes for the fuzzing accounts.
    rfc5802 = ("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
               "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
    rfc7677 = ("n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
               "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
               "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    write("scram", "rfc5802", scram_seed(MECH["SCRAM-SHA-1"], *rfc5802))
    write("scram", "rfc7677", scram_seed(MECH["SCRAM-SHA-256"], *rfc7677))
    write("scram", "rfc7677-empty-auth", scram_seed(MECH["SCRAM-SHA-256"] | NO_INITIAL, *rfc7677))
    firsts = {
        "n": "n,,n=alice,r=rOprNGfwEbeRWgbNEkqO",
        "authzid": "n,a=alice@localhost,n=alice,r=abcdefghijklmnop",
        "escaped": "n,,n=Al=2Cice=3D,r=x",
        "y": "y,,n=alice,r=abcdefghijklmnop",
        "p": "p=tls-exporter,,n=alice,r=abcdefghijklmnop",
        "p-unique": "p=tls-unique,,n=bob,r=abcdefghijklmnop",
        "ext": "n,,m=ext,n=alice,r=abc",
        "unknown": "n,,n=mallory,r=abc,x=extension",
    }
    final = "c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    for name, first in firsts.items():
        for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1-PLUS"):
            mode = MECH[mech] | (CB if mech.endswith("PLUS") or name == "y" else 0)
            write("scram", f"{name}-{mech.lower()}", scram_seed(mode, first, final))
            write("scram", f"{name}-{mech.lower()}-correct",
                  scram_seed(mode | CORRECT_FINAL, first, final, "extra"))
        write("scram", f"{name}-append-proof",
              scram_seed(MECH["SCRAM-SHA-256"] | APPEND_PROOF, first, "c=biws,r=rOprNGfwEbeRWgbNEkqO"))
    for name, message in {
        "plain": b"\0alice\0secret",
        "plain-authzid": b"alice@localhost\0alice\0secret",
        "plain-wrong": b"\0alice\0wrong",
        "plain-nul": b"\0alice\0sec\0ret",
        "plain-upper": b"\0ALICE\0secret",
    }.items():
        write("scram", name, scram_seed(MECH["PLAIN"], message))
    write("scram", "plain-empty-auth", scram_seed(MECH["PLAIN"] | NO_INITIAL, b"\0bob\0secret", b"x"))


# ---- config --------------------------------------------------------------------------

def gen_config():
    write("config", "example", (ROOT / "config/xmppd.example.toml").read_bytes())
    n = 0
    for path in ["src/config/mod.rs", "src/config/syntax.rs", "tests/config_files.rs"]:
        text = (ROOT / path).read_text()
        for m in RAW_LITERAL.finditer(text):
            write("config", f"test-{n:03}", m.group(1))
            n += 1
        for s in literals(path, lambda s: "=" in s and ("\n" in s or s.startswith(("[", "#")))):
            write("config", f"test-{n:03}", s)
            n += 1
    write("config", "broken", 'domain = "localhost"\nlog_levl = "info"\n[c2s]\n'
          'listen = ["not-an-address",\n  "[::]:5222"\n[limits]\nmax_connections = 100000\r\n'
          'x = "\\u00e9\\q"\n[tls\n')


# ---- core ----------------------------------------------------------------------------

def client_traffic():
    """CLIENT_TRAFFIC of fuzz/src/lib.rs, in order."""
    text = (FUZZ / "src/lib.rs").read_text()
    table = text[text.index("pub const CLIENT_TRAFFIC"):]
    table = table[:table.index("];")]
    table = "\n".join(l for l in table.splitlines() if not l.strip().startswith("//"))
    return [unescape(m.group(1)) for m in LITERAL.finditer(table)]


CLIENT_TRAFFIC = client_traffic()
T = {name: i for i, name in enumerate([
    "header", "auth-alice", "auth-bob", "bind", "bind-generated", "roster-get", "presence",
    "presence-away", "msg-bob", "msg-alice-phone", "msg-nobody", "msg-remote", "subscribe-bob",
    "subscribed-alice", "subscribe-alice", "subscribed-bob", "roster-set", "roster-remove",
    "ping", "disco", "version", "session", "unavailable", "directed", "probe", "close",
    "starttls", "auth-wrong", "auth-scram", "abort", "keepalive", "disco-user", "iq-result",
    "iq-error", "iq-unknown", "iq-bad-to", "unsubscribe", "unsubscribed", "roster-ver",
    "msg-spoofed", "msg-prefixed"])}
assert CLIENT_TRAFFIC[T["auth-alice"]].endswith(
    base64.b64encode(b"\0alice\0secret").decode() + "</auth>"), "CLIENT_TRAFFIC changed order"
assert CLIENT_TRAFFIC[T["starttls"]].startswith("<starttls"), "CLIENT_TRAFFIC changed order"
assert CLIENT_TRAFFIC[T["msg-spoofed"]].startswith("<message"), "CLIENT_TRAFFIC changed order"


class Ops:
    """Builds a session-target input: [config] (op)*."""

    def __init__(self, require_encryption=False, allow_plain=True):
        self.b = bytearray([int(require_encryption) | int(allow_plain) << 1])

    def open(self, tls=False, cb=False):
        self.b += bytes([0, int(tls) | int(cb) << 1])
        return self

    def bytes(self, c, data):
        data = data.encode() if isinstance(data, str) else data
        self.b += bytes([1, c]) + struct.pack("<H", len(data)) + data
        return self

    def send(self, c, *names):
        for name in names:
            self.b += bytes([2, c, T[name]])
        return self

    def advance(self, ms):
        self.b += bytes([3]) + struct.pack("<H", ms // 16)
        return self

    def commit(self):
        self.b += bytes([4])
        return self

    def close(self, c):
        self.b += bytes([5, c])
        return self

    def drain(self):
        self.b += bytes([6])
        return self

    def take(self, c):
        self.b += bytes([7, c])
        return self

    def shutdown(self):
        self.b += bytes([8])
        return self

    def split(self, c, name, at):
        self.b += bytes([9, c, T[name], at])
        return self

    def login(self, c, user, resource="bind"):
        self.send(c, "header").drain().send(c, f"auth-{user}").drain()
        return self.send(c, "header").drain().send(c, resource).drain()


def gen_core():
    write("core", "login-alice",
          Ops().open().login(0, "alice").send(0, "roster-get", "presence").drain().commit().drain().b)
    two = Ops().open().open().login(0, "alice").login(1, "bob", "bind-generated")
    two.send(0, "roster-get", "presence").send(1, "roster-get", "presence-away").drain()
    two.send(0, "subscribe-bob").commit().drain().send(1, "subscribed-alice").commit().drain()
    two.send(0, "msg-bob", "directed", "probe", "roster-set").commit().drain()
    two.send(1, "msg-alice-phone", "msg-spoofed", "ping", "disco", "version", "disco-user").drain()
    two.send(0, "iq-result", "iq-error", "iq-unknown", "iq-bad-to", "msg-nobody", "msg-remote")
    two.send(0, "roster-remove", "unsubscribe", "unsubscribed", "roster-ver").commit().drain()
    two.send(0, "unavailable", "close").drain().close(1).drain()
    write("core", "two-users", two.b)
    write("core", "starttls-required",
          Ops(require_encryption=True).open().send(0, "header", "starttls").drain()
          .login(0, "alice").send(0, "session", "presence").drain().b)
    write("core", "auth-timeout",
          Ops().open().send(0, "header").drain().advance(4000).drain().advance(2000).drain().b)
    write("core", "starttls-then-timeout",
          Ops(require_encryption=True).open().send(0, "header", "starttls")
          .advance(6000).drain().send(0, "header").drain().b)
    write("core", "wrong-password",
          Ops().open().send(0, "header", "auth-wrong").drain().send(0, "auth-wrong", "auth-scram")
          .drain().send(0, "abort", "auth-alice").drain().b)
    flood = Ops().open().open().login(0, "alice").login(1, "bob").send(1, "presence")
    for _ in range(100):
        flood.send(0, "msg-bob")
    write("core", "slow-reader-overflow", flood.drain().b)
    write("core", "conflict-and-stale-handles",
          Ops().open().open().open().login(0, "alice").login(1, "alice").login(2, "alice")
          .close(0).send(0, "ping").take(0).open().open().send(4, "header").drain()
          .shutdown().open().drain().b)
    split = Ops().open(tls=True, cb=True)
    for name in ("header", "auth-alice", "header", "bind", "presence"):
        split.split(0, name, 9).drain()
    write("core", "direct-tls-split", split.commit().drain().b)
    raw = Ops().open()
    for s in literals("tests/c2s_transcripts.rs", lambda s: s.startswith("<") and len(s) > 8):
        raw.bytes(0, s)
    write("core", "raw-transcripts", raw.drain().b)
    write("core", "prefixed-stanza",
          Ops().open().open().login(0, "alice").login(1, "bob").send(1, "presence")
          .send(0, "msg-prefixed").drain().b)
    write("core", "keepalives-and-close",
          Ops().open().login(0, "alice").send(0, "keepalive", "keepalive", "close").drain().b)


def main():
    if SEEDS.exists():
        shutil.rmtree(SEEDS)
    gen_framer()
    gen_jid()
    gen_scram()
    gen_config()
    gen_core()
    for d in sorted(SEEDS.iterdir()):
        files = list(d.iterdir())
        size = sum(f.stat().st_size for f in files)
        digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(files))).hexdigest()[:12]
        print(f"{d.name:8} {len(files):4} files {size:7} bytes  {digest}")


if __name__ == "__main__":
    main()
