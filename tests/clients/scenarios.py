#!/usr/bin/env python3
"""Client-side XMPP scenarios for xmppd's integration tests, driven by slixmpp.

Each scenario logs in real clients over TCP, exercises one area of RFC 6120 /
RFC 6121 / a few XEPs, and asserts what it observes. Every observation is
printed as one JSON line on stdout; on failure the reason is printed on stderr
together with the client library's XML transcript, and the exit code is 1
(2 for usage errors). Nothing waits without a timeout.

    scenarios.py SCENARIO --host 127.0.0.1 --port N --domain localhost \\
        --tls {starttls,direct,none} [--cafile PEM | --insecure] \\
        [--mechanism PLAIN|SCRAM-SHA-1|SCRAM-SHA-256|SCRAM-SHA-1-PLUS|...] \\
        --user alice:secret [--user bob:secret ...]

Scenarios and the users they take (in --user order):
    login               1  bind, own initial presence echoed, clean close
    wrong-password      1  SASL <not-authorized/> (bad password, unknown user)
    roster              1  add/update/remove, pushes at two resources, ver
    subscribe           2  subscription dance to 'both', presence on/off
    messages            2  full/bare JID routing by priority, errors, from
    conflict            1  same full JID twice: first gets <conflict/>
    disco-ping-version  1  XEP-0030 info, XEP-0199 ping, XEP-0092 version
    roster-setup        2-3  known roster state (3rd user: pending, offline)
    roster-check        2-3  the same state, e.g. after a server restart

Scenarios expect fresh accounts (empty rosters) except roster-check, which
expects exactly what roster-setup left.
"""

from __future__ import annotations

import argparse
import importlib
import asyncio
import json
import logging
import ssl
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional
from xml.sax.saxutils import escape, quoteattr

try:
    import slixmpp
    from slixmpp import ClientXMPP, JID
    from slixmpp.exceptions import IqError, IqTimeout
    from slixmpp.xmlstream import ET
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
except ImportError as exc:  # pragma: no cover - environment problem
    print(f"scenarios.py: cannot import slixmpp ({exc}); run tests/clients/setup.sh "
          "and use the python it prints", file=sys.stderr)
    sys.exit(2)

NS_CLIENT = "jabber:client"
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_ROSTER = "jabber:iq:roster"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_ROSTERVER = "urn:xmpp:features:rosterver"
NS_PING = "urn:xmpp:ping"
NS_VERSION = "jabber:iq:version"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"

# The marker body that `sync` sends; see Client.sync.
MARKER_PREFIX = "sync-marker-"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class ScenarioFailed(Exception):
    """An explicit assertion about the server's behaviour did not hold."""


# --------------------------------------------------------------------------
# Observations and assertions
# --------------------------------------------------------------------------

