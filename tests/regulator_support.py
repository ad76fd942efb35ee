"""Helpers for the regulator tests: both platforms' real nodes behind their real HTTP apps
(in-process ASGI transport), their SDK clients, and a regulator node reaching them over it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from api.main import create_app
from ledger_node.client.sdk import PlatformClient, RegulatorClient
from ledger_node.crypto.gmcrypto import SM2PrivateKey
from ledger_node.demo.run import Party
from ledger_node.platform.node import NodeConfig, PlatformNode
from ledger_node.protocol.aml import PartyKind
from ledger_node.protocol.record import Channel, PaymentRecord
from ledger_node.regulator.node import HttpLeafSource, LeafSource, RegulatorConfig, RegulatorNode
from tests.api_support import Consortium, wait_for

T0 = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
PERSON_TO_MERCHANT = (PartyKind.PERSON, PartyKind.INSTITUTION)


def start_node(consortium: Consortium, party: Party, store: Path, **config: Any
               ) -> PlatformNode:
    """A started node of ``party``'s log (shard 0) on ``store``."""
    settings: dict[str, Any] = {"seal_interval": 0.05} | config
    node = PlatformNode(NodeConfig(platform=party.name, store_path=store, **settings),
                        consortium.as_party(party), party.sm2_key)
    node.start()
    return node


def http_to(node: PlatformNode) -> httpx.Client:
    """An HTTP client of ``node``'s real app (in-process ASGI transport)."""
    app = TestClient(create_app(node))
    return httpx.Client(transport=app._transport, base_url="http://testserver")


def platform_client(consortium: Consortium, party: Party, node: PlatformNode,
                    **options: Any) -> PlatformClient:
    """``party``'s SDK client of its own node, sealing escrows for pboc."""
    settings: dict[str, Any] = {"regulator_key": consortium.pboc.sm2_key.public_key()} | options
    return PlatformClient("http://testserver", party.name, party.account.address,
                          party.sm2_key, http=http_to(node), **settings)


def sources_for(consortium: Consortium, nodes: dict[str, PlatformNode],
                key: SM2PrivateKey | None = None) -> dict[str, LeafSource]:
    """Each platform node reached over its HTTP API with pboc's signed requests (signed with
    ``key``, by default pboc's original SM2 key)."""
    return {
        name: HttpLeafSource(RegulatorClient("http://testserver",
                                             consortium.pboc.account.address,
                                             key or consortium.pboc.sm2_key, node.log_id,
                                             http=http_to(node), retries=0))
        for name, node in nodes.items()
    }


def store_config(store: Path | str) -> dict[str, Any]:
    """The :class:`RegulatorConfig` fields of a store at ``store``: a SQLite file, or a
    ``postgresql://`` URL."""
    if isinstance(store, str):
        return {"store_path": None, "store_url": store}
    return {"store_path": store}


def regulator_for(consortium: Consortium, store: Path | str, nodes: dict[str, PlatformNode],
                  **config: Any) -> RegulatorNode:
    """pboc's regulator node on ``store`` (a SQLite file or a PostgreSQL URL) reaching each
    platform node over its HTTP API."""
    return RegulatorNode(RegulatorConfig(name="pboc", **store_config(store), **config),
                         consortium.chain, [consortium.pboc.sm2_key],
                         sources_for(consortium, nodes))


def payment(platform: str, n: int, payer: str, payee: str, amount_fen: int,
            at: datetime = T0, **fields: Any) -> PaymentRecord:
    """A payment record of ``platform`` numbered ``n``."""
    values: dict[str, Any] = {
        "platform": platform, "local_tx_id": f"{platform[:2]}-{n:06d}",
        "payer_identity": payer, "payer_account": f"{platform}-acct-{payer}",
        "payee_identity": payee, "payee_account": f"{platform}-acct-{payee}",
        "amount_fen": amount_fen, "currency": "CNY", "time": at, "channel": Channel.APP,
        "cross_border": False,
    } | fields
    return PaymentRecord(**values)


def wait_anchored(node: PlatformNode, size: int) -> None:
    """Wait until ``node`` has anchored a checkpoint covering ``size`` leaves."""
    def covered() -> bool | None:
        latest = node.latest_checkpoint()
        return True if latest is not None and latest.tree_size >= size else None

    wait_for(covered)
