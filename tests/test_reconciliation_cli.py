"""``jointledger reconcile`` through :func:`ledger_node.cli.main`: the embedded chain served
as JSON-RPC, both platforms' nodes served over HTTP, unionpay's config file and key files,
and the receipts ``jointledger submit`` writes. Exit status 1 with the planted findings,
0 when clean, 2 for unusable input, 3 when a node serves a log that is not the chain's."""

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
from ledger_node import cli
from ledger_node.chain import LedgerChain
from ledger_node.gmcrypto import generate_private_key, private_key_to_pem
from ledger_node.keyfiles import MemberKeys, key_paths, write_member_keys
from ledger_node.node import NodeConfig, PlatformNode
from ledger_node.pairwise import CrossPlatform, Side
from ledger_node.reconcile_command import read_receipts
from ledger_node.record import PaymentRecord
from ledger_node.rpc_server import ChainServer
from ledger_node.sdk import PlatformClient, SubmittedRecord, registered_platform
from tests.api_support import Consortium, make_consortium
from tests.regulator_support import PERSON_TO_MERCHANT, T0, payment, wait_anchored

START, END = T0 - timedelta(hours=1), T0 + timedelta(hours=3)
AS_OF = (END + timedelta(hours=2)).isoformat()


@dataclass
class World:
    consortium: Consortium
    servers: dict[str, PlatformServer]
    nodes: dict[str, PlatformNode]
    config: Path
    receipts: Path
    clean_receipts: Path
    directory: Path


def _write_receipts(path: Path, items: list[SubmittedRecord]) -> Path:
    """The receipts file exactly as ``jointledger submit`` writes it."""
    path.write_text("".join(json.dumps({
        "local_tx_id": s.prepared.record.local_tx_id, "index": s.receipt.index,
        "leaf_hash": s.receipt.leaf_hash.hex(), "duplicate": s.receipt.duplicate,
        "commitment": s.prepared.leaf.commitment.hex(), "opening": s.prepared.opening.to_json(),
    }, ensure_ascii=False) + "\n" for s in items), encoding="utf-8")
    return path


def _halves(n: int, amount: int, theirs: int | None = None
            ) -> tuple[PaymentRecord, PaymentRecord]:
    at = T0 + timedelta(minutes=n)
    ref = {"clearing_ref": f"CR-CLI-{n:04d}"}
    return (payment("unionpay", n, "110105198503142534", "91110000101107370X", amount, at, **ref),
            payment("wechatpay", n, "110105198503142534", "91110000101107370X",
                    amount if theirs is None else theirs, at, **ref))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("reconcile-cli")
    embedded = LedgerChain.embedded()
    chain_server = ChainServer(embedded.w3)
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
            nodes[name] = PlatformNode(NodeConfig(platform=name, store_path=directory
                                                  / f"{name}.db", seal_interval=0.05),
                                       chain, party.sm2_key)
            nodes[name].start()
            servers[name] = PlatformServer(create_app(nodes[name]))
            servers[name].start()
        union = consortium.unionpay
        write_member_keys(directory / "keys", "unionpay", MemberKeys(union.sm2_key,
                                                                    union.account))
        private, _, account = key_paths(directory / "keys", "unionpay")
        port = servers["unionpay"].url.rsplit(":", 1)[1]
        config = directory / "unionpay.toml"
        config.write_text(
            f'[node]\nplatform = "unionpay"\nstore = "unused.db"\n\n'
            f'[http]\nport = {port}\n\n'
            f'[keys]\nsm2 = "{private}"\naccount = "{account}"\n\n'
            f'[chain]\ndeployment = "{deployment}"\nrpc_url = "{chain_server.url}"\n',
            encoding="utf-8")
        pairs = [_halves(1, 10_000), _halves(2, 20_000, theirs=19_900), _halves(3, 30_000),
                 _halves(4, 40_000)]
        submitted: dict[str, list[SubmittedRecord]] = {}
        for name, halves, side in (("unionpay", [p[0] for p in pairs], Side.PAYER),
                                   ("wechatpay", [p[1] for p in pairs[:3]], Side.PAYEE)):
            party = getattr(consortium, name)
            other = "wechatpay" if name == "unionpay" else "unionpay"
            cross = CrossPlatform(other, side)
            with PlatformClient(servers[name].url, name, party.account.address, party.sm2_key,
                                regulator_key=consortium.pboc.sm2_key.public_key(),
                                counterparties=lambda n: registered_platform(
                                    consortium.chain, n)) as client:
                submitted[name] = client.submit_records(
                    halves, kinds=lambda r: PERSON_TO_MERCHANT,
                    cross_platform=lambda r, cross=cross: cross)  # type: ignore[misc]
            wait_anchored(nodes[name], len(halves))
        receipts = _write_receipts(directory / "records.jsonl.receipts.jsonl",
                                   submitted["unionpay"])
        clean = _write_receipts(directory / "clean.receipts.jsonl",
                                [submitted["unionpay"][0], submitted["unionpay"][2]])
        yield World(consortium, servers, nodes, config, receipts, clean, directory)
    finally:
        for server in servers.values():
            server.stop()
        for node in nodes.values():
            node.stop()
        chain_server.stop()