class Observer:
    """Prints one JSON object per observation, so a failing run can be read."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.started = time.monotonic()

    def __call__(self, event: str, **fields: Any) -> None:
        record = {
            "t": round(time.monotonic() - self.started, 3),
            "scenario": self.scenario,
            "event": event,
        }
        record.update(fields)
        print(json.dumps(record, default=str, sort_keys=False), flush=True)


def expect(condition: bool, message: str, **context: Any) -> None:
    if not condition:
        if context:
            message = f"{message} | " + json.dumps(context, default=str)
        raise ScenarioFailed(message)


def expect_equal(actual: Any, wanted: Any, message: str, **context: Any) -> None:
    expect(actual == wanted, f"{message}: expected {wanted!r}, got {actual!r}", **context)


# --------------------------------------------------------------------------
# Stanza inspection (raw XML, so the assertions do not depend on how slixmpp
# interprets a stanza)
# --------------------------------------------------------------------------

def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def child_text(xml: ET.Element, name: str) -> Optional[str]:
    el = xml.find(f"{{{NS_CLIENT}}}{name}")
    return None if el is None else (el.text or "")


def stanza_error_condition(xml: ET.Element) -> Optional[str]:
    error = xml.find(f"{{{NS_CLIENT}}}error")
    if error is None:
        return None
    for child in error:
        if child.tag.startswith(f"{{{NS_STANZAS}}}") and local_name(child.tag) != "text":
            return local_name(child.tag)
    return "(no defined condition)"


def summarize(xml: ET.Element) -> dict:
    """The parts of a stanza the scenarios assert on, for the JSON log."""
    out: dict[str, Any] = {"kind": local_name(xml.tag)}
    for attr in ("type", "from", "to", "id"):
        if xml.get(attr) is not None:
            out[attr] = xml.get(attr)
    for name in ("body", "show", "status", "priority"):
        text = child_text(xml, name)
        if text is not None:
            out[name] = text
    condition = stanza_error_condition(xml)
    if condition:
        out["error"] = condition
    query = xml.find(f"{{{NS_ROSTER}}}query")
    if query is not None:
        out["roster"] = {
            "ver": query.get("ver"),
            "items": [item.as_dict() for item in parse_roster_items(query)],
        }
    return out


@dataclass(frozen=True)
class RosterItem:
    jid: str
    name: Optional[str]
    subscription: Optional[str]  # as sent: None when the attribute is absent
    ask: Optional[str]
    groups: tuple[str, ...]

    @property
    def effective_subscription(self) -> str:
        # RFC 6121 §2.1.2.5: an absent 'subscription' means "none".
        return self.subscription or "none"

    def as_dict(self) -> dict:
        return {
            "jid": self.jid,
            "name": self.name,
            "subscription": self.subscription,
            "ask": self.ask,
            "groups": list(self.groups),
        }


def parse_roster_items(query: ET.Element) -> list[RosterItem]:
    items = []
    for item in query.findall(f"{{{NS_ROSTER}}}item"):
        groups = tuple(sorted((g.text or "") for g in item.findall(f"{{{NS_ROSTER}}}group")))
        items.append(RosterItem(
            jid=item.get("jid", ""),
            name=item.get("name"),
            subscription=item.get("subscription"),
            ask=item.get("ask"),
            groups=groups,
        ))
    return items


@dataclass
class Roster:
    ver: Optional[str]
    items: dict[str, RosterItem]
    # False when the server answered a versioned get with an empty result
    # (RFC 6121 §2.6.3: "no changes since that version").
    full: bool = True


# --------------------------------------------------------------------------
# The client wrapper
# --------------------------------------------------------------------------

@dataclass
class Account:
    user: str
    password: str
    domain: str

    @property
    def bare(self) -> str:
        return f"{self.user}@{self.domain}"


@dataclass
class Received:
    kind: str  # "message", "presence", "roster-push"
    xml: ET.Element
    consumed: bool = False


@dataclass
class LoginOutcome:
    ok: bool
    reason: str = ""
    sasl_conditions: list[str] = field(default_factory=list)


class Client:
    """One XMPP session: a slixmpp ClientXMPP plus an inbox the scenario reads."""

    def __init__(self, ctx: "Context", account: Account, resource: str,
                 password: Optional[str] = None) -> None:
        self.ctx = ctx
        self.account = account
        self.requested = f"{account.bare}/{resource}"
        self.label = self.requested
        args = ctx.args
        password = account.password if password is None else password

        mech_config: dict[str, Any] = {
            # Plain-TCP test servers offer PLAIN/SCRAM without TLS; allow them.
            "unencrypted_plain": True,
            "unencrypted_scram": True,
        }
        if args.mechanism:
            mech_config["use_mech"] = args.mechanism
        self.xmpp = ClientXMPP(self.requested, password, plugin_config={
            "feature_mechanisms": mech_config,
        })
        self.xmpp.register_plugin("xep_0030")
        self.xmpp.register_plugin("xep_0092")
        self.xmpp.register_plugin("xep_0199", {"keepalive": False})
        # No automatic subscription handling: the scenarios answer by hand.
        self.xmpp.auto_authorize = None
        self.xmpp.auto_subscribe = False
        self.xmpp.whitespace_keepalive = False

        self.xmpp.enable_starttls = args.tls == "starttls"
        self.xmpp.enable_direct_tls = args.tls == "direct"
        self.xmpp.enable_plaintext = args.tls == "none"
        self.xmpp.ssl_context = ctx.ssl_context

        self.inbox: list[Received] = []
        self.arrived = asyncio.Event()
        self.features: list[ET.Element] = []
        self.stream_errors: list[str] = []
        self.sasl_failures: list[str] = []
        self.challenges = 0
        self.login_done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()
        self.disconnect_reason: Any = None
        self.connected_ever = False
        self._install_handlers()

    # -- wiring -------------------------------------------------------------

    def _install_handlers(self) -> None:
        x = self.xmpp
        x.register_handler(Callback(
            "scenario messages", MatchXPath(f"{{{NS_CLIENT}}}message"),
            lambda st: self._receive("message", st)))
        x.register_handler(Callback(
            "scenario presence", MatchXPath(f"{{{NS_CLIENT}}}presence"),
            lambda st: self._receive("presence", st)))
        x.register_handler(Callback(
            "scenario roster push", MatchXPath(f"{{{NS_CLIENT}}}iq/{{{NS_ROSTER}}}query"),
            self._receive_roster_iq))
        x.register_handler(Callback(
            "scenario iq errors", MatchXPath(f"{{{NS_CLIENT}}}iq"),
            self._watch_setup_errors, instream=True))
        x.register_handler(Callback(
            "scenario features", MatchXPath(f"{{{NS_STREAMS}}}features"),
            self._receive_features, instream=True))
        x.register_handler(Callback(
            "scenario sasl challenge", MatchXPath(f"{{{NS_SASL}}}challenge"),
            self._count_challenge, instream=True))
        x.add_event_handler("session_start", self._on_session_start)
        x.add_event_handler("failed_auth", self._on_failed_auth)
        x.add_event_handler("failed_all_auth", self._on_failed_all_auth)
        x.add_event_handler("stream_error", self._on_stream_error)
        x.add_event_handler("connection_failed", self._on_connection_failed)
        x.add_event_handler("ssl_invalid_chain", self._on_invalid_chain)
        x.add_event_handler("connected", self._on_connected)
        x.add_event_handler("disconnected", self._on_disconnected)

    def _obs(self, event: str, **fields: Any) -> None:
        self.ctx.obs(event, client=self.label, **fields)

    def _receive(self, kind: str, stanza: Any) -> None:
        xml = stanza.xml
        self.inbox.append(Received(kind, xml))
        self._obs(f"recv-{kind}", stanza=summarize(xml))
        self.arrived.set()

    def _receive_roster_iq(self, stanza: Any) -> None:
        # Only type='set' is a push (RFC 6121 §2.1.6); results of our own gets
        # are read from the iq's reply.
        if stanza.xml.get("type") == "set":
            self._receive("roster-push", stanza)

    def _receive_features(self, stanza: Any) -> None:
        self.features.append(stanza.xml)
        names = [local_name(child.tag) for child in stanza.xml]
        mechs = [m.text for m in stanza.xml.iter(f"{{{NS_SASL}}}mechanism")]
        self._obs("stream-features", features=names, mechanisms=mechs)

    def _watch_setup_errors(self, stanza: Any) -> None:
        # Before the session starts, the only iqs are resource binding and the
        # legacy session request; an error there would otherwise be a timeout.
        if stanza.xml.get("type") == "error" and not self.login_done.done():
            condition = stanza_error_condition(stanza.xml)
            self._obs("session-setup-error", condition=condition, xml=str(stanza))
            self._finish_login(LoginOutcome(
                False, f"resource binding / session setup failed: <{condition}/>"))

    def _count_challenge(self, _stanza: Any) -> None:
        self.challenges += 1

    def _finish_login(self, outcome: LoginOutcome) -> None:
        if not self.login_done.done():
            self.login_done.set_result(outcome)

    def _on_connected(self, _event: Any) -> None:
        self.connected_ever = True

    def _on_session_start(self, _event: Any) -> None:
        self._finish_login(LoginOutcome(True))

    def _on_failed_auth(self, failure: Any) -> None:
        condition = failure["condition"]
        self.sasl_failures.append(condition)
        self._obs("sasl-failure", condition=condition, text=failure["text"],
                  challenges_before_failure=self.challenges)

    def _on_failed_all_auth(self, _event: Any) -> None:
        offered = sorted(self.xmpp.plugin["feature_mechanisms"].mech_list)
        if self.sasl_failures:
            reason = f"SASL failed: {self.sasl_failures}"
        elif self.ctx.args.mechanism and self.ctx.args.mechanism not in offered:
            reason = (f"the server does not offer SASL {self.ctx.args.mechanism} "
                      f"(offered: {offered})")
        else:
            reason = (f"slixmpp could not use any of {offered} (forced: "
                      f"{self.ctx.args.mechanism}); -PLUS needs tls-unique, i.e. "
                      "--tls-max-version 1.2: Python's ssl has no tls-exporter")
        self._finish_login(LoginOutcome(False, reason, list(self.sasl_failures)))

    def _on_stream_error(self, error: Any) -> None:
        condition = error["condition"]
        self.stream_errors.append(condition)
        self._obs("stream-error", condition=condition, text=error["text"])
        self._finish_login(LoginOutcome(False, f"stream error <{condition}/>"))

    def _on_connection_failed(self, error: Any) -> None:
        self._obs("connection-failed", error=str(error))
        # Stop slixmpp's reconnect loop: a test must fail, not retry forever.
        self.xmpp.cancel_connection_attempt()
        self._finish_login(LoginOutcome(False, f"connection failed: {error}"))

    def _on_invalid_chain(self, error: Any) -> None:
        self._obs("tls-invalid-chain", error=str(error))
        self._finish_login(LoginOutcome(False, f"TLS certificate rejected: {error}"))
        self.xmpp.abort()

    def _on_disconnected(self, reason: Any) -> None:
        self.disconnect_reason = reason
        self._obs("disconnected", reason=reason)
        self._finish_login(LoginOutcome(
            False, f"disconnected before the session started ({reason})",
            list(self.sasl_failures)))
        if not self.closed.done():
            self.closed.set_result(reason)

    # -- session ------------------------------------------------------------

    async def start(self) -> LoginOutcome:
        """Connect and authenticate; returns how the attempt ended."""
        args = self.ctx.args
        self.xmpp.connect(host=args.host, port=args.port)
        try:
            outcome = await asyncio.wait_for(asyncio.shield(self.login_done), args.step_timeout)
        except asyncio.TimeoutError:
            self.xmpp.cancel_connection_attempt()
            outcome = LoginOutcome(False, f"no session within {args.step_timeout}s")
        return outcome

    async def login(self, presence: bool = True, priority: Optional[int] = None,
                    show: Optional[str] = None, status: Optional[str] = None) -> None:
        """Log in, check the bound JID and the channel, optionally go online."""
        outcome = await self.start()
        expect(outcome.ok, f"{self.requested}: login failed: {outcome.reason}")
        self.check_session()
        if presence:
            await self.send_presence(priority=priority, show=show, status=status)

    def check_session(self) -> None:
        bound = str(self.xmpp.boundjid)
        self.label = bound
        tls = self.tls_info()
        mech = self.xmpp.plugin["feature_mechanisms"].mech
        self._obs("session-started", bound=bound, tls=tls,
                  mechanism=None if mech is None else mech.name)
        # RFC 6120 §7.7.2.1 lets a server override the requested resource;
        # these tests expect a server that honours it (as Prosody does).
        expect_equal(bound, self.requested, "bound JID (RFC 6120 §7.6.1)")
        if self.ctx.args.mechanism:
            expect_equal(None if mech is None else mech.name, self.ctx.args.mechanism,
                         "SASL mechanism used")
        mode = self.ctx.args.tls
        if mode == "none":
            expect(tls is None, "plain TCP was requested but the stream is encrypted")
        else:
            expect(tls is not None, f"--tls {mode} but the session is not encrypted "
                   "(did the server offer STARTTLS?)")

    def tls_info(self) -> Optional[dict]:
        sock = self.xmpp.socket
        if isinstance(sock, (ssl.SSLObject, ssl.SSLSocket)):
            return {"version": sock.version(), "cipher": sock.cipher()[0]}
        return None

    @property
    def full(self) -> str:
        return str(self.xmpp.boundjid)

    def supports_roster_versioning(self) -> bool:
        # RFC 6121 §2.6.1: advertised as a stream feature after authentication.
        return any(f.find(f"{{{NS_ROSTERVER}}}ver") is not None for f in self.features)

    async def send_presence(self, priority: Optional[int] = None, show: Optional[str] = None,
                            status: Optional[str] = None, wait_echo: bool = True) -> None:
        """Send available presence and wait until the server reflects it back.

        RFC 6121 §4.2.2 / §4.4.2: the server broadcasts a resource's presence to
        all of the user's available resources, including the one that sent it.
        Waiting for that echo also guarantees the server has processed it before
        the scenario relies on it (e.g. for routing by priority).
        """
        children = ""
        if show is not None:
            children += f"<show>{escape(show)}</show>"
        if status is not None:
            children += f"<status>{escape(status)}</status>"
        if priority is not None:
            children += f"<priority>{priority}</priority>"
        self.send_raw(f"<presence>{children}</presence>")
        if wait_echo:
            echo = await self.wait_for(
                "presence",
                lambda x: x.get("from") == self.full and x.get("type") is None
                and child_text(x, "priority") == (None if priority is None else str(priority))
                and child_text(x, "show") == show,
                "own presence echoed back (RFC 6121 §4.2.2/§4.4.2)")
            expect_equal(child_text(echo, "status"), status, "status in own presence echo")

    def send_raw(self, xml: str) -> None:
        self._obs("send", xml=xml)
        self.xmpp.send_raw(xml)

    async def close(self, expect_clean: bool = True) -> None:
        """Send </stream:stream> and wait for the server to close its stream."""
        if self.closed.done():
            return
        timeout = self.ctx.args.step_timeout
        self.xmpp.disconnect(wait=timeout)
        try:
            reason = await asyncio.wait_for(asyncio.shield(self.closed), timeout + 1)
        except asyncio.TimeoutError:
            self.xmpp.abort()
            raise ScenarioFailed(f"{self.label}: connection not closed within {timeout}s")
        if expect_clean:
            # slixmpp reports "End of stream" only when it read the server's
            # </stream:stream> (RFC 6120 §4.4); a bare TCP close gives None.
            expect_equal(reason, "End of stream",
                         f"{self.label}: server closes its stream with </stream:stream>")

    def abort(self) -> None:
        if self.xmpp.transport is not None:
            self.xmpp.abort()
        self.xmpp.cancel_connection_attempt()

    # -- inbox ----------------------------------------------------------------

    async def wait_for(self, kind: str, predicate: Callable[[ET.Element], bool],
                       what: str, timeout: Optional[float] = None) -> ET.Element:
        """The first unread stanza of this kind matching predicate (marks it read)."""
        timeout = self.ctx.args.step_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            for item in self.inbox:
                if not item.consumed and item.kind == kind and predicate(item.xml):
                    item.consumed = True
                    return item.xml
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed.done():
                unread = [summarize(i.xml) for i in self.inbox
                          if not i.consumed and i.kind == kind]
                state = "connection closed" if self.closed.done() else f"{timeout}s passed"
                raise ScenarioFailed(
                    f"{self.label}: waiting for {kind}: {what}: {state}; "
                    f"unread {kind} stanzas: {json.dumps(unread, default=str)}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), min(remaining, 0.5))
            except asyncio.TimeoutError:
                pass

    def unread(self, kind: str, predicate: Callable[[ET.Element], bool]) -> list[ET.Element]:
        return [i.xml for i in self.inbox
                if not i.consumed and i.kind == kind and predicate(i.xml)]

    def take_unread(self, kind: str, predicate: Callable[[ET.Element], bool]) -> list[ET.Element]:
        found = []
        for item in self.inbox:
            if not item.consumed and item.kind == kind and predicate(item.xml):
                item.consumed = True
                found.append(item.xml)
        return found

    async def sync(self, receiver: "Client") -> None:
        """Make sure everything this client sent earlier to `receiver` has arrived.

        Sends a marker message to the receiver's full JID and waits for it.
        RFC 6120 §10.1 (in-order processing) means any earlier stanza from this
        session to that receiver was delivered before the marker, so after this
        returns, "not in the receiver's inbox" means "not delivered".
        """
        marker = MARKER_PREFIX + uuid.uuid4().hex[:8]
        self.send_raw(f"<message to={quoteattr(receiver.full)} type='chat' "
                      f"id={quoteattr(marker)}><body>{marker}</body></message>")
        await receiver.wait_for("message", lambda x: child_text(x, "body") == marker,
                                f"sync marker from {self.full}")

    # -- iq helpers -------------------------------------------------------------

    async def iq(self, iq_type: str, payload: ET.Element, to: Optional[str] = None) -> ET.Element:
        """Send an iq and return the raw reply (result or error)."""
        iq = self.xmpp.Iq()
        iq["type"] = iq_type
        if to is not None:
            iq["to"] = to
        iq.append(payload)
        self._obs("send-iq", xml=str(iq))
        try:
            reply = await iq.send(timeout=self.ctx.args.step_timeout)
        except IqError as err:
            reply = err.iq
        except IqTimeout:
            raise ScenarioFailed(f"{self.label}: no reply within "
                                 f"{self.ctx.args.step_timeout}s to {iq}")
        self._obs("recv-iq", stanza=summarize(reply.xml), xml=str(reply))
        return reply.xml

    async def get_roster(self, ver: Optional[str] = None) -> Roster:
        """Roster get (RFC 6121 §2.1.3); `ver` asks for a versioned reply (§2.6.2)."""
        query = ET.Element(f"{{{NS_ROSTER}}}query")
        if ver is not None:
            query.set("ver", ver)
        reply = await self.iq("get", query)
        expect_equal(reply.get("type"), "result", f"{self.label}: roster get reply type",
                     reply=summarize(reply))
        result = reply.find(f"{{{NS_ROSTER}}}query")
        if result is None:
            # Allowed only as the answer to a versioned get (RFC 6121 §2.6.3).
            expect(ver is not None, f"{self.label}: roster result without <query/>")
            return Roster(ver=None, items={}, full=False)
        items = parse_roster_items(result)
        return Roster(ver=result.get("ver"), items={i.jid: i for i in items})

    async def set_roster_item(self, jid: str, name: Optional[str] = None,
                              groups: tuple[str, ...] = (), remove: bool = False) -> ET.Element:
        query = ET.Element(f"{{{NS_ROSTER}}}query")
        item = ET.SubElement(query, f"{{{NS_ROSTER}}}item", {"jid": jid})
        if remove:
            item.set("subscription", "remove")
        if name is not None:
            item.set("name", name)
        for group in groups:
            ET.SubElement(item, f"{{{NS_ROSTER}}}group").text = group
        return await self.iq("set", query)


# --------------------------------------------------------------------------
# Context: parsed arguments, TLS settings, client bookkeeping
# --------------------------------------------------------------------------

class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.obs = Observer(args.scenario)
        self.accounts = [Account(u, p, args.domain) for u, p in args.user]
        self.ssl_context = make_ssl_context(args)
        self.clients: list[Client] = []

    def account(self, index: int) -> Account:
        if index >= len(self.accounts):
            raise ScenarioFailed(f"scenario {self.args.scenario} needs at least "
                                 f"{index + 1} --user arguments")
        return self.accounts[index]

    def client(self, account: Account, resource: str, password: Optional[str] = None) -> Client:
        client = Client(self, account, resource, password)
        self.clients.append(client)
        return client

    def abort_all(self) -> None:
        for client in self.clients:
            try:
                client.abort()
            except Exception:  # best effort at teardown
                pass


def make_ssl_context(args: argparse.Namespace) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if args.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif args.cafile:
        ctx = ssl.create_default_context(cafile=args.cafile)
        # slixmpp passes the domain as server_hostname, so hostname = domain.
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        # The test servers use one self-signed end-entity certificate as their
        # own trust anchor; Python >= 3.13 turns on strict X.509 checks that
        # demand CA-style extensions such a certificate need not have.
        strict = getattr(ssl, "VERIFY_X509_STRICT", 0)
        ctx.verify_flags &= ~strict
        ctx.verify_flags |= getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
    if args.tls_max_version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# --------------------------------------------------------------------------
# Shared scenario steps
# --------------------------------------------------------------------------

def sole_push_item(client: Client, push: ET.Element) -> RosterItem:
    """Validate a roster push's envelope and return its one item."""
    sender = push.get("from")
    # RFC 6121 §2.1.6: a push comes from the account's bare JID (or has no
    # 'from'); anything else must be ignored by the client as a spoof.
    expect(sender is None or sender == client.account.bare,
           f"{client.label}: roster push 'from' must be absent or the bare JID",
           push=summarize(push))
    query = push.find(f"{{{NS_ROSTER}}}query")
    items = parse_roster_items(query)
    expect_equal(len(items), 1, f"{client.label}: items in a roster push (RFC 6121 §2.1.6)",
                 push=summarize(push))
    if client.supports_roster_versioning():
        expect(bool(query.get("ver")),
               f"{client.label}: server advertises roster versioning, so pushes carry "
               "'ver' (RFC 6121 §2.6.3)", push=summarize(push))
    return items[0]


