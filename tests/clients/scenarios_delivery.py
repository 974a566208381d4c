"""Reliable-delivery scenarios (XEP-0160, XEP-0198, XEP-0280, XEP-0352, XEP-0313).

Loaded by scenarios.py (every scenarios_*.py next to it registers its SCENARIOS).
Stream management uses slixmpp's own xep_0198 plugin, so resumption is exercised by an
independent implementation; MAM, carbons and CSI are driven with explicit stanzas and
every assertion reads what the server sent.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from typing import Any, Callable, Optional

from scenarios import (Client, Context, ScenarioFailed, body_is, child_text, expect,
                       expect_equal, summarize)

NS_DELAY = "urn:xmpp:delay"
NS_SID = "urn:xmpp:sid:0"
NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FORWARD = "urn:xmpp:forward:0"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_CSI = "urn:xmpp:csi:0"
NS_DATA = "jabber:x:data"
NS_CLIENT = "jabber:client"


def with_sm(client: Client) -> Client:
    """Registers slixmpp's stream management (resumption allowed) on a client."""
    client.xmpp.register_plugin("xep_0198", {"allow_resume": True, "window": 1})
    return client


def send_chat(sender: Client, to: str, body: str, extra: str = "") -> None:
    sender.send_raw(f"<message to='{to}' type='chat' id='{body}'><body>{body}</body>{extra}</message>")


async def expect_bodies_once(client: Client, bodies: list[str], what: str) -> list[ET.Element]:
    """Each body arrives exactly once, in this order."""
    got = []
    for body in bodies:
        got.append(await client.wait_for("message", body_is(body), f"{what}: '{body}'"))
    await asyncio.sleep(0.3)
    for body in bodies:
        dup = client.unread("message", body_is(body))
        expect(not dup, f"{what}: '{body}' delivered more than once")
    order = [child_text(m, "body") for m in got]
    expect_equal(order, bodies, f"{what}: order")
    return got


async def scenario_offline(ctx: Context) -> None:
    """Messages to an account with no available resource are kept and delivered at its
    next initial presence, in order, with an XEP-0203 delay stamp (XEP-0160)."""
    alice_acc, bob_acc = ctx.account(0), ctx.account(1)
    alice = ctx.client(alice_acc, "off-a")
    await alice.login()
    bodies = [f"offline-{i}" for i in range(3)]
    for b in bodies:
        send_chat(alice, bob_acc.bare, b)
    # A ping round trip: the server has handled the messages (no error came back).
    await alice.iq("get", ET.Element("{urn:xmpp:ping}ping"), to=ctx.args.domain)
    errors = alice.unread("message", lambda x: x.get("type") == "error")
    expect(not errors, "no error for messages kept offline", errors=[summarize(e) for e in errors])
    bob = ctx.client(bob_acc, "off-b")
    await bob.login()
    got = await expect_bodies_once(bob, bodies, "offline delivery")
    for m in got:
        delay = m.find(f"{{{NS_DELAY}}}delay")
        expect(delay is not None and delay.get("stamp"), "offline message carries a delay stamp",
               msg=summarize(m))
        expect_equal(m.get("from"), alice.full, "sender of the offline message")
    await alice.close()
    await bob.close()


async def scenario_offline_full(ctx: Context) -> None:
    """Past the per-account bound the sender gets service-unavailable (never silence).
    The server under test must be configured with max_offline_messages = 2."""
    alice_acc, bob_acc = ctx.account(0), ctx.account(1)
    alice = ctx.client(alice_acc, "full-a")
    await alice.login()
    for i in range(3):
        send_chat(alice, bob_acc.bare, f"bound-{i}")
    err = await alice.wait_for("message", lambda x: x.get("type") == "error" and x.get("id") == "bound-2",
                               "an error for the message over the bound")
    cond = [c.tag for c in err.iter() if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}")]
    expect(any(c.endswith("service-unavailable") for c in cond), "service-unavailable", cond=cond)
    expect(not alice.unread("message", lambda x: x.get("type") == "error" and x.get("id") != "bound-2"),
           "only the third message is refused")
    await alice.close()


