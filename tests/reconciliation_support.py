"""Helpers for the reconciliation tests: two platforms' nodes behind their real apps, SDK
clients that tag cross-platform records, verified logs read over the public API, and the
side of a scenario's record (which platform holds which party's account)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from api.main import create_app
from ledger_node.client.sdk import NodeClient, PlatformClient, registered_platform
from ledger_node.demo.run import Party
from ledger_node.demo.scenario import Scenario
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.keys_in_force import platform_member
from ledger_node.protocol.pairwise import CrossPlatform, Side
from ledger_node.protocol.record import PaymentRecord
from ledger_node.reconcile.reconciler import VerifiedLog
from tests.api_support import Consortium
from tests.regulator_support import start_node

PLATFORMS = ("unionpay", "wechatpay")


def http_client(node: PlatformNode, nodes: dict[str, PlatformNode] | None = None
                ) -> httpx.Client:
    """An HTTP client of ``node``'s real app (in-process, through Starlette's TestClient).

    With ``nodes`` the app reaches the counterparty node a reconciliation request names
    (``http://<platform>``) in process too.
    """
    app = create_app(node)
    if nodes is not None:
        app.state.summary_sources = lambda url: reader(nodes[url.removeprefix("http://")])
    return httpx.Client(transport=TestClient(app)._transport, base_url="http://testserver")


def reader(node: PlatformNode) -> NodeClient:
    """The public API of ``node`` as anyone reads it."""
    return NodeClient("http://testserver", http=http_client(node), retries=0)


def sdk(consortium: Consortium, party: Party, node: PlatformNode,
        nodes: dict[str, PlatformNode] | None = None, **options: Any) -> PlatformClient:
    """``party``'s SDK client of its node: escrows for pboc, tags for cross-platform records."""
    settings: dict[str, Any] = {
        "regulator_key": consortium.pboc.sm2_key.public_key(),
        "counterparties": lambda name: registered_platform(consortium.chain, name),
        "retries": 0,
    } | options
    return PlatformClient("http://testserver", party.name, party.account.address,
                          party.sm2_key, http=http_client(node, nodes), **settings)


def start_platforms(consortium: Consortium, tmp: Path) -> dict[str, PlatformNode]:
    """Both platforms' nodes, started, on stores under ``tmp``."""
    return {name: start_node(consortium, getattr(consortium, name), tmp / f"{name}.db")
            for name in PLATFORMS}


def verified_log(consortium: Consortium, node: PlatformNode, via: PlatformNode | None = None
                 ) -> VerifiedLog:
    """``node``'s log read over the public API (of ``via``, default the node itself)."""
    member = platform_member(consortium.chain, node.platform)
    return VerifiedLog(consortium.chain, member, node.log_id, reader(via or node))


def scenario_hint(scenario: Scenario) -> Callable[[PaymentRecord], CrossPlatform | None]:
    """Which half of its payment a scenario record is.

    The record on the payer's platform names the payer's account there; the payee's
    platform's record names the payer's account on the payer's platform, not its own.
    """
    by_identity = {identity.identity: identity for identity in scenario.identities}

    def hint(record: PaymentRecord) -> CrossPlatform | None:
        if not record.clearing_ref:
            return None
        payer = by_identity[record.payer_identity]
        side = (Side.PAYER if payer.account_on(record.platform) == record.payer_account
                else Side.PAYEE)
        other = next(p for p in scenario.spec.platforms if p != record.platform)
        return CrossPlatform(other, side)

    return hint