async def expect_push(client: Client, jid: str, subscription: str, ask: Optional[str],
                      step: str, name: Any = ..., groups: Any = ...) -> RosterItem:
    push = await client.wait_for(
        "roster-push",
        lambda x: any(i.jid == jid for i in parse_roster_items(x.find(f"{{{NS_ROSTER}}}query"))),
        f"roster push for {jid} ({step})")
    item = sole_push_item(client, push)
    client.ctx.obs("roster-push-checked", client=client.label, step=step, item=item.as_dict(),
                   ver=push.find(f"{{{NS_ROSTER}}}query").get("ver"))
    if subscription == "remove":
        expect_equal(item.subscription, "remove", f"{client.label}: {step}: subscription")
    else:
        expect_equal(item.effective_subscription, subscription,
                     f"{client.label}: {step}: subscription")
    expect_equal(item.ask, ask, f"{client.label}: {step}: ask")
    if name is not ...:
        expect_equal(item.name, name, f"{client.label}: {step}: name")
    if groups is not ...:
        expect_equal(item.groups, tuple(sorted(groups)), f"{client.label}: {step}: groups")
    return item


def presence_from(jid: str, ptype: Optional[str], show: Any = ...,
                  status: Any = ...) -> Callable[[ET.Element], bool]:
    """Matches presence from exactly `jid` of this type (and show/status if given)."""
    def matches(x: ET.Element) -> bool:
        return (x.get("from") == jid and x.get("type") == ptype
                and (show is ... or child_text(x, "show") == show)
                and (status is ... or child_text(x, "status") == status))
    return matches


