"""Sharded intake: a platform's log shards behind one SDK client, the regulator following
every shard log, reconciliation across both platforms' shards, the regulator's URL lists."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ledger_node.chain.adapter import LedgerChain
from ledger_node.client.sdk import NodeClient, PlatformClient, RegulatorClient, registered_platform
from ledger_node.client.sharded import ShardedPlatformClient, shard_of
from ledger_node.demo.localsite import LocalSite
from ledger_node.errors import InvalidBatch, InvalidConfig, UnknownLeaf
from ledger_node.log.checkpoint import log_id_for
from ledger_node.log.leaf import Leaf
from ledger_node.platform.config import load_serve_config
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.bundle import verify_bundle
from ledger_node.protocol.escrow import identity_key
from ledger_node.protocol.pairwise import CrossPlatform, Side
from ledger_node.protocol.reconciliation import Window
from ledger_node.protocol.record import PaymentRecord
from ledger_node.regulator.config import load_regulator_config
from ledger_node.regulator.node import (
    FAULT_NO_ENDPOINT,
    FAULT_UNREACHABLE,
    HttpLeafSource,
    LeafSource,
    RegulatorConfig,
    RegulatorNode,
)
from tests.api_support import make_consortium
from tests.regulator_support import PERSON_TO_MERCHANT, T0, payment, start_node, wait_anchored
from tests.test_regulator_server import GOOD

PLATFORMS = ("unionpay", "wechatpay")


def kinds(record: PaymentRecord) -> Any:
    return PERSON_TO_MERCHANT


class Site:
    """Both platforms with two shard nodes each (``{platform}-{shard}``) on one chain."""

    def __init__(self, tmp: Path) -> None:
        self.consortium = make_consortium(LedgerChain.embedded())
        c = self.consortium
        self.nodes = {f"{name}-{shard}": start_node(c, getattr(c, name),
                                                    tmp / f"{name}-{shard}.db", shard=shard)
                      for name in PLATFORMS for shard in (0, 1)}

    def http(self, node: PlatformNode) -> httpx.Client:
        """The node's real app in process; it reaches ``http://{platform}-{shard}`` nodes
        in process too (for reconciliation)."""
        app = create_app(node)
        app.state.summary_sources = lambda url: self.reader(url.removeprefix("http://"))
        return httpx.Client(transport=TestClient(app)._transport, base_url="http://testserver")

    def reader(self, name: str) -> NodeClient:
        return NodeClient("http://testserver", http=self.http(self.nodes[name]), retries=0)

    def client(self, name: str, **options: Any) -> ShardedPlatformClient:
        party = getattr(self.consortium, name)
        settings: dict[str, Any] = {
            "regulator_key": self.consortium.pboc.sm2_key.public_key(),
            "counterparties": lambda n: registered_platform(self.consortium.chain, n),
            "retries": 0} | options
        return ShardedPlatformClient([
            PlatformClient("http://testserver", name, party.account.address, party.sm2_key,
                           shard=shard, http=self.http(self.nodes[f"{name}-{shard}"]),
                           **settings)
            for shard in (0, 1)])

    def anchored(self) -> None:
        for node in self.nodes.values():
            if node.size():
                wait_anchored(node, node.size())

    def sources(self, *names: str) -> dict[str, list[LeafSource]]:
        pboc = self.consortium.pboc
        out: dict[str, list[LeafSource]] = {}
        for name in names:
            node = self.nodes[name]
            out.setdefault(node.platform, []).append(HttpLeafSource(RegulatorClient(
                "http://testserver", pboc.account.address, pboc.sm2_key,
                http=self.http(node), retries=0)))
        return out

    def regulator(self, tmp: Path, *names: str) -> RegulatorNode:
        return RegulatorNode(RegulatorConfig(name="pboc", store_path=tmp / "pboc.db"),
                             self.consortium.chain, [self.consortium.pboc.sm2_key],
                             self.sources(*(names or tuple(self.nodes))))

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()


@pytest.fixture()
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    yield s
    s.stop()


def _alice(platform: str, first: int, count: int, **fields: Any) -> list[PaymentRecord]:
    return [payment(platform, first + i, "alice", f"shop-{i}", 1_000_00 + i,
                    T0 + timedelta(minutes=i), **fields) for i in range(count)]


# ---------------------------------------------------------------------------- the SDK


def test_submissions_spread_over_both_shards_and_every_bundle_verifies(site: Site) -> None:
    client = site.client("unionpay", chunk_size=7)
    seen: list[int] = []
    submitted = client.submit_records(_alice("unionpay", 0, 40), kinds=kinds,
                                      progress=lambda done, total: seen.append(done))
    assert [s.prepared.record.local_tx_id for s in submitted] == [
        r.local_tx_id for r in _alice("unionpay", 0, 40)]
    shard0, shard1 = site.nodes["unionpay-0"], site.nodes["unionpay-1"]
    assert shard0.size() > 0 and shard1.size() > 0 and shard0.size() + shard1.size() == 40
    assert seen[-1] == 40 and seen == sorted(seen)
    for item in submitted:
        assert item.shard == shard_of(item.prepared.leaf, 2)
        assert item.log_id == log_id_for("unionpay", item.shard)
    site.anchored()
    for item in submitted:
        bundle = client.bundle(item)
        assert bundle.checkpoint.checkpoint.log_id == item.log_id
        assert bundle.index == item.receipt.index
        assert verify_bundle(bundle, chain=site.consortium.chain).valid
    again = client.submit_prepared([s.prepared for s in submitted])  # idempotent per shard
    assert all(a.receipt.duplicate for a in again)
    assert [(a.log_id, a.receipt.index) for a in again] == [
        (s.log_id, s.receipt.index) for s in submitted]
    assert shard0.size() + shard1.size() == 40


def test_sharded_client_rejections(site: Site) -> None:
    client = site.client("unionpay")
    with pytest.raises(InvalidBatch):
        client.submit_prepared([])
    with pytest.raises(UnknownLeaf):
        client.shard_for_log(log_id_for("unionpay", 7))
    with pytest.raises(InvalidConfig, match="same log"):
        ShardedPlatformClient([client.shards[0], client.shards[0]])
    with pytest.raises(InvalidConfig, match="same platform"):
        ShardedPlatformClient([client.shards[0], site.client("wechatpay").shards[1]])
    with pytest.raises(InvalidConfig, match="at least one"):
        ShardedPlatformClient([])
    client.check_shards()
    crossed = ShardedPlatformClient([  # shard 0's client talking to shard 1's node
        PlatformClient("http://testserver", "unionpay", client.account, client.shards[0]._key,
                       shard=0, http=site.http(site.nodes["unionpay-1"]))])
    with pytest.raises(InvalidConfig, match="serves log"):
        crossed.check_shards()
    with pytest.raises(ValueError):
        shard_of(Leaf(bytes(32)), 0)


# ---------------------------------------------------------------------------- the regulator


def test_the_regulator_ingests_every_shard_log_and_traces_across_them(
        site: Site, tmp_path: Path) -> None:
    up = site.client("unionpay").submit_records(_alice("unionpay", 0, 30), kinds=kinds)
    wx = site.client("wechatpay").submit_records(_alice("wechatpay", 0, 6), kinds=kinds)
    site.anchored()
    regulator = site.regulator(tmp_path)
    try:
        assert regulator.sync() == 36
        assert regulator.store.faults() == []
        traced = regulator.trace_identity(identity_key("alice"))
        assert len(traced) == 36
        logs = {t.record.log_id for t in traced}
        assert logs == {s.log_id for s in up} | {s.log_id for s in wx}
        assert len({s.log_id for s in up}) == 2
        for item in traced:
            assert item.bundle.checkpoint.checkpoint.log_id == item.record.log_id
        for item in traced[::6]:
            assert verify_bundle(item.bundle, chain=site.consortium.chain).valid
    finally:
        regulator.stop()


def test_a_shard_log_no_configured_node_serves_is_a_no_endpoint_fault(
        site: Site, tmp_path: Path) -> None:
    submitted = site.client("unionpay").submit_records(_alice("unionpay", 0, 20), kinds=kinds)
    site.anchored()
    regulator = site.regulator(tmp_path, "unionpay-0")  # shard 1's node is not configured
    try:
        on_shard0 = sum(s.shard == 0 for s in submitted)
        assert regulator.sync() == on_shard0
        faults = regulator.store.faults()
        assert [(f.kind, f.log_id) for f in faults] == [
            (FAULT_NO_ENDPOINT, log_id_for("unionpay", 1))]
        assert "serves log" in faults[0].detail
    finally:
        regulator.stop()


# ---------------------------------------------------------------------------- reconciliation


def _cross(platform: str, n: int, amount_fen: int) -> PaymentRecord:
    return payment(platform, n, "alice", "bob", amount_fen, T0 + timedelta(minutes=n),
                   clearing_ref=f"CR{n:06d}")


def test_reconciliation_across_both_sides_shards_finds_the_planted_faults(site: Site) -> None:
    up = [_cross("unionpay", n, 100_00 + n) for n in range(24)]
    wx = [_cross("wechatpay", n, 100_00 + n) for n in range(24)]
    wx[5] = _cross("wechatpay", 5, 999_00)  # amount mismatch
    del wx[9]  # missing on the counterparty
    upc = site.client("unionpay")
    submitted = upc.submit_records(up, kinds=kinds, cross_platform=lambda r: CrossPlatform(
        "wechatpay", Side.PAYER))
    wxc = site.client("wechatpay")
    halves = wxc.submit_records(wx, kinds=kinds, cross_platform=lambda r: CrossPlatform(
        "unionpay", Side.PAYEE))
    assert {h.shard for h in halves} == {0, 1} and {s.shard for s in submitted} == {0, 1}
    site.anchored()
    report = upc.reconcile("wechatpay", Window(T0 - timedelta(hours=1), T0 + timedelta(hours=1)),
                           submitted, counterparty_urls=["http://wechatpay-0",
                                                         "http://wechatpay-1"],
                           chain=site.consortium.chain, grace=60)
    by_tx = {item["record"]["local_tx_id"]: item for item in report["items"]}
    assert len(by_tx) == 24
    assert by_tx["un-000005"]["status"] == "amount_mismatch"
    assert by_tx["un-000009"]["status"] == "missing"
    matched = [i for i in report["items"] if i["status"] == "matched"]
    assert len(matched) == 22
    assert {i["counterparty"][0]["shard"] for i in matched} == {0, 1}
    assert {i["shard"] for i in matched} == {0, 1}
    assert report["counts"]["matched"] == 22 and not report["clean"]
    assert len(report["shards"]) == 4  # every own shard against every counterparty shard
    with pytest.raises(InvalidConfig, match="wechatpay's shard 1 .* on chain but not given"):
        upc.reconcile("wechatpay", Window(T0 - timedelta(hours=1), T0 + timedelta(hours=1)),
                      submitted, counterparty_urls={0: "http://wechatpay-0"},
                      chain=site.consortium.chain, grace=60)


# ---------------------------------------------------------------------------- the config


def test_a_regulator_config_with_a_list_of_urls_per_platform_loads(tmp_path: Path) -> None:
    text = GOOD.replace('unionpay = "http://127.0.0.1:8701"',
                        'unionpay = ["http://127.0.0.1:8701", "http://10.0.0.2:8701"]\n'
                        'wechatpay = "http://127.0.0.1:8702"')
    path = tmp_path / "regulator.toml"
    path.write_text(text)
    config = load_regulator_config(path)
    assert config.platforms == {"unionpay": ("http://127.0.0.1:8701", "http://10.0.0.2:8701"),
                                "wechatpay": "http://127.0.0.1:8702"}


@pytest.mark.parametrize("value", ['[]', '["http://a:1", "ftp://b"]', '["http://a:1", 5]',
                                   '["http://a:1", "http://a:1"]'])
def test_a_bad_url_list_is_refused(tmp_path: Path, value: str) -> None:
    path = tmp_path / "regulator.toml"
    path.write_text(GOOD.replace('"http://127.0.0.1:8701"', value))
    with pytest.raises(InvalidConfig, match="platforms.unionpay"):
        load_regulator_config(path)


def test_a_local_site_writes_shard_configs_and_a_regulator_following_every_shard(
        tmp_path: Path) -> None:
    site = LocalSite(tmp_path)
    _, first = site._platform_config("unionpay", 0.2, 10_000, 0)
    args, second = site._platform_config("unionpay", 0.2, 10_000, 1)
    _, other = site._platform_config("wechatpay", 0.2, 10_000)
    assert args[-1] == "unionpay-shard1.toml"
    shard1 = load_serve_config(tmp_path / "unionpay-shard1.toml")
    assert shard1.node.shard == 1 and shard1.node.store_path.name == "unionpay-shard1.db"
    assert load_serve_config(tmp_path / "unionpay.toml").node.shard == 0
    assert site.node_urls == {"unionpay": first, "wechatpay": other}
    site._regulator_config("pboc", 0.2, ["unionpay", "wechatpay"])
    config = load_regulator_config(tmp_path / "pboc-regulator.toml")
    assert config.platforms == {"unionpay": (first, second), "wechatpay": other}
    with pytest.raises(ValueError):
        site._platform_config("unionpay", 0.2, 10_000, -1)


def test_a_disclosure_of_a_leaf_on_shard_1_is_answered_and_collected_there(
        site: Site, tmp_path: Path) -> None:
    client = site.client("unionpay")
    submitted = client.submit_records(_alice("unionpay", 0, 12), kinds=kinds)
    site.anchored()
    target = next(s for s in submitted if s.shard == 1)
    regulator = site.regulator(tmp_path)
    try:
        regulator.sync()
        request_id = regulator.request_disclosure(target.prepared.leaf.commitment, bytes(32))
        chain = site.consortium.chain
        client.answer_disclosure(request_id, target, site.consortium.pboc.sm2_key.public_key(),
                                 chain_id=chain.chain_id, contract=chain.deployment.address)
        collected = regulator.collect_disclosure(request_id)
        assert collected is not None and collected.opening == target.prepared.opening
        assert collected.record.log_id == target.log_id
        assert collected.record.index == target.receipt.index
    finally:
        regulator.stop()


def test_a_node_that_cannot_say_which_log_it_serves_is_tried_and_reported_unreachable(
        site: Site, tmp_path: Path) -> None:
    site.client("unionpay").submit_records(_alice("unionpay", 0, 4), kinds=kinds)
    site.anchored()
    pboc = site.consortium.pboc
    down = HttpLeafSource(RegulatorClient("http://127.0.0.1:9", pboc.account.address,
                                          pboc.sm2_key, retries=0, timeout=2))
    regulator = RegulatorNode(RegulatorConfig(name="pboc", store_path=tmp_path / "pboc.db"),
                              site.consortium.chain, [pboc.sm2_key], {"unionpay": [down]})
    try:
        assert regulator.source_for("unionpay", log_id_for("unionpay", 0)) is down
        assert regulator.source_for("wechatpay", log_id_for("wechatpay", 0)) is None
        regulator.sync()
        assert {f.kind for f in regulator.store.faults()} == {FAULT_UNREACHABLE}
    finally:
        regulator.stop()
