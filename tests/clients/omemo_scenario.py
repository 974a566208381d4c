#!/usr/bin/env python3
"""OMEMO between two independent clients (slixmpp-omemo), through xmppd's PEP.

    omemo_scenario.py omemo-chat --host … --port … --tls starttls --cafile … \\
        --user alice:pw --user bob:pw

Both clients generate their identities, publish device lists and bundles in both
namespaces (eu.siacs.conversations.axolotl and urn:xmpp:omemo:2) with open access
and publish-options, learn each other's devices through +notify (XEP-0115/0163),
fetch bundles and exchange encrypted messages both ways.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, Dict, FrozenSet, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import personal  # noqa: E402
import scenarios as base  # noqa: E402
from scenarios import Context, ScenarioFailed, close_all, expect, login_all  # noqa: E402

from omemo.storage import Just, Maybe, Nothing, Storage  # noqa: E402
from omemo.types import DeviceInformation, JSONType  # noqa: E402
from slixmpp import JID  # noqa: E402
from slixmpp.plugins import register_plugin  # noqa: E402
from slixmpp_omemo import TrustLevel, XEP_0384  # noqa: E402


class MemoryStorage(Storage):
    def __init__(self) -> None:
        super().__init__()
        self.data: Dict[str, JSONType] = {}

    async def _load(self, key: str) -> Maybe[JSONType]:
        return Just(self.data[key]) if key in self.data else Nothing()

    async def _store(self, key: str, value: JSONType) -> None:
        self.data[key] = value

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)


class TrustingOmemo(XEP_0384):
    """Blind trust before verification (BTBV), in memory."""

    name = "xep_0384"
    default_config = {"fallback_message": "This message is OMEMO encrypted."}

    def plugin_init(self) -> None:
        self.__storage = MemoryStorage()
        super().plugin_init()

    @property
    def storage(self) -> Storage:
        return self.__storage

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _devices_blindly_trusted(self, blindly_trusted: FrozenSet[DeviceInformation],
                                       identifier: Optional[str]) -> None:
        pass

    async def _prompt_manual_trust(self, manually_trusted: FrozenSet[DeviceInformation],
                                   identifier: Optional[str]) -> None:
        session_manager = await self.get_session_manager()
        for device in manually_trusted:
            await session_manager.set_trust(device.bare_jid, device.identity_key,
                                            TrustLevel.TRUSTED.value)


register_plugin(TrustingOmemo)


class OmemoClient(personal.PepClient):
    def __init__(self, ctx: Context, account: base.Account, resource: str) -> None:
        super().__init__(ctx, account, resource)
        self.xmpp.register_plugin("xep_0380")
        self.xmpp.register_plugin("xep_0334")
        self.xmpp.register_plugin("xep_0045")
        self.xmpp.register_plugin("xep_0359")
        self.xmpp.register_plugin("xep_0384", module=sys.modules[__name__])
        self.decrypted: asyncio.Queue = asyncio.Queue()
        self.xmpp.add_event_handler("message", self._on_message)

    async def _on_message(self, stanza: Any) -> None:
        omemo = self.xmpp["xep_0384"]
        if not omemo.is_encrypted(stanza):
            return
        try:
            message, device = await omemo.decrypt_message(stanza)
            await self.decrypted.put(message["body"])
        except Exception as exc:  # surfaced by the scenario's wait
            await self.decrypted.put(f"DECRYPT-ERROR {exc!r}")

    async def send_encrypted(self, to: str, body: str) -> None:
        omemo = self.xmpp["xep_0384"]
        msg = self.xmpp.make_message(mto=to, mtype="chat")
        msg["body"] = body
        encrypted, errors = await omemo.encrypt_message(msg, JID(to))
        expect(encrypted is not None, f"{self.label}: nothing encrypted", errors=repr(errors))
        encrypted.send()
        namespaces = [c.tag for c in encrypted.xml if "omemo" in c.tag or "axolotl" in c.tag]
        self.ctx.obs("sent-encrypted", elements=namespaces, errors=len(errors))

    async def receive(self) -> str:
        try:
            return await asyncio.wait_for(self.decrypted.get(), self.ctx.args.step_timeout * 2)
        except asyncio.TimeoutError:
            raise ScenarioFailed(f"{self.label}: no OMEMO message decrypted")


async def scenario_omemo_chat(ctx: Context) -> None:
    alice = OmemoClient(ctx, ctx.account(0), "phone")
    bob = OmemoClient(ctx, ctx.account(1), "pc")
    await login_all(alice, bob)
    await personal.befriend(alice, bob)
    for c in (alice, bob):
        await c.go_online_with_caps()
        await c.xmpp["xep_0384"].get_session_manager()
    await asyncio.sleep(1.0)  # device lists published and announced
    await alice.send_encrypted(bob.account.bare, "secret from alice")
    got = await bob.receive()
    base.expect_equal(got, "secret from alice", "bob decrypts alice's OMEMO message")
    await bob.send_encrypted(alice.account.bare, "secret from bob")
    got = await alice.receive()
    base.expect_equal(got, "secret from bob", "alice decrypts bob's OMEMO message")
    ctx.obs("omemo-exchanged")
    await close_all(alice, bob)


if __name__ == "__main__":
    base.SCENARIOS.update({"omemo-chat": scenario_omemo_chat})
    sys.exit(base.main())