async def expect_subscription_presence(client: Client, from_bare: str, ptype: str,
                                       step: str) -> None:
    pres = await client.wait_for("presence", presence_from(from_bare, ptype),
                                 f"presence type={ptype} from {from_bare} ({step})")
    # RFC 6121 §3.1.2/§3.1.5: subscription stanzas are stamped with the
    # sender's bare JID; the full-JID check is implied by the match above.
    client.ctx.obs("subscription-presence", client=client.label, step=step,
                   stanza=summarize(pres))


async def assert_empty_roster(client: Client) -> Roster:
    roster = await client.get_roster(ver="" if client.supports_roster_versioning() else None)
    expect(roster.full, f"{client.label}: a get with ver='' must return the full roster")
    expect(not roster.items, f"{client.label}: scenario expects a fresh account with an "
           "empty roster", items=[i.as_dict() for i in roster.items.values()])
    return roster


async def subscription_dance(alice: Client, bob: Client,
                             alice_item_known: Optional[tuple[Optional[str], tuple[str, ...]]] = None
                             ) -> None:
    """Two-way subscription between alice and bob, checking each step (RFC 6121 §3).

    Both must be online and interested (have fetched their roster).
    `alice_item_known` is (name, groups) if alice already has bob in her roster.
    """
    a, b = alice.account.bare, bob.account.bare
    name, groups = alice_item_known if alice_item_known else (None, ())

    # 1. alice -> bob: subscribe. §3.1.2: alice's item becomes none + ask.
    alice.send_raw(f"<presence to={quoteattr(b)} type='subscribe'/>")
    await expect_push(alice, b, "none", "subscribe", "alice requested subscription",
                      name=name, groups=groups)
    # §3.1.3: bob is online, so the request is delivered, from alice's bare JID.
    await expect_subscription_presence(bob, a, "subscribe", "request reaches bob")

    # 2. bob approves. §3.1.5: bob's item for alice becomes 'from'; alice gets
    # the approval and bob's current presence; §3.1.6: alice's item -> 'to'.
    bob.send_raw(f"<presence to={quoteattr(a)} type='subscribed'/>")
    await expect_push(bob, a, "from", None, "bob approved")
    await expect_subscription_presence(alice, b, "subscribed", "approval reaches alice")
    await expect_push(alice, b, "to", None, "alice learns of approval", name=name, groups=groups)
    await alice.wait_for("presence", presence_from(bob.full, None),
                         "bob's available presence after approval (RFC 6121 §3.1.5)")

    # 3. bob -> alice: subscribe. bob's item: from + ask.
    bob.send_raw(f"<presence to={quoteattr(a)} type='subscribe'/>")
    await expect_push(bob, a, "from", "subscribe", "bob requested subscription")
    await expect_subscription_presence(alice, b, "subscribe", "request reaches alice")

    # 4. alice approves: both items end as 'both'.
    alice.send_raw(f"<presence to={quoteattr(b)} type='subscribed'/>")
    await expect_push(alice, b, "both", None, "alice approved", name=name, groups=groups)
    await expect_subscription_presence(bob, a, "subscribed", "approval reaches bob")
    await expect_push(bob, a, "both", None, "bob learns of approval")
    await bob.wait_for("presence", presence_from(alice.full, None),
                       "alice's available presence after approval (RFC 6121 §3.1.5)")

    # Pushes must not have arrived for other contacts or twice.
    for client, other in ((alice, bob), (bob, alice)):
        await other.sync(client)
        extra = client.unread("roster-push", lambda _x: True)
        expect(not extra, f"{client.label}: unexpected extra roster pushes",
               pushes=[summarize(x) for x in extra])
        # Servers may repeat the contact's presence (or send an unavailable
        # from the bare JID) while the subscription changes; RFC 6121 does not
        # forbid it. Record and drop, so later waits see only new presence.
        for extra_presence in client.take_unread(
                "presence", lambda x, o=other: JID(x.get("from", "")).bare == o.account.bare):
            client.ctx.obs("extra-presence-during-subscription", client=client.label,
                           stanza=summarize(extra_presence))


