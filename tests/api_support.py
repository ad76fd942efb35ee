"""Helpers shared by the API, auth, SDK and end-to-end tests: a consortium on a chain and a
real :class:`PlatformNode` of one of its platforms."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ledger_node.chain.adapter import Deployment, LedgerChain, Role
from ledger_node.demo.run import Party, new_party, sample_records
from ledger_node.log.leaf import Leaf
from ledger_node.platform.node import NodeConfig, PlatformNode
from ledger_node.protocol.auth import sign_batch
from ledger_node.protocol.commitment import new_salt, record_commitment

_ETHER = 10**18
T = TypeVar("T")


@dataclass
class Consortium:
    """Two platforms, a regulator and an auditor on one chain, each with its own keys."""

    chain: LedgerChain  # bound to the deployment, sending as pboc
    deployment: Deployment
    unionpay: Party
    wechatpay: Party
    pboc: Party
    auditor: Party

    def as_party(self, party: Party) -> LedgerChain:
        """The chain seen by ``party``."""
        return self.chain.with_account(party.account)


def make_consortium(chain: LedgerChain) -> Consortium:
    """Deploy JointLedger on ``chain`` with unionpay, wechatpay, pboc (2-of-3) and an auditor."""
    parties = [new_party("unionpay", Role.PLATFORM), new_party("wechatpay", Role.PLATFORM),
               new_party("pboc", Role.REGULATOR), new_party("auditor", Role.AUDITOR)]
    faucet = chain.dev_faucet()
    for party in parties:
        chain.fund(party.account.address, 10 * _ETHER, faucet)
    as_pboc = chain.with_account(parties[2].account)
    deployment = as_pboc.deploy([p.as_member() for p in parties], threshold=2)
    return Consortium(as_pboc, deployment, *parties)


def make_node(consortium: Consortium, store: Path, **config: Any) -> PlatformNode:
    """A started node of unionpay's log (shard 0) on ``store``."""
    settings: dict[str, Any] = {"seal_interval": 0.05} | config
    node = PlatformNode(NodeConfig(platform="unionpay", store_path=store, **settings),
                        consortium.as_party(consortium.unionpay), consortium.unionpay.sm2_key)
    node.start()
    return node


def random_leaves(count: int, seed: int = 0) -> list[Leaf]:
    """``count`` leaves of fresh commitments to synthetic unionpay records."""
    rng = random.Random(seed)
    return [Leaf(record_commitment(r, new_salt()))
            for r in sample_records("unionpay", count, rng)]


def submission(party: Party, log_id: bytes, leaves: list[Leaf]) -> dict[str, Any]:
    """The JSON body of a batch submission signed by ``party``."""
    return {"leaves": [leaf.to_json() for leaf in leaves], "signer": party.account.address,
            "signature": sign_batch(party.sm2_key, log_id, leaves).hex()}


def wait_for(probe: Callable[[], T | None], timeout: float = 20.0, step: float = 0.02) -> T:
    """Poll ``probe`` until it returns something other than ``None`` (or fail after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        time.sleep(step)
