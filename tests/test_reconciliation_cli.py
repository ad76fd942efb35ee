"""``jointledger reconcile`` through :func:`ledger_node.cli.main.main`: the embedded chain served
as JSON-RPC, two log shards of each platform served over HTTP, unionpay's config file and key
files, and the receipts ``jointledger submit`` writes. The planted findings sit on different
shards of both sides, as do matched pairs. Exit status 1 with the findings, 0 when clean, 2
for unusable input (also a shard log no node is given for), 3 when a node serves a log that
is not the chain's or cannot be reached."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from api.main import create_app
from api.server import PlatformServer
from ledger_node.chain.adapter import LedgerChain
from ledger_node.chain.rpc_server import ChainServer
from ledger_node.cli import main as cli
from ledger_node.cli.reconcile import read_receipts, serving_nodes
from ledger_node.client.sdk import NodeClient, PlatformClient, SubmittedRecord, registered_platform
from ledger_node.crypto.gmcrypto import generate_private_key, private_key_to_pem
from ledger_node.crypto.keyfiles import MemberKeys, key_paths, write_member_keys
from ledger_node.errors import ApiError, InvalidReconciliationInput, LogVerificationFailed
from ledger_node.log.checkpoint import log_id_for
from ledger_node.platform.node import NodeConfig, PlatformNode
from ledger_node.protocol.bundle import ProofBundle, verify_bundle
from ledger_node.protocol.pairwise import CrossPlatform, Side
from ledger_node.protocol.record import PaymentRecord
from tests.api_support import Consortium, make_consortium
from tests.regulator_support import PERSON_TO_MERCHANT, T0, http_to, payment, wait_anchored

START, END = T0 - timedelta(hours=1), T0 + timedelta(hours=3)
AS_OF = (END + timedelta(hours=2)).isoformat()

PAIRS = [  # (n, unionpay amount, wechatpay amount or None: no half, unionpay shard, wechat shard)
    (1, 10_000, 10_000, 0, 0),
    (2, 20_000, 19_900, 0, 1),  # amount mismatch: own shard 0, counterparty shard 1
    (3, 30_000, 30_000, 1, 0),  # matched across shards
    (4, 40_000, None, 1, 0),  # missing: own shard 1
    (5, 50_000, 50_000, 0, 1),  # matched across shards
    (6, 60_000, 60_000, 1, 1),
    (7, 70_000, 70_000, 0, 0),  # also recorded again on counterparty shard 1, another amount
]
DUPLICATE = (7, 69_000, 1)  # (pair, wechatpay amount, wechatpay shard): a second half
CLEAN = (1, 3, 5, 6, 7)


@dataclass
class World:
    consortium: Consortium
    servers: dict[str, PlatformServer]  # "{platform}-{shard}"
    nodes: dict[str, PlatformNode]
    submitted: dict[str, dict[int, SubmittedRecord]]  # platform -> pair number -> record
    config: Path
    receipts: Path
    clean_receipts: Path
    directory: Path

    def urls(self, platform: str) -> list[str]:
        return [self.servers[f"{platform}-{shard}"].url for shard in (0, 1)]


def _write_receipts(path: Path, items: list[SubmittedRecord]) -> Path:
    """The receipts file exactly as ``jointledger submit`` writes it."""
    path.write_text("".join(json.dumps({
        "local_tx_id": s.prepared.record.local_tx_id, "log_id": s.log_id.hex(),
        "shard": s.shard, "index": s.receipt.index,
        "leaf_hash": s.receipt.leaf_hash.hex(), "duplicate": s.receipt.duplicate,
        "commitment": s.prepared.leaf.commitment.hex(), "opening": s.prepared.opening.to_json(),
    }, ensure_ascii=False) + "\n" for s in items), encoding="utf-8")
    return path


def _half(platform: str, n: int, amount: int) -> PaymentRecord:
    return payment(platform, n, "110105198503142534", "91110000101107370X", amount,
                   T0 + timedelta(minutes=n), clearing_ref=f"CR-CLI-{n:04d}")


def _submit(consortium: Consortium, server: PlatformServer, name: str, shard: int,
            records: list[PaymentRecord]) -> list[SubmittedRecord]:
    """Submit ``records`` to shard ``shard`` of ``name`` (its own client: the shard is
    chosen here, not by commitment), tagged for the other platform."""
    party = getattr(consortium, name)
    other, side = (("wechatpay", Side.PAYER) if name == "unionpay"
                   else ("unionpay", Side.PAYEE))
    with PlatformClient(server.url, name, party.account.address, party.sm2_key, shard=shard,
                        regulator_key=consortium.pboc.sm2_key.public_key(),
                        counterparties=lambda n: registered_platform(consortium.chain, n)
                        ) as client:
        return client.submit_records(records, kinds=lambda r: PERSON_TO_MERCHANT,
                                     cross_platform=lambda r: CrossPlatform(other, side))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("reconcile-cli")
    embedded = LedgerChain.embedded()
    chain_server = ChainServer(embedded)
    chain_server.start()
    nodes: dict[str, PlatformNode] = {}
    servers: dict[str, PlatformServer] = {}
    try:
        consortium = make_consortium(LedgerChain.from_rpc(chain_server.url))
        deployment = directory / "deployment.json"
        consortium.deployment.save(deployment)
        for name in ("unionpay", "wechatpay"):
            party = getattr(consortium, name)
            chain = LedgerChain.from_rpc(chain_server.url, party.account).attach(
                consortium.deployment)
            for shard in (0, 1):
                key = f"{name}-{shard}"
                nodes[key] = PlatformNode(NodeConfig(platform=name, shard=shard, store_path=(
                    directory / f"{key}.db"), seal_interval=0.05), chain, party.sm2_key)
                nodes[key].start()
                servers[key] = PlatformServer(create_app(nodes[key]))
                servers[key].start()
        union = consortium.unionpay
        write_member_keys(directory / "keys", "unionpay", MemberKeys(union.sm2_key,
                                                                    union.account))
        private, _, account = key_paths(directory / "keys", "unionpay")
        port = servers["unionpay-0"].url.rsplit(":", 1)[1]
        config = directory / "unionpay.toml"
        config.write_text(
            f'[node]\nplatform = "unionpay"\nstore = "unused.db"\n\n'
            f'[http]\nport = {port}\n\n'
            f'[keys]\nsm2 = "{private}"\naccount = "{account}"\n\n'
            f'[chain]\ndeployment = "{deployment}"\nrpc_url = "{chain_server.url}"\n',
            encoding="utf-8")
        submitted: dict[str, dict[int, SubmittedRecord]] = {"unionpay": {}, "wechatpay": {}}
        for name, shard in (("unionpay", 0), ("unionpay", 1), ("wechatpay", 0),
                            ("wechatpay", 1)):
            column, where = (1, 3) if name == "unionpay" else (2, 4)
            chosen = [pair for pair in PAIRS if pair[where] == shard and pair[column]]
            done = _submit(consortium, servers[f"{name}-{shard}"], name, shard,
                           [_half(name, pair[0], pair[column]) for pair in chosen])
            submitted[name].update((pair[0], item) for pair, item in zip(chosen, done,
                                                                         strict=True))
            if name == "wechatpay" and shard == DUPLICATE[2]:
                done += _submit(consortium, servers[f"{name}-{shard}"], name, shard,
                                [_half(name, DUPLICATE[0], DUPLICATE[1])])
            wait_anchored(nodes[f"{name}-{shard}"], len(done))
        mine = submitted["unionpay"]
        receipts = _write_receipts(directory / "records.jsonl.receipts.jsonl",
                                   [mine[n] for n in sorted(mine)])
        clean = _write_receipts(directory / "clean.receipts.jsonl", [mine[n] for n in CLEAN])
        yield World(consortium, servers, nodes, submitted, config, receipts, clean, directory)
    finally:
        for server in servers.values():
            server.stop()
        for node in nodes.values():
            node.stop()
        chain_server.stop()


def _run(world: World, *extra: str, receipts: Path | None = None,
         urls: list[str] | None = None, counterparty_urls: list[str] | None = None,
         window: tuple[str, str] | None = None) -> int:
    start, end = window or (START.isoformat(), END.isoformat())
    own = world.urls("unionpay") if urls is None else urls
    return cli.main(["reconcile", "--config", str(world.config), "--counterparty", "wechatpay",
                     "--counterparty-url", *(counterparty_urls or world.urls("wechatpay")),
                     "--window", start, end, "--records", str(receipts or world.receipts),
                     "--as-of", AS_OF, *(["--url", *own] if own else []), *extra])


def test_findings_on_either_shard_exit_1_with_a_private_report(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    assert _run(world, "--out", str(out)) == 1
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    assert report["format"] == "jointledger/reconciliation-shards/v1"
    assert report["counts"] == {"matched": 5, "amount_mismatch": 1, "missing": 1, "pending": 0,
                                "duplicated_on_counterparty": 1}
    assert [(log["shard"], log["log_id"], log["verified_size"]) for log in report["own_logs"]
            ] == [(0, log_id_for("unionpay", 0).hex(), 4), (1, log_id_for("unionpay", 1).hex(), 3)]
    assert [(log["shard"], log["verified_size"]) for log in report["counterparty_logs"]] == [
        (0, 3), (1, 4)]
    by_ref = {i["record"]["clearing_ref"]: i for i in report["items"]}
    assert len(by_ref) == len(PAIRS)
    theirs = world.submitted["wechatpay"]
    for n, _, their_amount, own_shard, their_shard in PAIRS:
        item = by_ref[f"CR-CLI-{n:04d}"]
        mine = world.submitted["unionpay"][n]
        assert (item["shard"], item["log_id"], item["index"]) == (
            own_shard, mine.log_id.hex(), mine.receipt.index), n
        expected = ("missing" if their_amount is None else
                    "amount_mismatch" if n == 2 else "matched")
        assert item["status"] == expected, n
        if their_amount is None:
            assert item["counterparty"] == []
            continue
        found, *again = item["counterparty"]
        if n == DUPLICATE[0]:  # matched on shard 0 although shard 1 holds it with another amount
            assert [(f["shard"], f["index"]) for f in again] == [(1, 3)]
        half = theirs[n]
        assert (found["shard"], found["log_id"], found["index"]) == (
            their_shard, half.log_id.hex(), half.receipt.index), n
        assert found["leaf"]["commitment"] == half.prepared.leaf.commitment.hex()
    for item in report["items"]:  # every bundle (matched ones too) verifies on the chain
        assert verify_bundle(ProofBundle.from_json(item["bundle"]),
                             chain=world.consortium.chain).valid
        for found in item["counterparty"]:
            bundle = ProofBundle.from_json(found["bundle"])
            assert bundle.checkpoint.checkpoint.log_id.hex() == found["log_id"]
            assert verify_bundle(bundle, chain=world.consortium.chain).valid
    printed = capsys.readouterr().out
    assert "unionpay shard 0 4 leaves, shard 1 3 leaves; wechatpay shard 0 3 leaves" in printed
    mismatch = f"(unionpay shard 0 leaf {world.submitted['unionpay'][2].receipt.index}; " \
               f"wechatpay shard 1 leaf {theirs[2].receipt.index})"
    assert mismatch in printed and "un-000002" in printed
    assert f"(unionpay shard 1 leaf {world.submitted['unionpay'][4].receipt.index})" in printed
    assert "CR-CLI-0001" not in printed  # matched payments are not listed
    assert str(out) in printed


def test_a_clean_window_exits_0(world: World, tmp_path: Path) -> None:
    out = tmp_path / "clean.json"
    assert _run(world, "--out", str(out), "--findings-only-bundles",
                receipts=world.clean_receipts) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["clean"] and report["counts"]["matched"] == len(CLEAN)
    assert {i["shard"] for i in report["items"]} == {0, 1}
    assert {f["shard"] for i in report["items"] for f in i["counterparty"]} == {0, 1}
    assert all("bundle" not in i for i in report["items"])


def test_the_default_report_path(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                 ) -> None:
    monkeypatch.chdir(tmp_path)
    assert _run(world, receipts=world.clean_receipts) == 0
    (written,) = tmp_path.glob("reconciliation-unionpay-wechatpay-*.json")
    assert written.name == f"reconciliation-unionpay-wechatpay-{START:%Y%m%dT%H%M%S}Z.json"


def test_receipts_without_a_log_id_are_in_the_configs_shard(world: World, tmp_path: Path
                                                             ) -> None:
    """Receipts written before shards name no log: they are the config's shard's (0)."""
    old = tmp_path / "old.receipts.jsonl"
    old.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items()
                                       if k not in ("log_id", "shard")}) + "\n"
                           for line in world.clean_receipts.read_text().splitlines()
                           if json.loads(line)["shard"] == 0))
    out = tmp_path / "old.json"
    assert _run(world, "--out", str(out), receipts=old,
                urls=[world.urls("unionpay")[0]]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [i["record"]["clearing_ref"] for i in report["items"]] == [
        "CR-CLI-0001", "CR-CLI-0005", "CR-CLI-0007"]


def test_a_counterparty_shard_with_no_node_given_exits_2(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never.json"
    assert _run(world, "--out", str(out),
                counterparty_urls=[world.urls("wechatpay")[0]]) == 2
    err = capsys.readouterr().err
    assert "--counterparty-url" in err and "wechatpay's shard 1" in err and "on chain" in err
    assert log_id_for("wechatpay", 1).hex()[:16] in err
    assert not out.exists()


def test_an_own_shard_with_no_node_given_exits_2(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    for urls in ([world.urls("unionpay")[0]], []):  # given, and the config's [http] default
        assert _run(world, urls=urls) == 2
        err = capsys.readouterr().err
        assert "--url" in err and "unionpay's shard 1" in err and "named by the receipts" in err


def test_the_other_platforms_receipts_are_named_as_theirs_exits_2(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """wechatpay's receipts given to unionpay's reconcile: the message says whose they are,
    what was expected and what to try, before any node is asked."""
    theirs = world.submitted["wechatpay"]
    receipts = _write_receipts(tmp_path / "wechat.receipts.jsonl",
                               [theirs[n] for n in sorted(theirs)])
    out = tmp_path / "never.json"
    assert _run(world, "--out", str(out), receipts=receipts) == 2
    err = capsys.readouterr().err
    assert "--records" in err and str(receipts) in err
    assert "wechatpay's receipts" in err and "not unionpay's" in err
    assert "unionpay's own receipts" in err and "jointledger submit" in err
    assert "wechatpay's config" in err  # what to try instead
    assert "shard ?" not in err and not out.exists()


def test_one_log_given_at_two_urls_exits_2(world: World,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    first = world.urls("wechatpay")[0]
    alias = first.replace("127.0.0.1", "localhost")
    assert _run(world, counterparty_urls=[first, alias, world.urls("wechatpay")[1]]) == 2
    assert "serves the same log as" in capsys.readouterr().err


def test_a_counterparty_node_serving_another_platforms_log_exits_3(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(world, counterparty_urls=world.urls("unionpay")) == 3
    err = capsys.readouterr().err
    assert "wrong-log" in err and "serves 'unionpay'" in err


@pytest.mark.slow  # the client's retries: ~4 s
def test_an_unreachable_node_exits_3(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(world, counterparty_urls=[*world.urls("wechatpay"), "http://127.0.0.1:9"]) == 3
    err = capsys.readouterr().err
    assert "unreachable" in err and "http://127.0.0.1:9" in err


def _bad_receipts(directory: Path, name: str, lines: list[str]) -> Path:
    path = directory / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_unusable_input_exits_2(world: World, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    good = world.receipts.read_text(encoding="utf-8").splitlines()
    first = json.loads(good[0])
    other = json.loads(good[1])
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "end before start": ({"window": (END.isoformat(), START.isoformat())}, "not after"),
        "naive start": ({"window": ("2026-11-27T00:00:00", END.isoformat())}, "no time zone"),
        "not a time": ({"window": ("yesterday", END.isoformat())}, "not an RFC 3339"),
        "too long": ({"window": (START.isoformat(), (START + timedelta(days=40)).isoformat())},
                     "at most"),
        "not json": ({"receipts": _bad_receipts(tmp_path, "a", ["{"])}, ":1: not JSON"),
        "no index": ({"receipts": _bad_receipts(tmp_path, "b", [json.dumps(
            {**first, "index": None})])}, "is not a leaf index"),
        "wrong commitment": ({"receipts": _bad_receipts(tmp_path, "c", [json.dumps(
            {**first, "commitment": other["commitment"]})])}, "unusable opening"),
        "two openings": ({"receipts": _bad_receipts(tmp_path, "d", [good[0], json.dumps(
            {**other, "index": first["index"]})])}, "different opening"),
        "swapped index": ({"receipts": _bad_receipts(tmp_path, "e", [json.dumps(
            {**first, "index": other["index"]})])}, "does not open the commitment"),
        "empty": ({"receipts": _bad_receipts(tmp_path, "f", [""])}, "holds no receipts"),
        "missing file": ({"receipts": tmp_path / "nope"}, "cannot read"),
    }
    for name, (options, message) in cases.items():
        assert _run(world, **options) == 2, name
        assert message in capsys.readouterr().err, name
    for counterparty, message in (("alipay", "not registered"), ("unionpay", "itself")):
        assert cli.main(["reconcile", "--config", str(world.config), "--counterparty",
                         counterparty, "--counterparty-url", "http://127.0.0.1:9",
                         "--window", START.isoformat(), END.isoformat(),
                         "--records", str(world.receipts)]) == 2
        assert message in capsys.readouterr().err
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    assert _run(world, "--retired-key", str(junk)) == 2
    assert _run(world, "--grace", "-1") == 2
    assert _run(world, "--as-of", "soon") == 2
    assert "not an RFC 3339" in capsys.readouterr().err


def test_a_retired_key_file_is_accepted(world: World, tmp_path: Path) -> None:
    retired = tmp_path / "old.sm2.pem"
    retired.write_bytes(private_key_to_pem(generate_private_key()))
    assert _run(world, "--retired-key", str(retired), "--out", str(tmp_path / "r.json"),
                receipts=world.clean_receipts) == 0


def test_receipts_are_read_by_log_and_deduplicated(world: World, tmp_path: Path) -> None:
    twice = _bad_receipts(tmp_path, "twice", world.clean_receipts.read_text().splitlines() * 2)
    default = log_id_for("unionpay", 0)
    by_log = read_receipts([twice], default_log=default)
    assert by_log == read_receipts([world.clean_receipts], default_log=default)
    mine = world.submitted["unionpay"]
    assert {log_id: [index for index, _ in records] for log_id, records in by_log.items()} == {
        log_id_for("unionpay", shard): sorted(mine[n].receipt.index for n in CLEAN
                                              if mine[n].shard == shard) for shard in (0, 1)}
    bad = json.loads(world.clean_receipts.read_text().splitlines()[0]) | {"log_id": "ab"}
    with pytest.raises(InvalidReconciliationInput, match="not a 32-byte hex log id"):
        read_receipts([_bad_receipts(tmp_path, "badlog", [json.dumps(bad)])],
                      default_log=default)


@pytest.mark.slow  # the node's chain client gives up after its retries: ~2 s
def test_a_node_whose_chain_is_down_still_names_its_log(tmp_path: Path) -> None:
    """Its health answer is a 503 problem carrying the health document: the node is read as
    usual (the command verifies against its own chain connection, not the node's)."""
    embedded = LedgerChain.embedded()
    chain_server = ChainServer(embedded)
    chain_server.start()
    consortium = make_consortium(LedgerChain.from_rpc(chain_server.url))
    party = consortium.wechatpay
    node = PlatformNode(NodeConfig(platform="wechatpay", shard=1, store_path=tmp_path / "w.db",
                                   seal_interval=0.05),
                        LedgerChain.from_rpc(chain_server.url, party.account).attach(
                            consortium.deployment), party.sm2_key)
    node.start()
    try:
        chain_server.stop()
        with NodeClient("http://testserver", http=http_to(node), retries=0) as client:
            with pytest.raises(ApiError) as problem:
                client.health()
            assert problem.value.status == 503
            assert serving_nodes("wechatpay", [("http://w1", client)]) == {
                log_id_for("wechatpay", 1): client}
            with pytest.raises(LogVerificationFailed, match="serves 'wechatpay'"):
                serving_nodes("unionpay", [("http://w1", client)])
    finally:
        node.stop()