async def login_all(*clients: Client, **presence: Any) -> None:
    for client in clients:
        await client.login(**presence)


async def close_all(*clients: Client) -> None:
    for client in clients:
        await client.close()


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------

async def scenario_login(ctx: Context) -> None:
    client = ctx.client(ctx.account(0), "scenario-login")
    outcome = await client.start()
    expect(outcome.ok, f"login failed: {outcome.reason}")
    client.check_session()
    first = client.features[0] if client.features else None
    expect(first is not None, "no <stream:features/> seen")
    if ctx.args.tls == "starttls":
        expect(first.find(f"{{{NS_TLS}}}starttls") is not None,
               "first stream features must offer <starttls/> (RFC 6120 §5.3.1)")
    # RFC 6120 §7.4: after SASL the server offers resource binding.
    last = client.features[-1]
    expect(last.find("{urn:ietf:params:xml:ns:xmpp-bind}bind") is not None,
           "post-authentication features must offer <bind/>")
    await client.send_presence(priority=0, status="scenario login")
    pong = await client.iq("get", ET.Element(f"{{{NS_PING}}}ping"), to=ctx.args.domain)
    expect_equal(pong.get("type"), "result", "ping over the fresh session")
    await client.close()


async def attempt_bad_login(ctx: Context, account: Account, password: str, what: str) -> None:
    client = ctx.client(account, f"scenario-wrong-{uuid.uuid4().hex[:6]}", password=password)
    outcome = await client.start()
    expect(not outcome.ok, f"{what}: login unexpectedly succeeded")
    expect(client.sasl_failures,
           f"{what}: expected a SASL <failure/>, the attempt ended otherwise: {outcome.reason}")
    # RFC 6120 §6.5.10: wrong credentials are <not-authorized/>.
    expect_equal(client.sasl_failures[0], "not-authorized", f"{what}: SASL failure condition")
    ctx.obs("auth-rejected", case=what, condition=client.sasl_failures[0],
            challenges_before_failure=client.challenges)
    # The server may keep the stream open for a retry (RFC 6120 §6.4.5);
    # slixmpp gives up after the forced mechanism failed and closes.
    try:
        await asyncio.wait_for(asyncio.shield(client.closed), ctx.args.step_timeout)
    except asyncio.TimeoutError:
        client.abort()


async def scenario_wrong_password(ctx: Context) -> None:
    account = ctx.account(0)
    await attempt_bad_login(ctx, account, account.password + "-wrong", "wrong password")
    ghost = Account(f"nosuchuser-{uuid.uuid4().hex[:8]}", "whatever", account.domain)
    await attempt_bad_login(ctx, ghost, ghost.password, "unknown user")
    # The right password still works, so the failures above were about the
    # credentials and not a server that cannot authenticate at all.
    client = ctx.client(account, "scenario-wrong-ok")
    await client.login(presence=False)
    await client.close()


async def scenario_roster(ctx: Context) -> None:
    account = ctx.account(0)
    r1 = ctx.client(account, "roster-1")
    r2 = ctx.client(account, "roster-2")
    await login_all(r1, r2, presence=False)
    versioned = r1.supports_roster_versioning()
    ctx.obs("roster-versioning", advertised=versioned)
    # Fetching the roster makes both resources "interested" (RFC 6121 §2.1.6).
    first = await assert_empty_roster(r1)
    await assert_empty_roster(r2)
    if versioned:
        expect(first.ver is not None, "versioned get must return a 'ver' (RFC 6121 §2.6.3)")
    contact = f"carol@{ctx.args.domain}"

    # Add with a name and a group: both resources get the push (RFC 6121 §2.3).
    reply = await r1.set_roster_item(contact, name="Carol", groups=("Friends",))
    expect_equal(reply.get("type"), "result", "roster add reply", reply=summarize(reply))
    for client in (r1, r2):
        await expect_push(client, contact, "none", None, "added", name="Carol",
                          groups=("Friends",))
    # Update from the other resource.
    reply = await r2.set_roster_item(contact, name="Caroline", groups=("Friends", "Work"))
    expect_equal(reply.get("type"), "result", "roster update reply", reply=summarize(reply))
    for client in (r1, r2):
        await expect_push(client, contact, "none", None, "updated", name="Caroline",
                          groups=("Friends", "Work"))
    roster = await r1.get_roster(ver="" if versioned else None)
    expect_equal(sorted(roster.items), [contact], "roster after update")
    expect_equal(roster.items[contact].groups, ("Friends", "Work"), "groups after update")
    expect_equal(roster.items[contact].name, "Caroline", "name after update")
    if versioned:
        expect(roster.ver and roster.ver != first.ver, "'ver' changes when the roster changes",
               before=first.ver, after=roster.ver)
        again = await r2.get_roster(ver=roster.ver)
        # RFC 6121 §2.6.3: unchanged since that version -> an empty result
        # (or, also allowed, the whole roster).
        ctx.obs("versioned-get-unchanged", empty_result=not again.full,
                items=[i.as_dict() for i in again.items.values()])
        if again.full:
            expect_equal(sorted(again.items), [contact], "full roster in a versioned reply")

    # RFC 6121 §2.1.5: a set carries exactly one item, otherwise bad-request.
    query = ET.Element(f"{{{NS_ROSTER}}}query")
    ET.SubElement(query, f"{{{NS_ROSTER}}}item", {"jid": f"x1@{ctx.args.domain}"})
    ET.SubElement(query, f"{{{NS_ROSTER}}}item", {"jid": f"x2@{ctx.args.domain}"})
    reply = await r1.iq("set", query)
    expect_equal(reply.get("type"), "error", "roster set with two items")
    expect_equal(stanza_error_condition(reply), "bad-request",
                 "error condition for a roster set with two items (RFC 6121 §2.3.3)")

    # Remove: pushes with subscription='remove' to both (RFC 6121 §2.5).
    reply = await r2.set_roster_item(contact, remove=True)
    expect_equal(reply.get("type"), "result", "roster remove reply", reply=summarize(reply))
    for client in (r1, r2):
        await expect_push(client, contact, "remove", None, "removed")
    roster = await r1.get_roster(ver="" if versioned else None)
    expect(not roster.items, "roster must be empty after remove",
           items=[i.as_dict() for i in roster.items.values()])
    for client in (r1, r2):
        extra = client.unread("roster-push", lambda _x: True)
        expect(not extra, f"{client.label}: unexpected roster pushes",
               pushes=[summarize(x) for x in extra])
    await close_all(r1, r2)