async def reconnect(client: Client) -> None:
    """Opens a new TCP connection for a client whose transport was aborted."""
    loop = asyncio.get_running_loop()
    client.login_done = loop.create_future()
    client.closed = loop.create_future()
    resumed: asyncio.Future = loop.create_future()

    def on_resumed(_ev: Any) -> None:
        if not resumed.done():
            resumed.set_result(True)

    def on_failed(_ev: Any) -> None:
        if not resumed.done():
            resumed.set_result(False)

    client.xmpp.add_event_handler("session_resumed", on_resumed)
    client.xmpp.add_event_handler("sm_failed", on_failed)
    client.xmpp.connect(host=client.ctx.args.host, port=client.ctx.args.port)
    ok = await asyncio.wait_for(resumed, client.ctx.args.step_timeout)
    expect(ok, f"{client.label}: stream resumed (XEP-0198 <resumed/>)")


async def drop_tcp(client: Client) -> None:
    """Kills the TCP connection without a closing tag (what a phone leaving the Wi-Fi
    does), keeping slixmpp's stream-management state for resumption."""
    transport = client.xmpp.transport
    expect(transport is not None, f"{client.label}: connected before the drop")
    transport.abort()
    await asyncio.wait_for(asyncio.shield(client.closed), client.ctx.args.step_timeout)


async def scenario_sm_resume(ctx: Context) -> None:
    """SM enable, messages, TCP drop without closing, more messages, resume: everything
    arrives exactly once."""
    alice_acc, bob_acc = ctx.account(0), ctx.account(1)
    alice = ctx.client(alice_acc, "sm-a")
    bob = with_sm(ctx.client(bob_acc, "sm-b"))
    await alice.login()
    await bob.login()
    sm = bob.xmpp.plugin["xep_0198"]
    expect(sm.sm_id, "the server enabled SM with resumption", sm_id=sm.sm_id)
    send_chat(alice, bob.full, "before-drop")
    await expect_bodies_once(bob, ["before-drop"], "before the drop")
    await drop_tcp(bob)
    during = [f"during-drop-{i}" for i in range(3)]
    for b in during:
        send_chat(alice, bob.full, b)
    await alice.iq("get", ET.Element("{urn:xmpp:ping}ping"), to=ctx.args.domain)
    expect(not alice.unread("message", lambda x: x.get("type") == "error"),
           "the hibernating session takes messages")
    await reconnect(bob)
    await expect_bodies_once(bob, during, "after resumption")
    expect(not bob.unread("message", body_is("before-drop")), "nothing is delivered twice")
    send_chat(alice, bob.full, "after-resume")
    await expect_bodies_once(bob, ["after-resume"], "the resumed session")
    await alice.close()
    await bob.close()


async def scenario_sm_timeout(ctx: Context) -> None:
    """SM session dropped and not resumed within the resumption time (the server under
    test is configured with a short one, announced in <enabled max=''/>): the messages it
    never acknowledged end up in offline storage, none lost."""
    alice_acc, bob_acc = ctx.account(0), ctx.account(1)
    alice = ctx.client(alice_acc, "smt-a")
    bob = with_sm(ctx.client(bob_acc, "smt-b"))
    await alice.login()
    await bob.login()
    await drop_tcp(bob)
    bodies = [f"lost-session-{i}" for i in range(2)]
    for b in bodies:
        send_chat(alice, bob.full, b)
    await alice.iq("get", ET.Element("{urn:xmpp:ping}ping"), to=ctx.args.domain)
    wait = float(ctx.args.resume_wait)
    ctx.obs("waiting-for-resumption-timeout", seconds=wait)
    await asyncio.sleep(wait)
    fresh = ctx.client(bob_acc, "smt-fresh")
    await fresh.login()
    got = await expect_bodies_once(fresh, bodies, "after the resumption timeout")
    for m in got:
        expect(m.find(f"{{{NS_DELAY}}}delay") is not None, "delivered from offline storage", msg=summarize(m))
    await alice.close()
    await fresh.close()


def is_carbon(direction: str, body: str) -> Callable[[ET.Element], bool]:
    def check(x: ET.Element) -> bool:
        wrapper = x.find(f"{{{NS_CARBONS}}}{direction}")
        if wrapper is None:
            return False
        inner = wrapper.find(f"{{{NS_FORWARD}}}forwarded/{{{NS_CLIENT}}}message")
        return inner is not None and child_text(inner, "body") == body
    return check


