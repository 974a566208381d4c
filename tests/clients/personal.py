#!/usr/bin/env python3
"""Personal data services scenarios (issue 7) for xmppd's integration tests.

Same command line and output as scenarios.py (whose helpers this file reuses):

    personal.py SCENARIO --host 127.0.0.1 --port N --domain localhost \\
        --tls {starttls,direct,none} [--cafile PEM | --insecure] --user alice:pw ...

Scenarios and the users they take (in --user order):
    pep-caps-avatar     2  avatar (XEP-0084) published by one, delivered to the other
                           because its entity caps (XEP-0115) say +notify; retrieval,
                           vCard conversion (XEP-0398), no delivery without interest
    omemo-keys          2  OMEMO device lists and bundles (both namespaces) with open
                           access, read by a non-contact; the publish-options
                           precondition failure and the reconfigure-and-retry path
    bookmarks-private   1  XEP-0402 bookmarks seen through XEP-0048/0049 and back;
                           private XML storage
    blocking            2  XEP-0191 block/unblock with pushes, enforcement both ways
    register-invite     1  XEP-0077 + XEP-0445 registration with the token in
                           $XMPPD_INVITE_TOKEN (must succeed), then the same token
                           again and a wrong one (must fail); the user is the account
                           to create
    personal-setup      2  stores PEP items, a vCard, private XML and a block
    personal-check      2  finds all of it again (after a restart)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sys
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scenarios as base  # noqa: E402
from xml.sax.saxutils import escape, quoteattr  # noqa: E402

from slixmpp.exceptions import IqError  # noqa: E402,F401
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatcherId  # noqa: E402
from scenarios import (  # noqa: E402
    ET, Client, Context, ScenarioFailed, child_text, expect, expect_equal,
    login_all, close_all, subscription_dance, stanza_error_condition,
)

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner"
NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_DATA = "jabber:x:data"
NS_AVATAR_META = "urn:xmpp:avatar:metadata"
NS_AVATAR_DATA = "urn:xmpp:avatar:data"
NS_VCARD = "vcard-temp"
NS_BLOCKING = "urn:xmpp:blocking"
NS_PRIVATE = "jabber:iq:private"
NS_BOOKMARKS = "urn:xmpp:bookmarks:1"
NS_BOOKMARKS_LEGACY = "storage:bookmarks"
NS_REGISTER = "jabber:iq:register"
NS_PARS = "urn:xmpp:pars:0"
AXOLOTL = "eu.siacs.conversations.axolotl"
OMEMO2 = "urn:xmpp:omemo:2"


class PepClient(Client):
    """A client with the PEP-related slixmpp plugins (caps answer disco by themselves)."""

    def __init__(self, ctx: Context, account: base.Account, resource: str,
                 interests: tuple[str, ...] = ()) -> None:
        super().__init__(ctx, account, resource)
        for plugin in ("xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0084",
                       "xep_0054", "xep_0191"):
            self.xmpp.register_plugin(plugin)
        for ns in interests:
            self.xmpp.plugin["xep_0030"].add_feature(f"{ns}+notify")

    async def go_online_with_caps(self) -> None:
        """Available presence through slixmpp, which adds XEP-0115 caps to it."""
        await self.xmpp.plugin["xep_0115"].update_caps(broadcast=False)
        self.xmpp.send_presence()
        await self.wait_for("presence", lambda x: x.get("from") == self.full and x.get("type") is None,
                            "own presence with caps echoed")


def el(tag: str, attrs: Optional[dict] = None, text: Optional[str] = None, *children: ET.Element) -> ET.Element:
    e = ET.Element(tag, attrs or {})
    if text is not None:
        e.text = text
    for c in children:
        e.append(c)
    return e


def form(form_type: str, fields: dict[str, str], ftype: str = "submit") -> ET.Element:
    x = ET.Element(f"{{{NS_DATA}}}x", {"type": ftype})
    ft = ET.SubElement(x, f"{{{NS_DATA}}}field", {"var": "FORM_TYPE", "type": "hidden"})
    ET.SubElement(ft, f"{{{NS_DATA}}}value").text = form_type
    for var, value in fields.items():
        f = ET.SubElement(x, f"{{{NS_DATA}}}field", {"var": var})
        ET.SubElement(f, f"{{{NS_DATA}}}value").text = value
    return x


def publish_iq(node: str, item_id: str, payload: ET.Element,
               options: Optional[dict[str, str]] = None) -> ET.Element:
    pubsub = ET.Element(f"{{{NS_PUBSUB}}}pubsub")
    pub = ET.SubElement(pubsub, f"{{{NS_PUBSUB}}}publish", {"node": node})
    item = ET.SubElement(pub, f"{{{NS_PUBSUB}}}item", {"id": item_id})
    item.append(payload)
    if options:
        po = ET.SubElement(pubsub, f"{{{NS_PUBSUB}}}publish-options")
        po.append(form("http://jabber.org/protocol/pubsub#publish-options", options))
    return pubsub


def items_iq(node: str, max_items: Optional[int] = None) -> ET.Element:
    pubsub = ET.Element(f"{{{NS_PUBSUB}}}pubsub")
    attrs = {"node": node}
    if max_items is not None:
        attrs["max_items"] = str(max_items)
    ET.SubElement(pubsub, f"{{{NS_PUBSUB}}}items", attrs)
    return pubsub


def result_items(reply: ET.Element) -> list[ET.Element]:
    items = reply.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}items")
    return [] if items is None else list(items.findall(f"{{{NS_PUBSUB}}}item"))


def expect_result(reply: ET.Element, what: str) -> ET.Element:
    expect_equal(reply.get("type"), "result", what, reply=base.summarize(reply),
                 error=stanza_error_condition(reply))
    return reply


def app_condition(reply: ET.Element) -> Optional[str]:
    err = reply.find(f"{{{base.NS_CLIENT}}}error")
    if err is None:
        return None
    for child in err:
        if not child.tag.startswith(f"{{{base.NS_STANZAS}}}"):
            return child.tag
    return None


def is_event(node: str, item_id: Optional[str] = None):
    def match(x: ET.Element) -> bool:
        items = x.find(f"{{{NS_PUBSUB_EVENT}}}event/{{{NS_PUBSUB_EVENT}}}items")
        if items is None or items.get("node") != node:
            return False
        if item_id is None:
            return True
        return any(i.get("id") == item_id for i in items)
    return match


async def befriend(alice: Client, bob: Client) -> None:
    """Mutual presence subscription (the dance needs both to have fetched the roster)."""
    await alice.get_roster()
    await bob.get_roster()
    await subscription_dance(alice, bob)


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------

async def scenario_pep_caps_avatar(ctx: Context) -> None:
    alice = PepClient(ctx, ctx.account(0), "phone")
    bob = PepClient(ctx, ctx.account(1), "pc", interests=(NS_AVATAR_META,))
    await login_all(alice, bob)
    await befriend(alice, bob)
    await bob.go_online_with_caps()
    await asyncio.sleep(0.5)  # the server asks bob's client for its features
    image = bytes(range(256)) * 8
    avatar_id = hashlib.sha1(image).hexdigest()
    await alice.xmpp.plugin["xep_0084"].publish_avatar(image)
    await alice.xmpp.plugin["xep_0084"].publish_avatar_metadata(
        items=[{"id": avatar_id, "type": "image/png", "bytes": len(image)}])
    event = await bob.wait_for("message", is_event(NS_AVATAR_META, avatar_id),
                               "avatar metadata notification (caps +notify, XEP-0163 §4.3)")
    expect_equal(event.get("from"), alice.account.bare, "notification from the owner's bare JID")
    ctx.obs("caps-notify-delivered", node=NS_AVATAR_META)
    data = await bob.xmpp.plugin["xep_0084"].retrieve_avatar(alice.account.bare, avatar_id)
    data_el = data.xml.find(f".//{{{NS_AVATAR_DATA}}}data")
    got = base64.b64decode((data_el.text if data_el is not None else None) or "")
    expect_equal(got, image, "avatar data retrieved by the contact")
    vcard = await bob.iq("get", el(f"{{{NS_VCARD}}}vCard"), to=alice.account.bare)
    binval = vcard.find(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}PHOTO/{{{NS_VCARD}}}BINVAL")
    expect(binval is not None and base64.b64decode(binval.text or "") == image,
           "XEP-0398: the avatar is in the vCard PHOTO")
    # A node bob has no interest in is not pushed to him.
    await alice.iq("set", publish_iq("urn:example:mood", "m1", el("{urn:example:mood}mood", {}, "happy")))
    await alice.sync(bob)
    expect(not bob.unread("message", is_event("urn:example:mood")),
           "no notification without +notify interest")
    await close_all(alice, bob)


async def scenario_omemo_keys(ctx: Context) -> None:
    alice = PepClient(ctx, ctx.account(0), "phone")
    bob = PepClient(ctx, ctx.account(1), "pc")
    await login_all(alice, bob)
    device_id = "31415"
    open_access = {"pubsub#access_model": "open"}
    # Legacy OMEMO (eu.siacs.conversations.axolotl), as Conversations publishes it.
    devices = el(f"{{{AXOLOTL}}}list", {}, None, el(f"{{{AXOLOTL}}}device", {"id": device_id}))
    expect_result(await alice.iq("set", publish_iq(f"{AXOLOTL}.devicelist", "current", devices, open_access)),
                  "axolotl device list published with open access")
    bundle = el(f"{{{AXOLOTL}}}bundle", {}, None,
                el(f"{{{AXOLOTL}}}signedPreKeyPublic", {"signedPreKeyId": "1"}, "BQ=="),
                el(f"{{{AXOLOTL}}}signedPreKeySignature", {}, "c2ln"),
                el(f"{{{AXOLOTL}}}identityKey", {}, "aWs="),
                el(f"{{{AXOLOTL}}}prekeys", {}, None,
                   *[el(f"{{{AXOLOTL}}}preKeyPublic", {"preKeyId": str(i)}, "cGs=") for i in range(1, 101)]))
    expect_result(await alice.iq("set", publish_iq(f"{AXOLOTL}.bundles:{device_id}", "current", bundle, open_access)),
                  "axolotl bundle published")
    # OMEMO 2 (urn:xmpp:omemo:2): one item per device in the bundles node.
    devices2 = el(f"{{{OMEMO2}}}devices", {}, None, el(f"{{{OMEMO2}}}device", {"id": device_id}))
    expect_result(await alice.iq("set", publish_iq(f"{OMEMO2}:devices", "current", devices2, open_access)),
                  "omemo:2 device list published")
    bundle2 = el(f"{{{OMEMO2}}}bundle", {}, None, el(f"{{{OMEMO2}}}ik", {}, "aWs="))
    opts2 = dict(open_access, **{"pubsub#max_items": "max"})
    expect_result(await alice.iq("set", publish_iq(f"{OMEMO2}:bundles", device_id, bundle2, opts2)),
                  "omemo:2 bundle published with max_items=max")
    # Bob is not a contact: open access still lets his client start a session.
    for node, marker in [(f"{AXOLOTL}.devicelist", f"{{{AXOLOTL}}}list"),
                         (f"{AXOLOTL}.bundles:{device_id}", f"{{{AXOLOTL}}}bundle"),
                         (f"{OMEMO2}:devices", f"{{{OMEMO2}}}devices"),
                         (f"{OMEMO2}:bundles", f"{{{OMEMO2}}}bundle")]:
        reply = expect_result(await bob.iq("get", items_iq(node, 1), to=alice.account.bare),
                              f"non-contact fetches {node}")
        items = result_items(reply)
        expect(len(items) == 1 and items[0].find(marker) is not None, f"{node} item fetched",
               reply=base.summarize(reply))
    ctx.obs("omemo-keys-fetched")
    # Precondition failure: a node made with the default (presence) model refuses a
    # publish that asks for open access; the client reconfigures and retries.
    node = f"{AXOLOTL}.bundles:999"
    expect_result(await alice.iq("set", publish_iq(node, "current", el(f"{{{AXOLOTL}}}bundle"))),
                  "bundle with default access")
    denied = await bob.iq("get", items_iq(node), to=alice.account.bare)
    expect_equal(stanza_error_condition(denied), "not-authorized", "presence access refuses a stranger")
    refused = await alice.iq("set", publish_iq(node, "current", el(f"{{{AXOLOTL}}}bundle"), open_access))
    expect_equal(refused.get("type"), "error", "publish with a mismatching precondition")
    expect_equal(stanza_error_condition(refused), "conflict", "precondition condition")
    expect_equal(app_condition(refused), f"{{{NS_PUBSUB_ERRORS}}}precondition-not-met",
                 "pubsub#errors condition")
    ctx.obs("precondition-not-met")
    config = await alice.iq("get", el(f"{{{NS_PUBSUB_OWNER}}}pubsub", {}, None,
                                      el(f"{{{NS_PUBSUB_OWNER}}}configure", {"node": node})))
    expect_result(config, "node configuration form")
    configure = el(f"{{{NS_PUBSUB_OWNER}}}pubsub", {}, None,
                   el(f"{{{NS_PUBSUB_OWNER}}}configure", {"node": node}, None,
                      form("http://jabber.org/protocol/pubsub#node_config", open_access)))
    expect_result(await alice.iq("set", configure), "reconfigured to open")
    expect_result(await alice.iq("set", publish_iq(node, "current", el(f"{{{AXOLOTL}}}bundle"), open_access)),
                  "publish succeeds after reconfiguring")
    expect_result(await bob.iq("get", items_iq(node), to=alice.account.bare), "now readable by anyone")
    await close_all(alice, bob)


async def scenario_bookmarks_private(ctx: Context) -> None:
    alice = PepClient(ctx, ctx.account(0), "phone")
    await login_all(alice)
    info = await alice.iq("get", el("{http://jabber.org/protocol/disco#info}query"), to=alice.account.bare)
    features = {f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")}
    expect("urn:xmpp:bookmarks:1#compat" in features, "XEP-0402 #compat announced", features=sorted(features))
    expect(f"{NS_PUBSUB}#publish-options" in features, "publish-options announced")
    room = "room@muc.localhost"
    conference = el(f"{{{NS_BOOKMARKS}}}conference", {"name": "The Room", "autojoin": "true"}, None,
                    el(f"{{{NS_BOOKMARKS}}}nick", {}, "al"))
    options = {"pubsub#persist_items": "true", "pubsub#max_items": "max",
               "pubsub#send_last_published_item": "never", "pubsub#access_model": "whitelist"}
    expect_result(await alice.iq("set", publish_iq(NS_BOOKMARKS, room, conference, options)),
                  "XEP-0402 bookmark published")
    # The XEP-0048 view through private storage (XEP-0049).
    query = el(f"{{{NS_PRIVATE}}}query", {}, None, el(f"{{{NS_BOOKMARKS_LEGACY}}}storage"))
    legacy = expect_result(await alice.iq("get", query), "XEP-0048 bookmarks through XEP-0049")
    confs = legacy.findall(f".//{{{NS_BOOKMARKS_LEGACY}}}conference")
    expect(len(confs) == 1 and confs[0].get("jid") == room and confs[0].get("autojoin") == "true"
           and child_text(confs[0], "nick") is None, "one conference in the legacy view")
    nick = confs[0].find(f"{{{NS_BOOKMARKS_LEGACY}}}nick")
    expect(nick is not None and nick.text == "al", "nick converted")
    # A legacy client adds a room: it appears as a XEP-0402 item.
    storage = el(f"{{{NS_BOOKMARKS_LEGACY}}}storage", {}, None,
                 el(f"{{{NS_BOOKMARKS_LEGACY}}}conference", {"jid": room, "name": "The Room", "autojoin": "true"}, None,
                    el(f"{{{NS_BOOKMARKS_LEGACY}}}nick", {}, "al")),
                 el(f"{{{NS_BOOKMARKS_LEGACY}}}conference", {"jid": "other@muc.localhost", "autojoin": "false"}))
    expect_result(await alice.iq("set", el(f"{{{NS_PRIVATE}}}query", {}, None, storage)), "legacy bookmarks stored")
    reply = expect_result(await alice.iq("get", items_iq(NS_BOOKMARKS)), "XEP-0402 items")
    ids = sorted(i.get("id") for i in result_items(reply))
    expect_equal(ids, ["other@muc.localhost", room], "both rooms as PEP items")
    # Plain private XML storage.
    prefs = el("{urn:example:prefs}prefs", {}, None, el("{urn:example:prefs}theme", {}, "dark"))
    expect_result(await alice.iq("set", el(f"{{{NS_PRIVATE}}}query", {}, None, prefs)), "private data stored")
    got = await alice.iq("get", el(f"{{{NS_PRIVATE}}}query", {}, None, el("{urn:example:prefs}prefs")))
    theme = got.find(".//{urn:example:prefs}theme")
    expect(theme is not None and theme.text == "dark", "private data read back")
    await close_all(alice)


async def scenario_blocking(ctx: Context) -> None:
    alice = PepClient(ctx, ctx.account(0), "phone")
    alice2 = PepClient(ctx, ctx.account(0), "pc")
    bob = PepClient(ctx, ctx.account(1), "pc")
    await login_all(alice, alice2, bob)
    await befriend(alice, bob)
    pushed = asyncio.Event()
    alice2.xmpp.add_event_handler("blocked", lambda _iq: pushed.set())
    blocked = await alice2.xmpp.plugin["xep_0191"].get_blocked_jids()
    expect_equal(set(blocked), set(), "empty block list")
    await alice.xmpp.plugin["xep_0191"].block([bob.account.bare])
    try:
        await asyncio.wait_for(pushed.wait(), ctx.args.step_timeout)
    except asyncio.TimeoutError:
        raise ScenarioFailed("no block push to the resource that asked for the list (§3.3.2)")
    blocked = await alice.xmpp.plugin["xep_0191"].get_blocked_jids()
    expect_equal({str(j) for j in blocked}, {bob.account.bare}, "block list after block")
    # Bob's message bounces as if alice did not exist.
    bob.send_raw(f"<message to='{alice.account.bare}' type='chat' id='b1'><body>hi</body></message>")
    err = await bob.wait_for("message", lambda x: x.get("id") == "b1" and x.get("type") == "error",
                             "error for a message to a user who blocked us")
    expect_equal(stanza_error_condition(err), "service-unavailable", "XEP-0191 §3.3 inbound")
    alice.send_raw(f"<message to='{bob.account.bare}' type='chat' id='a1'><body>hi</body></message>")
    err = await alice.wait_for("message", lambda x: x.get("id") == "a1" and x.get("type") == "error",
                               "error for a message to a blocked contact")
    expect_equal(stanza_error_condition(err), "not-acceptable", "XEP-0191 §3.3 outbound")
    expect(err.find(".//{urn:xmpp:blocking:errors}blocked") is not None, "<blocked/> condition")
    ctx.obs("block-enforced")
    await alice.xmpp.plugin["xep_0191"].unblock([bob.account.bare])
    bob.send_raw(f"<message to='{alice.full}' type='chat' id='b2'><body>again</body></message>")
    await alice.wait_for("message", lambda x: x.get("id") == "b2", "message after unblock")
    await close_all(alice, alice2, bob)


def token_from_env() -> str:
    token = os.environ.get("XMPPD_INVITE_TOKEN", "")
    if not token:
        raise ScenarioFailed("XMPPD_INVITE_TOKEN is not set")
    return token


class Registrant(Client):
    """Registers in-band (XEP-0077) after presenting a token (XEP-0445), then logs in."""

    def __init__(self, ctx: Context, account: base.Account, token: str) -> None:
        super().__init__(ctx, account, "reg")
        self.xmpp.register_plugin("xep_0004")
        self.xmpp.register_plugin("xep_0066")
        self.xmpp.register_plugin("xep_0077")
        self.token = token
        self.outcome: Optional[str] = None
        self.xmpp.add_event_handler("register", self._register)

    async def registration_done(self) -> None:
        for _ in range(int(self.ctx.args.step_timeout * 10)):
            if self.outcome is not None:
                return
            await asyncio.sleep(0.1)
        raise ScenarioFailed(f"{self.label}: the registration got no answer")

    async def _raw_iq(self, xml: str, iq_id: str) -> ET.Element:
        """Sends an iq as text and waits for its answer. (Before login, slixmpp queues
        iqs sent from a feature handler behind that handler; raw sends go out at once.)"""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()

        def answered(stanza: Any) -> None:
            if not fut.done():
                fut.set_result(stanza.xml)

        self.xmpp.register_handler(Callback(f"answer {iq_id}", MatcherId(iq_id), answered, once=True))
        self.send_raw(xml)
        try:
            return await asyncio.wait_for(fut, self.ctx.args.step_timeout)
        except asyncio.TimeoutError:
            raise ScenarioFailed(f"no answer to {xml}")

    async def _register(self, _form: Any) -> None:
        pre = await self._raw_iq(
            f"<iq type='set' id='pa1'><preauth xmlns='{NS_PARS}' token={quoteattr(self.token)}/></iq>", "pa1")
        self.ctx.obs("preauth", type=pre.get("type"), condition=stanza_error_condition(pre))
        reply = await self._raw_iq(
            f"<iq type='set' id='reg1'><query xmlns='{NS_REGISTER}'><username>{escape(self.account.user)}"
            f"</username><password>{escape(self.account.password)}</password></query></iq>", "reg1")
        if reply.get("type") == "result":
            self.outcome = "registered"
        else:
            self.outcome = stanza_error_condition(reply)
            self.xmpp.disconnect()
        self.ctx.obs("registration", outcome=self.outcome)


async def scenario_register_invite(ctx: Context) -> None:
    token = token_from_env()
    account = ctx.account(0)
    first = Registrant(ctx, account, token)
    await first.login(presence=False)
    expect_equal(first.outcome, "registered", "registration with the invitation token")
    await first.close()
    # The token is used up: another account cannot be made with it.
    other = base.Account("romeo-" + account.user, "pw", account.domain)
    again = Registrant(ctx, other, token)
    await again.start()
    await again.registration_done()
    expect_equal(again.outcome, "forbidden", "second registration with the same token")
    again.abort()
    wrong = Registrant(ctx, base.Account("mallory-" + account.user, "pw", account.domain), "not-a-token")
    await wrong.start()
    await wrong.registration_done()
    expect_equal(wrong.outcome, "forbidden", "registration with a wrong token")
    wrong.abort()
    ctx.obs("invite-single-use")
    # The registered account works like any other.
    check = Client(ctx, account, "check")
    await check.login()
    await check.close()


async def scenario_personal_setup(ctx: Context) -> None:
    alice = PepClient(ctx, ctx.account(0), "phone")
    await login_all(alice)
    expect_result(await alice.iq("set", publish_iq("urn:example:notes", "n1", el("{urn:example:notes}note", {}, "kept"),
                                                   {"pubsub#access_model": "open"})), "PEP item")
    vcard = el(f"{{{NS_VCARD}}}vCard", {}, None, el(f"{{{NS_VCARD}}}FN", {}, "Alice Liddell"))
    expect_result(await alice.iq("set", vcard), "vCard stored")
    prefs = el("{urn:example:prefs}prefs", {}, None, el("{urn:example:prefs}theme", {}, "dark"))
    expect_result(await alice.iq("set", el(f"{{{NS_PRIVATE}}}query", {}, None, prefs)), "private data")
    await alice.xmpp.plugin["xep_0191"].block([ctx.account(1).bare])
    await close_all(alice)


async def scenario_personal_check(ctx: Context) -> None:
    alice = PepClient(ctx, ctx.account(0), "phone")
    bob = PepClient(ctx, ctx.account(1), "pc")
    await login_all(alice, bob)
    reply = expect_result(await alice.iq("get", items_iq("urn:example:notes")), "PEP item after restart")
    items = result_items(reply)
    expect(len(items) == 1 and items[0].get("id") == "n1", "PEP item kept")
    card = await alice.iq("get", el(f"{{{NS_VCARD}}}vCard"))
    fn = card.find(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN")
    expect(fn is not None and fn.text == "Alice Liddell", "vCard kept")
    got = await alice.iq("get", el(f"{{{NS_PRIVATE}}}query", {}, None, el("{urn:example:prefs}prefs")))
    theme = got.find(".//{urn:example:prefs}theme")
    expect(theme is not None and theme.text == "dark", "private data kept")
    blocked = await alice.xmpp.plugin["xep_0191"].get_blocked_jids()
    expect_equal({str(j) for j in blocked}, {bob.account.bare}, "block list kept")
    bob.send_raw(f"<message to='{alice.account.bare}' type='chat' id='x'><body>hi</body></message>")
    err = await bob.wait_for("message", lambda x: x.get("id") == "x", "bounce from the kept block")
    expect_equal(stanza_error_condition(err), "service-unavailable", "block still enforced")
    ctx.obs("personal-data-kept")
    await close_all(alice, bob)


PERSONAL_SCENARIOS = {
    "pep-caps-avatar": scenario_pep_caps_avatar,
    "omemo-keys": scenario_omemo_keys,
    "bookmarks-private": scenario_bookmarks_private,
    "blocking": scenario_blocking,
    "register-invite": scenario_register_invite,
    "personal-setup": scenario_personal_setup,
    "personal-check": scenario_personal_check,
}

if __name__ == "__main__":
    base.SCENARIOS.update(PERSONAL_SCENARIOS)
    sys.exit(base.main())