async def scenario_subscribe(ctx: Context) -> None:
    alice = ctx.client(ctx.account(0), "sub-a")
    bob = ctx.client(ctx.account(1), "sub-b")
    await login_all(alice, bob, presence=False)
    await assert_empty_roster(alice)
    await assert_empty_roster(bob)
    await alice.send_presence()
    await bob.send_presence()
    # Not subscribed yet: neither sees the other's presence.
    await alice.sync(bob)
    await bob.sync(alice)
    for me, other in ((alice, bob), (bob, alice)):
        leaked = me.unread("presence", lambda x, o=other: JID(x.get("from", "")).bare == o.account.bare)
        expect(not leaked, f"{me.label}: got presence from an unsubscribed contact",
               stanzas=[summarize(x) for x in leaked])

    await subscription_dance(alice, bob)

    # Presence broadcast to subscribers (RFC 6121 §4.4.2).
    await alice.send_presence(show="away", status="alice is away")
    await bob.wait_for("presence", presence_from(alice.full, None, "away", "alice is away"),
                       "alice's away presence with show and status")
    await bob.send_presence(show="dnd", status="bob is busy")
    await alice.wait_for("presence", presence_from(bob.full, None, "dnd", "bob is busy"),
                         "bob's dnd presence with show and status")

    # Going offline: the server sends unavailable on the user's behalf (§4.5.2).
    alice_full = alice.full
    await alice.close()
    await bob.wait_for("presence", presence_from(alice_full, "unavailable"),
                       "alice's unavailable presence after she disconnected")

    # Back online: bob sees her; she gets bob's current presence by probe (§4.3).
    alice2 = ctx.client(ctx.account(0), "sub-a")
    await alice2.login(presence=False)
    roster = await alice2.get_roster()
    item = roster.items.get(bob.account.bare)
    expect(item is not None and item.effective_subscription == "both" and item.ask is None,
           "alice's roster item for bob after re-login", item=item and item.as_dict())
    await alice2.send_presence(show="chat", status="alice is back")
    await bob.wait_for("presence", presence_from(alice2.full, None, "chat", "alice is back"),
                       "alice's new session online")
    await alice2.wait_for("presence", presence_from(bob.full, None, "dnd", "bob is busy"),
                          "bob's current presence delivered to alice's new session (probe)")

    bob_full = bob.full
    await bob.close()
    await alice2.wait_for("presence", presence_from(bob_full, "unavailable"),
                          "bob's unavailable presence after he disconnected")
    await alice2.close()


def body_is(text: str) -> Callable[[ET.Element], bool]:
    return lambda x: child_text(x, "body") == text


async def deliveries(sender: Client, receivers: list[Client], body: str) -> list[Client]:
    """Which receivers got a message with this body (each receiver synced first)."""
    got = []
    for receiver in receivers:
        await sender.sync(receiver)
        found = receiver.take_unread("message", body_is(body))
        expect(len(found) <= 1, f"{receiver.label}: '{body}' delivered more than once")
        if found:
            msg = found[0]
            # RFC 6120 §8.1.2.1: the server stamps the sender's full JID.
            expect_equal(msg.get("from"), sender.full, f"{receiver.label}: 'from' of '{body}'")
            got.append(receiver)
    return got


async def scenario_messages(ctx: Context) -> None:
    alice_acc, bob_acc = ctx.account(0), ctx.account(1)
    a1 = ctx.client(alice_acc, "msg-a1")
    a2 = ctx.client(alice_acc, "msg-a2")
    b1 = ctx.client(bob_acc, "msg-b1")
    b2 = ctx.client(bob_acc, "msg-b2")
    await a1.login(priority=1)
    await a2.login(priority=0)
    await b1.login(priority=1)
    await b2.login(priority=0)
    alice_bare = alice_acc.bare
    behaviour: dict[str, str] = {}

    async def send(sender: Client, to: str, mtype: str, body: str) -> None:
        sender.send_raw(f"<message to={quoteattr(to)} type={quoteattr(mtype)} "
                        f"id={quoteattr(body)}><body>{escape(body)}</body></message>")

    # Full JID: only that resource (RFC 6121 §8.5.3.1).
    await send(b1, a2.full, "chat", "m1-full-jid")
    got = await deliveries(b1, [a1, a2], "m1-full-jid")
    expect_equal([c.label for c in got], [a2.label], "recipients of a message to a full JID")
    await send(a1, b2.full, "normal", "m1b-full-jid")
    got = await deliveries(a1, [b1, b2], "m1b-full-jid")
    expect_equal([c.label for c in got], [b2.label], "recipients of a message to a full JID")

    # Bare JID, priorities 1 and 0 (RFC 6121 §8.5.2.1.1).
    for mtype in ("chat", "normal"):
        body = f"m2-bare-{mtype}-prio-1-0"
        await send(b1, alice_bare, mtype, body)
        got = await deliveries(b1, [a1, a2], body)
        labels = [c.label for c in got]
        # Either the "most available" resource(s) -- here the priority 1 one --
        # or all non-negative resources.
        expect(labels in ([a1.label], [a1.label, a2.label]),
               f"bare-JID {mtype} with priorities 1/0 must reach the priority-1 resource "
               "(or all non-negative ones)", recipients=labels)
        behaviour[f"{mtype}-prio-1-0"] = "highest-only" if len(labels) == 1 else "all-non-negative"
    body = "m3-bare-headline"
    await send(b1, alice_bare, "headline", body)
    got = await deliveries(b1, [a1, a2], body)
    expect_equal(sorted(c.label for c in got), sorted([a1.label, a2.label]),
                 "headline to a bare JID reaches all non-negative resources")

    # Equal priorities.
    await a2.send_presence(priority=1)
    await a1.wait_for("presence", lambda x: presence_from(a2.full, None)(x)
                      and child_text(x, "priority") == "1", "a2's new priority at a1")
    for mtype in ("chat", "normal"):
        body = f"m4-bare-{mtype}-prio-1-1"
        await send(b1, alice_bare, mtype, body)
        got = await deliveries(b1, [a1, a2], body)
        expect(len(got) >= 1, f"bare-JID {mtype} with equal priorities reached nobody")
        behaviour[f"{mtype}-prio-1-1"] = "one-of-highest" if len(got) == 1 else "all-highest"
    ctx.obs("bare-jid-routing", behaviour=behaviour)

    # Unknown user: service-unavailable (RFC 6121 §8.5.1 allows silence too;
    # xmppd is expected to answer).
    ghost = f"nosuchuser-{uuid.uuid4().hex[:6]}@{ctx.args.domain}"
    await send(b1, ghost, "chat", "m5-unknown-user")
    err = await b1.wait_for("message", lambda x: x.get("id") == "m5-unknown-user",
                            "error reply for a message to an unknown user")
    expect_equal(err.get("type"), "error", "reply type for a message to an unknown user")
    expect_equal(stanza_error_condition(err), "service-unavailable",
                 "error condition for a message to an unknown user")
    expect_equal(err.get("from"), ghost, "error comes from the unknown address")

    # Spoofed 'from': the server stamps the real full JID (RFC 6120 §8.1.2.1).
    spoof = f"mallory@{ctx.args.domain}/evil"
    b1.send_raw(f"<message from={quoteattr(spoof)} to={quoteattr(a1.full)} type='chat' "
                "id='m6-spoof'><body>m6-spoofed-from</body></message>")
    msg = await a1.wait_for("message", body_is("m6-spoofed-from"), "message with a spoofed from")
    expect_equal(msg.get("from"), b1.full, "'from' of a message sent with a fake 'from'")
    expect(not b1.stream_errors, "sender was disconnected for a fake 'from'",
           errors=b1.stream_errors)

    for client in (a1, a2, b1, b2):
        stray = client.unread("message", lambda x: not (child_text(x, "body") or "")
                              .startswith(MARKER_PREFIX))
        expect(not stray, f"{client.label}: unexpected messages",
               messages=[summarize(x) for x in stray])
    await close_all(a1, a2, b1, b2)