async def scenario_carbons(ctx: Context) -> None:
    """Two resources of alice with carbons on see both sides of her conversation."""
    alice_acc, bob_acc = ctx.account(0), ctx.account(1)
    phone = ctx.client(alice_acc, "car-phone")
    laptop = ctx.client(alice_acc, "car-laptop")
    bob = ctx.client(bob_acc, "car-bob")
    for c in (phone, laptop, bob):
        await c.login()
    for c in (phone, laptop):
        reply = await c.iq("set", ET.Element(f"{{{NS_CARBONS}}}enable"))
        expect_equal(reply.get("type"), "result", f"{c.label}: carbons enabled")
    send_chat(phone, bob_acc.bare, "sent-from-phone")
    copy = await laptop.wait_for("message", is_carbon("sent", "sent-from-phone"), "sent carbon")
    expect_equal(copy.get("from"), alice_acc.bare, "a carbon comes from the account's bare JID")
    await bob.wait_for("message", body_is("sent-from-phone"), "the message itself")
    send_chat(bob, phone.full, "received-on-phone")
    await phone.wait_for("message", body_is("received-on-phone"), "the message itself")
    await laptop.wait_for("message", is_carbon("received", "received-on-phone"), "received carbon")
    expect(not phone.unread("message", is_carbon("received", "received-on-phone")),
           "the addressed resource gets no copy of its own message")
    send_chat(phone, bob_acc.bare, "private-one", "<private xmlns='urn:xmpp:carbons:2'/>")
    await bob.wait_for("message", body_is("private-one"), "private message delivered")
    await phone.sync(laptop)
    expect(not laptop.unread("message", is_carbon("sent", "private-one")), "private messages are not copied")
    for c in (phone, laptop, bob):
        await c.close()


def presence_show(sender: str, show: Optional[str]) -> Callable[[ET.Element], bool]:
    return lambda x: x.get("from") == sender and child_text(x, "show") == show and x.get("type") is None


async def scenario_csi(ctx: Context) -> None:
    """While bob says he is inactive, alice's presence changes are held back and only the
    latest is delivered, before the next message with a body (XEP-0352)."""
    alice_acc, bob_acc = ctx.account(0), ctx.account(1)
    alice = ctx.client(alice_acc, "csi-a")
    bob = ctx.client(bob_acc, "csi-b")
    await alice.login()
    await bob.login()
    # bob subscribes to alice's presence.
    bob.send_raw(f"<presence to='{alice_acc.bare}' type='subscribe'/>")
    await alice.wait_for("presence", lambda x: x.get("type") == "subscribe", "subscription request")
    alice.send_raw(f"<presence to='{bob_acc.bare}' type='subscribed'/>")
    await bob.wait_for("presence", lambda x: x.get("from") == alice.full and x.get("type") is None,
                       "alice's presence after approval")
    bob.send_raw(f"<inactive xmlns='{NS_CSI}'/>")
    await bob.iq("get", ET.Element("{urn:xmpp:ping}ping"), to=ctx.args.domain)
    for show in ("away", "xa", "dnd"):
        await alice.send_presence(show=show)
    await asyncio.sleep(1.0)
    held = bob.unread("presence", lambda x: x.get("from") == alice.full)
    expect(not held, "presence held while inactive", got=[summarize(p) for p in held])
    send_chat(alice, bob.full, "wake-up")
    await bob.wait_for("message", body_is("wake-up"), "the message with a body")
    latest = bob.take_unread("presence", lambda x: x.get("from") == alice.full)
    shows = [child_text(p, "show") for p in latest]
    expect_equal(shows, ["dnd"], "only the latest presence, delivered before the message")
    # Order: the held presence came before the message.
    kinds = [(i.kind, child_text(i.xml, "show") or child_text(i.xml, "body")) for i in bob.inbox
             if i.xml.get("from") == alice.full and i.kind in ("presence", "message")]
    expect(kinds.index(("presence", "dnd")) < kinds.index(("message", "wake-up")), "held first", kinds=kinds)
    await alice.send_presence(show="chat")
    await asyncio.sleep(0.5)
    expect(not bob.unread("presence", presence_show(alice.full, "chat")), "still held")
    bob.send_raw(f"<active xmlns='{NS_CSI}'/>")
    await bob.wait_for("presence", presence_show(alice.full, "chat"), "flushed when active")
    await alice.close()
    await bob.close()