def _run(world: World, *extra: str, receipts: Path | None = None,
         counterparty_url: str | None = None, window: tuple[str, str] | None = None) -> int:
    start, end = window or (START.isoformat(), END.isoformat())
    return cli.main(["reconcile", "--config", str(world.config), "--counterparty", "wechatpay",
                     "--counterparty-url", counterparty_url or world.servers["wechatpay"].url,
                     "--window", start, end, "--records", str(receipts or world.receipts),
                     "--as-of", AS_OF, *extra])


def test_findings_exit_1_with_a_private_report(world: World, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    assert _run(world, "--out", str(out)) == 1
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    assert report["counts"] == {"matched": 2, "amount_mismatch": 1, "missing": 1, "pending": 0,
                                "duplicated_on_counterparty": 0}
    by_ref = {i["record"]["clearing_ref"]: i for i in report["items"]}
    assert by_ref["CR-CLI-0002"]["status"] == "amount_mismatch"
    assert by_ref["CR-CLI-0004"]["status"] == "missing"
    assert all(i["bundle"] is not None for i in report["items"])  # matched ones too
    printed = capsys.readouterr().out
    assert "amount_mismatch" in printed and "un-000002" in printed and "CR-CLI-0004" in printed
    assert "CR-CLI-0001" not in printed  # matched payments are not listed
    assert str(out) in printed


def test_a_clean_window_exits_0(world: World, tmp_path: Path) -> None:
    out = tmp_path / "clean.json"
    assert _run(world, "--out", str(out), "--findings-only-bundles",
                receipts=world.clean_receipts) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["clean"] and report["counts"]["matched"] == 2
    assert all("bundle" not in i for i in report["items"])


def test_the_default_report_path(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                 ) -> None:
    monkeypatch.chdir(tmp_path)
    assert _run(world, receipts=world.clean_receipts) == 0
    (written,) = tmp_path.glob("reconciliation-unionpay-wechatpay-*.json")
    assert written.name == f"reconciliation-unionpay-wechatpay-{START:%Y%m%dT%H%M%S}Z.json"


def test_a_counterparty_node_serving_another_log_exits_3(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(world, counterparty_url=world.servers["unionpay"].url) == 3
    assert "withheld" in capsys.readouterr().err


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


def test_receipts_are_read_and_deduplicated(world: World, tmp_path: Path) -> None:
    twice = _bad_receipts(tmp_path, "twice", world.clean_receipts.read_text().splitlines() * 2)
    assert [index for index, _ in read_receipts([twice])] == [
        index for index, _ in read_receipts([world.clean_receipts])]