async def scenario_conflict(ctx: Context) -> None:
    account = ctx.account(0)
    first = ctx.client(account, "conflict")
    await first.login()
    second = ctx.client(account, "conflict")
    await second.login()
    # RFC 6120 §7.7.2.2: the server may terminate the older session with a
    # <conflict/> stream error (the policy these tests expect).
    try:
        await asyncio.wait_for(asyncio.shield(first.closed), ctx.args.step_timeout)
    except asyncio.TimeoutError:
        raise ScenarioFailed("first session still open after a second login with the same "
                             "full JID", first_stream_errors=first.stream_errors)
    expect_equal(first.stream_errors, ["conflict"], "stream errors at the first session")
    expect(not second.stream_errors, "second session got a stream error",
           errors=second.stream_errors)
    pong = await second.iq("get", ET.Element(f"{{{NS_PING}}}ping"), to=ctx.args.domain)
    expect_equal(pong.get("type"), "result", "ping from the surviving session")
    await second.close()


async def scenario_disco_ping_version(ctx: Context) -> None:
    client = ctx.client(ctx.account(0), "disco")
    await client.login()
    domain = ctx.args.domain
    timeout = ctx.args.step_timeout

    try:
        info = await client.xmpp.plugin["xep_0030"].get_info(jid=domain, timeout=timeout)
    except (IqError, IqTimeout) as err:
        raise ScenarioFailed(f"disco#info to {domain} failed: {err!r}")
    identities = {(i[0], i[1]) for i in info["disco_info"]["identities"]}
    features = set(info["disco_info"]["features"])
    ctx.obs("server-disco-info", identities=sorted(identities), features=sorted(features))
    # XEP-0030 §3.1 / registry: a server identifies as server/im.
    expect(("server", "im") in identities, "server disco#info identity server/im",
           identities=sorted(identities))
    for feature in (NS_DISCO_INFO, NS_PING, NS_VERSION):
        expect(feature in features, f"server disco#info lists {feature}",
               features=sorted(features))

    bare = client.account.bare
    try:
        info = await client.xmpp.plugin["xep_0030"].get_info(jid=bare, timeout=timeout)
    except (IqError, IqTimeout) as err:
        raise ScenarioFailed(f"disco#info to own bare JID {bare} failed: {err!r}")
    identities = {(i[0], i[1]) for i in info["disco_info"]["identities"]}
    features = set(info["disco_info"]["features"])
    ctx.obs("account-disco-info", identities=sorted(identities), features=sorted(features))
    expect_equal(info["from"].full, bare, "disco#info reply comes from the bare JID")
    # XEP-0030 §3.1: the server replies on behalf of the account, and the
    # primary identity SHOULD be account/registered (its example lists no
    # features, so none are required here).
    expect(("account", "registered") in identities,
           "own bare JID disco#info identity account/registered", identities=sorted(identities))

    try:
        pong = await client.xmpp.plugin["xep_0199"].send_ping(jid=domain, timeout=timeout)
    except (IqError, IqTimeout) as err:
        raise ScenarioFailed(f"XEP-0199 ping to {domain} failed: {err!r}")
    expect_equal(pong["type"], "result", "ping reply type")
    expect_equal(pong["from"].full, domain, "ping reply comes from the server")
    ctx.obs("ping", reply=str(pong))

    try:
        version = await client.xmpp.plugin["xep_0092"].get_version(jid=domain, timeout=timeout)
    except (IqError, IqTimeout) as err:
        raise ScenarioFailed(f"XEP-0092 version query to {domain} failed: {err!r}")
    soft = version["software_version"]
    ctx.obs("version", name=soft["name"], version=soft["version"], os=soft["os"])
    expect(bool(soft["name"]), "XEP-0092 reply has a <name/>", reply=str(version))
    expect(bool(soft["version"]), "XEP-0092 reply has a <version/>", reply=str(version))
    await client.close()


# roster-setup / roster-check: a known state that must survive a restart.

SETUP_FRIEND_NAME = "Bob"
SETUP_FRIEND_GROUPS = ("Friends",)
SETUP_PLAIN_CONTACT = "dave"
SETUP_PLAIN_NAME = "Dave"
SETUP_PLAIN_GROUPS = ("Friends", "Work")


def expected_rosters(ctx: Context) -> dict[str, dict[str, RosterItem]]:
    alice, bob = ctx.account(0), ctx.account(1)
    domain = ctx.args.domain
    alice_items = {
        bob.bare: RosterItem(bob.bare, SETUP_FRIEND_NAME, "both", None, SETUP_FRIEND_GROUPS),
        f"{SETUP_PLAIN_CONTACT}@{domain}": RosterItem(
            f"{SETUP_PLAIN_CONTACT}@{domain}", SETUP_PLAIN_NAME, "none", None,
            tuple(sorted(SETUP_PLAIN_GROUPS))),
    }
    if len(ctx.accounts) >= 3:
        carol = ctx.account(2)
        alice_items[carol.bare] = RosterItem(carol.bare, None, "none", "subscribe", ())
    bob_items = {alice.bare: RosterItem(alice.bare, None, "both", None, ())}
    return {alice.bare: alice_items, bob.bare: bob_items}


def assert_roster_exactly(client: Client, roster: Roster, wanted: dict[str, RosterItem]) -> None:
    got = {jid: item.as_dict() for jid, item in roster.items.items()}
    # Compare with the absent-subscription default applied (RFC 6121 §2.1.2.5).
    normalized = {jid: dict(d, subscription=d["subscription"] or "none") for jid, d in got.items()}
    want = {jid: item.as_dict() for jid, item in wanted.items()}
    client.ctx.obs("roster-compare", client=client.label, got=got, want=want)
    expect(normalized == want, f"{client.label}: roster differs from the expected state",
           got=got, want=want)


async def scenario_roster_setup(ctx: Context) -> None:
    alice = ctx.client(ctx.account(0), "setup-a")
    bob = ctx.client(ctx.account(1), "setup-b")
    await login_all(alice, bob, presence=False)
    await assert_empty_roster(alice)
    await assert_empty_roster(bob)
    await alice.send_presence()
    await bob.send_presence()

    b = bob.account.bare
    reply = await alice.set_roster_item(b, name=SETUP_FRIEND_NAME, groups=SETUP_FRIEND_GROUPS)
    expect_equal(reply.get("type"), "result", "roster add of bob")
    await expect_push(alice, b, "none", None, "bob added", name=SETUP_FRIEND_NAME,
                      groups=SETUP_FRIEND_GROUPS)
    await subscription_dance(alice, bob, (SETUP_FRIEND_NAME, SETUP_FRIEND_GROUPS))

    dave = f"{SETUP_PLAIN_CONTACT}@{ctx.args.domain}"
    reply = await alice.set_roster_item(dave, name=SETUP_PLAIN_NAME, groups=SETUP_PLAIN_GROUPS)
    expect_equal(reply.get("type"), "result", "roster add of dave")
    await expect_push(alice, dave, "none", None, "dave added", name=SETUP_PLAIN_NAME,
                      groups=SETUP_PLAIN_GROUPS)

    if len(ctx.accounts) >= 3:
        # Pending-out to an existing but offline user (RFC 6121 §3.1.3: the
        # contact's server stores the request until the contact is online).
        carol = ctx.account(2).bare
        alice.send_raw(f"<presence to={quoteattr(carol)} type='subscribe'/>")
        await expect_push(alice, carol, "none", "subscribe", "carol requested (offline)")

    wanted = expected_rosters(ctx)
    assert_roster_exactly(alice, await alice.get_roster(), wanted[alice.account.bare])
    assert_roster_exactly(bob, await bob.get_roster(), wanted[bob.account.bare])
    await close_all(alice, bob)