async def scenario_mam_fill(ctx: Context) -> None:
    """alice sends 250 messages to bob and 10 to carol (all online): both archives fill."""
    alice_acc, bob_acc, carol_acc = ctx.account(0), ctx.account(1), ctx.account(2)
    alice = ctx.client(alice_acc, "mam-a")
    bob = ctx.client(bob_acc, "mam-b")
    carol = ctx.client(carol_acc, "mam-c")
    for c in (alice, bob, carol):
        await c.login()
    for i in range(250):
        send_chat(alice, bob_acc.bare, f"mam-{i:03d}")
    for i in range(10):
        send_chat(alice, carol_acc.bare, f"to-carol-{i}")
    got = await bob.wait_for("message", body_is("mam-249"), "the last message", timeout=30)
    sid = got.find(f"{{{NS_SID}}}stanza-id")
    expect(sid is not None and sid.get("by") == bob_acc.bare, "bob's copy carries his archive's stanza-id",
           msg=summarize(got))
    await carol.wait_for("message", body_is("to-carol-9"), "carol's last")
    for c in (alice, bob, carol):
        await c.close()


def mam_query(queryid: str, fields: dict[str, str], rsm: dict[str, Optional[str]]) -> ET.Element:
    q = ET.Element(f"{{{NS_MAM}}}query", {"queryid": queryid})
    if fields:
        x = ET.SubElement(q, f"{{{NS_DATA}}}x", {"type": "submit"})
        ft = ET.SubElement(x, f"{{{NS_DATA}}}field", {"var": "FORM_TYPE", "type": "hidden"})
        ET.SubElement(ft, f"{{{NS_DATA}}}value").text = NS_MAM
        for var, value in fields.items():
            f = ET.SubElement(x, f"{{{NS_DATA}}}field", {"var": var})
            ET.SubElement(f, f"{{{NS_DATA}}}value").text = value
    if rsm:
        s = ET.SubElement(q, f"{{{NS_RSM}}}set")
        for k, v in rsm.items():
            ET.SubElement(s, f"{{{NS_RSM}}}{k}").text = v
    return q


async def mam_page(client: Client, queryid: str, fields: dict[str, str],
                   rsm: dict[str, Optional[str]]) -> tuple[list[str], ET.Element]:
    """Runs one query; returns the bodies of the results (in order) and the <fin/>."""
    reply = await client.iq("set", mam_query(queryid, fields, rsm))
    expect_equal(reply.get("type"), "result", f"MAM query {queryid}", reply=summarize(reply))
    fin = reply.find(f"{{{NS_MAM}}}fin")
    expect(fin is not None, f"MAM query {queryid}: <fin/>")
    results = client.take_unread("message", lambda x: x.find(f"{{{NS_MAM}}}result") is not None
                                 and x.find(f"{{{NS_MAM}}}result").get("queryid") == queryid)
    bodies = []
    for r in results:
        inner = r.find(f"{{{NS_MAM}}}result/{{{NS_FORWARD}}}forwarded/{{{NS_CLIENT}}}message")
        delay = r.find(f"{{{NS_MAM}}}result/{{{NS_FORWARD}}}forwarded/{{{NS_DELAY}}}delay")
        expect(inner is not None and delay is not None, "a result forwards the message with its stamp",
               result=summarize(r))
        bodies.append(child_text(inner, "body"))
    return bodies, fin


async def scenario_mam_page(ctx: Context) -> None:
    """bob pages through his archive (run after a restart): 250 messages in pages of 50,
    backwards from the end, by date range and by contact."""
    bob_acc = ctx.account(1)
    bob = ctx.client(bob_acc, "mam-reader")
    await bob.login()
    wanted = [f"mam-{i:03d}" for i in range(250)]
    collected: list[str] = []
    after: Optional[str] = None
    for page in range(5):
        rsm: dict[str, Optional[str]] = {"max": "50"}
        if after:
            rsm["after"] = after
        bodies, fin = await mam_page(bob, f"fwd{page}", {"with": ctx.account(0).bare}, rsm)
        expect_equal(len(bodies), 50, f"page {page} size")
        collected += bodies
        last = fin.find(f"{{{NS_RSM}}}set/{{{NS_RSM}}}last")
        expect(last is not None and last.text, "RSM <last/>")
        after = last.text
        complete = fin.get("complete") in ("true", "1")
        expect_equal(complete, page == 4, f"page {page}: complete only on the last page")
    expect_equal(collected, wanted, "forward paging covers the archive exactly once, in order")
    # Backwards from the end (<before/>).
    bodies, fin = await mam_page(bob, "back", {"with": ctx.account(0).bare}, {"max": "50", "before": None})
    expect_equal(bodies, wanted[-50:], "last page")
    count = fin.find(f"{{{NS_RSM}}}set/{{{NS_RSM}}}count")
    expect(count is not None and count.text == "250", "RSM count of all matches")
    # By contact: nothing from carol in bob's archive.
    bodies, fin = await mam_page(bob, "carol", {"with": ctx.account(2).bare}, {"max": "50"})
    expect_equal(bodies, [], "nothing with carol")
    expect(fin.get("complete") in ("true", "1"), "an empty result is complete")
    # By date range: everything is after 2000 and before 2100, nothing before 2000.
    bodies, _ = await mam_page(bob, "range", {"start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"},
                               {"max": "250"})
    expect_equal(bodies, wanted, "date range covering everything")
    bodies, _ = await mam_page(bob, "old", {"end": "2000-01-01T00:00:00Z"}, {"max": "50"})
    expect_equal(bodies, [], "nothing before 2000")
    await bob.close()


async def scenario_offline_send_acked(ctx: Context) -> None:
    """alice (with SM) sends messages to offline bob and waits until the server has
    acknowledged them; prints how many were acknowledged (the caller kills the server
    afterwards and checks bob gets them all)."""
    alice_acc, bob_acc = ctx.account(0), ctx.account(1)
    alice = with_sm(ctx.client(alice_acc, "ack-a"))
    await alice.login(presence=False)
    sm = alice.xmpp.plugin["xep_0198"]
    deadline = time.monotonic() + ctx.args.step_timeout
    while not sm.enabled_out and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    expect(sm.enabled_out, "stream management enabled before sending")
    count = int(ctx.args.count)
    for i in range(count):
        # Through slixmpp's stanza path, so its SM counts what it sent.
        alice.xmpp.send_message(mto=bob_acc.bare, mbody=f"acked-{i}", mtype="chat")
    # slixmpp counts a stanza when its send queue writes it, a moment after send_message.
    deadline = time.monotonic() + ctx.args.step_timeout
    while (sm.seq < count or sm.last_ack < count) and time.monotonic() < deadline:
        sm.request_ack()
        await asyncio.sleep(0.2)
    expect(sm.last_ack >= count, "the server acknowledged every message", last_ack=sm.last_ack, seq=sm.seq)
    ctx.obs("acknowledged", count=count)
    # No clean close: the caller kills the server now.


async def scenario_offline_receive(ctx: Context) -> None:
    """bob logs in and must get every acknowledged message exactly once."""
    bob_acc = ctx.account(1)
    bob = ctx.client(bob_acc, "ack-b")
    await bob.login()
    await expect_bodies_once(bob, [f"acked-{i}" for i in range(int(ctx.args.count))], "after kill -9")
    await bob.close()


SCENARIOS: dict[str, Callable[[Context], Any]] = {
    "offline": scenario_offline,
    "offline-full": scenario_offline_full,
    "sm-resume": scenario_sm_resume,
    "sm-timeout": scenario_sm_timeout,
    "carbons": scenario_carbons,
    "csi": scenario_csi,
    "mam-fill": scenario_mam_fill,
    "mam-page": scenario_mam_page,
    "offline-send-acked": scenario_offline_send_acked,
    "offline-receive": scenario_offline_receive,
}

# Arguments these scenarios add to the command line.
EXTRA_ARGS = [
    ("--resume-wait", {"default": "12", "help": "seconds to wait for the server's resumption time to pass"}),
    ("--count", {"default": "20", "help": "messages for offline-send-acked / offline-receive"}),
]

_ = ScenarioFailed