async def scenario_roster_check(ctx: Context) -> None:
    wanted = expected_rosters(ctx)
    alice = ctx.client(ctx.account(0), "check-a")
    await alice.login(presence=False)
    assert_roster_exactly(alice, await alice.get_roster(), wanted[alice.account.bare])
    await alice.send_presence(status="alice after restart")

    bob = ctx.client(ctx.account(1), "check-b")
    await bob.login(presence=False)
    assert_roster_exactly(bob, await bob.get_roster(), wanted[bob.account.bare])
    await bob.send_presence(status="bob after restart")
    # The subscription survived: presence flows both ways (RFC 6121 §4.2).
    await alice.wait_for("presence",
                         presence_from(bob.full, None, status="bob after restart"),
                         "bob's presence at alice (subscription 'both' persisted)")
    await bob.wait_for("presence",
                       presence_from(alice.full, None, status="alice after restart"),
                       "alice's presence at bob (probe answered from persisted state)")

    if len(ctx.accounts) >= 3:
        carol = ctx.client(ctx.account(2), "check-c")
        await carol.login(presence=False)
        await carol.get_roster()
        await carol.send_presence()
        # RFC 6121 §3.1.3: the stored request is delivered once carol is available.
        await expect_subscription_presence(carol, alice.account.bare, "subscribe",
                                           "stored subscription request reaches carol")
        await carol.close()
    await close_all(alice, bob)


SCENARIOS: dict[str, Callable[[Context], Any]] = {
    "login": scenario_login,
    "wrong-password": scenario_wrong_password,
    "roster": scenario_roster,
    "subscribe": scenario_subscribe,
    "messages": scenario_messages,
    "conflict": scenario_conflict,
    "disco-ping-version": scenario_disco_ping_version,
    "roster-setup": scenario_roster_setup,
    "roster-check": scenario_roster_check,
}


def load_scenario_modules() -> list[tuple[str, dict]]:
    """Every `scenarios_*.py` next to this file adds its SCENARIOS (and EXTRA_ARGS), so
    feature areas keep their scenarios in their own file."""
    extra_args: list[tuple[str, dict]] = []
    here = Path(__file__).resolve().parent
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    # Loaded as `scenarios`, so the modules' `from scenarios import …` finds this one.
    sys.modules.setdefault("scenarios", sys.modules[__name__])
    for path in sorted(here.glob("scenarios_*.py")):
        module = importlib.import_module(path.stem)
        SCENARIOS.update(getattr(module, "SCENARIOS", {}))
        extra_args += getattr(module, "EXTRA_ARGS", [])
    return extra_args


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

class TranscriptBuffer(logging.Handler):
    """Keeps slixmpp's log (with the raw XML) to print only when a scenario fails."""

    def __init__(self, limit: int = 20000) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.limit = limit
        self.setFormatter(logging.Formatter("%(relativeCreated)8.0fms %(levelname)s "
                                            "%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < self.limit:
            self.lines.append(self.format(record))


def parse_user(value: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user:
        raise argparse.ArgumentTypeError(f"expected USER:PASSWORD, got {value!r}")
    return user, password


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run one XMPP client scenario against a server.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--domain", default="localhost")
    parser.add_argument("--tls", choices=("starttls", "direct", "none"), default="starttls")
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--cafile", help="PEM to verify the server certificate against "
                       "(hostname checked against --domain)")
    trust.add_argument("--insecure", action="store_true", help="skip certificate checks")
    parser.add_argument("--tls-max-version", choices=("1.2", "1.3"), default="1.3",
                        help="1.2 makes -PLUS mechanisms usable (tls-unique)")
    parser.add_argument("--mechanism", help="force this SASL mechanism")
    parser.add_argument("--user", action="append", type=parse_user, default=[],
                        metavar="USER:PASSWORD", help="account localpart and password")
    parser.add_argument("--step-timeout", type=float, default=10.0,
                        help="seconds to wait for any single expected event")
    parser.add_argument("--total-timeout", type=float, default=120.0,
                        help="seconds the whole scenario may take")
    parser.add_argument("--verbose", action="store_true",
                        help="stream slixmpp's debug log (raw XML) to stderr")
    for flag, options in EXTRA_ARGS:
        parser.add_argument(flag, **options)
    args = parser.parse_args(argv)
    if args.tls != "none" and not (args.cafile or args.insecure):
        parser.error("--tls starttls/direct needs --cafile PEM or --insecure")
    if args.cafile and not Path(args.cafile).is_file():
        parser.error(f"--cafile {args.cafile}: no such file")
    if not args.user:
        parser.error("at least one --user USER:PASSWORD is required")
    return args


async def run(args: argparse.Namespace) -> None:
    ctx = Context(args)
    ctx.obs("start", slixmpp=slixmpp.__version__, host=args.host, port=args.port,
            domain=args.domain, tls=args.tls, mechanism=args.mechanism,
            users=[a.user for a in ctx.accounts])
    try:
        await asyncio.wait_for(SCENARIOS[args.scenario](ctx), args.total_timeout)
    except asyncio.TimeoutError:
        raise ScenarioFailed(f"scenario did not finish within {args.total_timeout}s")
    finally:
        ctx.abort_all()
        # Let transports finish closing before the loop goes away.
        await asyncio.sleep(0.05)


EXTRA_ARGS: list[tuple[str, dict]] = []


def main(argv: Optional[list[str]] = None) -> int:
    EXTRA_ARGS.extend(load_scenario_modules())
    args = parse_args(sys.argv[1:] if argv is None else argv)
    transcript = TranscriptBuffer()
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    root.addHandler(transcript)
    if args.verbose:
        live = logging.StreamHandler(sys.stderr)
        live.setFormatter(transcript.formatter)
        root.addHandler(live)
    try:
        asyncio.run(run(args))
    except ScenarioFailed as failure:
        if not args.verbose:
            print("---- slixmpp transcript ----", file=sys.stderr)
            for line in transcript.lines:
                print(line, file=sys.stderr)
            print("---- end of transcript ----", file=sys.stderr)
        print(f"FAILED {args.scenario}: {failure}", file=sys.stderr)
        print(json.dumps({"scenario": args.scenario, "event": "result", "ok": False,
                          "reason": str(failure)}), flush=True)
        return EXIT_FAILED
    except Exception as exc:  # a bug here or in slixmpp: still a clear failure
        import traceback
        traceback.print_exc()
        for line in transcript.lines[-200:]:
            print(line, file=sys.stderr)
        print(f"FAILED {args.scenario}: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps({"scenario": args.scenario, "event": "result", "ok": True}), flush=True)
    print(f"OK {args.scenario}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
