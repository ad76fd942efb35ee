"""``jointledger submit`` in process: escrows sealed for the regulator registered on chain,
party kinds from the records file or classified from the identity, every rejection before
anything is sent. The command line as separate processes is in test_cli_e2e.py."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.main import create_app
from api.server import PlatformServer
from ledger_node.chain.adapter import Member, Role
from ledger_node.cli import main as cli
from ledger_node.cli.client import RecordFileError, read_records, run_submit
from ledger_node.client.sdk import registered_platform, registered_regulator_key
from ledger_node.crypto.gmcrypto import SM2PublicKey
from ledger_node.crypto.keyfiles import MemberKeys, key_paths, write_member_keys
from ledger_node.demo.run import sample_records
from ledger_node.errors import UnknownCounterparty, UnknownRegulator
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.aml import PartyKind
from ledger_node.protocol.commitment import RecordOpening, verify_opening
from ledger_node.protocol.escrow import EscrowOpener, EscrowPayload, key_fingerprint
from ledger_node.protocol.pairwise import Side, pairwise_key, record_tags
from ledger_node.protocol.record import PaymentRecord
from tests.api_support import Consortium

PERSON_ID = "11010519491231002X"  # valid GB 11643 resident identity number
CREDIT_CODE = "91350100M000100Y43"  # valid GB 32100 unified social credit code
PERSON, INSTITUTION = PartyKind.PERSON, PartyKind.INSTITUTION


@pytest.fixture(scope="module")
def server(node: PlatformNode) -> Iterator[PlatformServer]:
    """unionpay's node served over HTTP on a free loopback port."""
    served = PlatformServer(create_app(node))
    served.start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def keys(consortium: Consortium, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """unionpay's SM2 and account key files."""
    directory = tmp_path_factory.mktemp("keys")
    write_member_keys(directory, "unionpay",
                      MemberKeys(consortium.unionpay.sm2_key, consortium.unionpay.account))
    private, _, account = key_paths(directory, "unionpay")
    return private, account


def records(count: int, seed: int) -> list[PaymentRecord]:
    """unionpay records whose payer is a resident ID and payee a credit code."""
    return [dataclasses.replace(r, payer_identity=PERSON_ID, payee_identity=CREDIT_CODE)
            for r in sample_records("unionpay", count, random.Random(seed))]


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


class Submitter:
    """Runs ``run_submit`` against the node, counting regulator key lookups."""

    def __init__(self, consortium: Consortium, node: PlatformNode, server: PlatformServer,
                 keys: tuple[Path, Path]) -> None:
        self.consortium, self.node, self.url, self.keys = consortium, node, server.url, keys
        self.lookups = 0
        self.output: list[str] = []
        self.warnings: list[str] = []

    def registered_key(self) -> SM2PublicKey:
        self.lookups += 1
        return registered_regulator_key(self.consortium.chain)

    def __call__(self, path: Path, *, escrow: bool = True, chunk: int = 2,
                 regulator_key: Callable[[], SM2PublicKey] | None = None) -> list[dict[str, Any]]:
        """Submit ``path``; return the receipts file's lines."""
        key = regulator_key or self.registered_key
        run_submit(path, url=self.url, platform="unionpay", sm2_key=self.keys[0],
                   account_key=self.keys[1], regulator_key=key if escrow else None,
                   chunk=chunk, echo=self.output.append, warn=self.warnings.append,
                   progress=lambda done, total: None)
        receipts = path.with_name(path.name + ".receipts.jsonl")
        return [json.loads(line) for line in receipts.read_text().splitlines()]


@pytest.fixture
def submit(consortium: Consortium, node: PlatformNode, server: PlatformServer,
           keys: tuple[Path, Path]) -> Submitter:
    return Submitter(consortium, node, server, keys)


def opened(consortium: Consortium, node: PlatformNode, receipt: dict[str, Any]
           ) -> tuple[PaymentRecord, EscrowPayload]:
    """The receipt's committed record (checked against the leaf) and its opened escrow."""
    leaf = node.leaf(receipt["index"])
    opening = RecordOpening.from_json(receipt["opening"])
    verify_opening(leaf.commitment, opening)  # the kinds are not part of the commitment
    payload = EscrowOpener.from_keys(consortium.pboc.sm2_key).open(leaf.escrow, leaf.commitment)
    return opening.record, payload


def test_escrows_open_with_the_regulators_key_kinds_stated_or_classified(
    consortium: Consortium, node: PlatformNode, submit: Submitter, tmp_path: Path
) -> None:
    base = records(5, seed=1)
    stated = {"payer_kind": "institution", "payee_kind": "person"}
    rows = [
        base[0].to_json(),                                        # both classified
        base[1].to_json() | stated,                               # stated wins over the ID
        base[2].to_json() | {"payer_identity": "ACME Trading", "payee_identity": "Li Lei"}
        | stated,                                                 # names need stated kinds
        base[3].to_json() | {"payer_identity": "Wang Fang", "payer_kind": "person",
                             "payee_kind": None},                 # payee classified
        base[4].to_json() | {"payer_kind": None},                 # null: classified
    ]
    expected = [(PERSON, INSTITUTION), (INSTITUTION, PERSON), (INSTITUTION, PERSON),
                (PERSON, INSTITUTION), (PERSON, INSTITUTION)]
    receipts = submit(jsonl(tmp_path / "records.jsonl", rows), chunk=2)

    assert len(receipts) == 5
    for receipt, row, (payer, payee) in zip(receipts, rows, expected, strict=True):
        record, payload = opened(consortium, node, receipt)
        assert record == PaymentRecord.from_json(
            {k: v for k, v in row.items() if k not in ("payer_kind", "payee_kind")})
        assert "payer_kind" not in receipt["opening"]["record"]
        assert payload == EscrowPayload.from_record(record, payer_kind=payer, payee_kind=payee)
    assert submit.lookups == 1 + 3  # checked once before sending, then once per chunk (2+2+1)
    fingerprint = key_fingerprint(consortium.pboc.sm2_key.public_key()).hex()
    assert f"AML escrows sealed for the regulator (key fingerprint {fingerprint})" in \
        submit.output
    assert not submit.warnings


def test_csv_kind_columns_empty_cells_are_classified(
    consortium: Consortium, node: PlatformNode, submit: Submitter, tmp_path: Path
) -> None:
    base = records(2, seed=2)
    header = [*base[0].to_json(), "payer_kind", "payee_kind"]

    def line(record: PaymentRecord, payer_kind: str, payee_kind: str) -> str:
        cells = record.to_json() | {"payer_kind": payer_kind, "payee_kind": payee_kind}
        return ",".join(str(cells[h]).lower() if h == "cross_border" else str(cells[h])
                        for h in header)

    path = tmp_path / "records.csv"
    path.write_text(",".join(header) + "\n" + line(base[0], "", "") + "\n"
                    + line(base[1], "institution", "") + "\n")
    receipts = submit(path)
    kinds = [(opened(consortium, node, r)[1].payer_kind, opened(consortium, node, r)[1].payee_kind)
             for r in receipts]
    assert kinds == [(PERSON, INSTITUTION), (INSTITUTION, INSTITUTION)]
    assert read_records(path) == base  # the kind columns are not record fields


def _bad_files(tmp_path: Path) -> list[tuple[Path, str]]:
    good = records(2, seed=3)
    name = {"payee_identity": "Corner Shop"}
    header = ",".join([*good[0].to_json(), "payee_kind"])
    row = ",".join(str(v).lower() if isinstance(v, bool) else str(v)
                   for v in good[1].to_json().values())
    cases = [
        ([good[0].to_json(), good[1].to_json() | {"payer_kind": "Person"}],
         ":2: payer_kind 'Person' is not a party kind (person or institution)"),
        ([good[0].to_json(), good[1].to_json() | {"payee_kind": "company"}],
         ":2: payee_kind 'company' is not a party kind"),
        ([good[0].to_json() | {"payer_kind": 1}], ":1: payer_kind 1 is not a party kind"),
        ([good[0].to_json() | {"payee_kind": True}], ":1: payee_kind True is not a party kind"),
        ([good[0].to_json(), good[1].to_json() | name],
         ":2: payee_kind is not given and payee_identity cannot be classified (identity is "
         "neither a resident ID nor a unified social credit code): give payee_kind"),
        ([good[0].to_json() | {"payer_identity": "13800000000"} | {"payee_kind": "person"}],
         ":1: payer_kind is not given and payer_identity cannot be classified"),
    ]
    files = [(jsonl(tmp_path / f"bad{i}.jsonl", rows), tmp_path.name + f"/bad{i}.jsonl" + what)
             for i, (rows, what) in enumerate(cases)]
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text(f"{header}\n{row},merchant\n")
    files.append((bad_csv, "bad.csv:2: payee_kind 'merchant' is not a party kind"))
    return files


def test_every_bad_kind_is_refused_before_anything_is_sent(
    node: PlatformNode, submit: Submitter, tmp_path: Path
) -> None:
    size = node.size()
    for path, message in _bad_files(tmp_path):
        with pytest.raises(RecordFileError) as caught:
            submit(path)
        assert message in str(caught.value), str(caught.value)
        assert not path.with_name(path.name + ".receipts.jsonl").exists()
    assert submit.lookups == 0  # refused before the chain was asked
    assert node.size() == size


def test_without_escrows_kinds_are_not_needed_but_bad_values_are_refused(
    node: PlatformNode, submit: Submitter, tmp_path: Path
) -> None:
    unnamed = [r.to_json() for r in sample_records("unionpay", 2, random.Random(4))]
    receipts = submit(jsonl(tmp_path / "plain.jsonl", unnamed), escrow=False)
    assert [node.leaf(r["index"]).escrow for r in receipts] == [b"", b""]
    assert submit.warnings == ["jointledger submit: warning: submitting WITHOUT escrows "
                               "(--no-escrow): the regulator cannot trace these records"]
    assert submit.lookups == 0

    size = node.size()
    with pytest.raises(RecordFileError, match=r":1: payer_kind 'human' is not a party kind"):
        submit(jsonl(tmp_path / "bad.jsonl", [unnamed[0] | {"payer_kind": "human"}]),
               escrow=False)
    assert node.size() == size


class _Members:
    """A chain stand-in that only lists members."""

    def __init__(self, members: list[Member]) -> None:
        self._members = members

    def members(self) -> list[Member]:
        return self._members


@pytest.mark.parametrize("regulators, message", [
    ([], "no active regulator is registered on chain; nothing was submitted (--no-escrow"),
    (["pboc", "cbirc"], "2 active regulators are registered (cbirc, pboc): name the one"),
])
def test_no_single_regulator_registered_nothing_is_sent(
    consortium: Consortium, node: PlatformNode, submit: Submitter, tmp_path: Path,
    regulators: list[str], message: str,
) -> None:
    key = consortium.pboc.sm2_key.public_key().raw
    chain = _Members([Member(consortium.unionpay.account.address, Role.PLATFORM, "unionpay",
                             consortium.unionpay.sm2_key.public_key().raw)]
                     + [Member(consortium.pboc.account.address, Role.REGULATOR, name, key)
                        for name in regulators])
    path = jsonl(tmp_path / "records.jsonl", [r.to_json() for r in records(1, seed=5)])
    size = node.size()
    with pytest.raises(UnknownRegulator) as caught:
        submit(path, regulator_key=lambda: registered_regulator_key(chain))  # type: ignore[arg-type]
    assert message in str(caught.value)
    assert node.size() == size
    assert not path.with_name(path.name + ".receipts.jsonl").exists()


def test_cli_refuses_before_reaching_the_chain(tmp_path: Path, keys: tuple[Path, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "unionpay.toml"
    config.write_text(f"""
[node]
platform = "unionpay"
store = "unused.db"

[keys]
sm2 = "{keys[0]}"
account = "{keys[1]}"

[chain]
deployment = "no-such-deployment.json"
rpc_url = "http://127.0.0.1:9"
""")
    unnamed = [r.to_json() for r in sample_records("unionpay", 1, random.Random(6))]
    path = jsonl(tmp_path / "records.jsonl", unnamed)
    assert cli.main(["submit", str(path), "--config", str(config)]) == 2
    assert ("records.jsonl:1: payer_kind is not given and payer_identity cannot be classified"
            in capsys.readouterr().err)
    assert cli.main(["submit", str(path), "--config", str(config), "--no-escrow",
                     "--regulator", "pboc"]) == 2
    assert "--regulator and --no-escrow exclude each other" in capsys.readouterr().err
    # valid records: the chain is asked for the regulator's key, and is not there
    named = jsonl(tmp_path / "named.jsonl",
                  [unnamed[0] | {"payer_kind": "person", "payee_kind": "institution"}])
    assert cli.main(["submit", str(named), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "no deployment file at" in err and "Try: start the chain first" in err


# --- halves of cross-platform payments: reconciliation tags -------------------------------


def _counterparties(consortium: Consortium, node: PlatformNode) -> Callable[[str], Member]:
    def lookup(name: str) -> Member:
        return registered_platform(consortium.chain, name)

    return lookup


def test_marked_records_are_tagged_for_reconciliation(
    consortium: Consortium, node: PlatformNode, server: PlatformServer,
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    base = [dataclasses.replace(r, clearing_ref=f"CUP-{i:04d}") for i, r in
            enumerate(records(3, seed=7))]
    rows = [base[0].to_json() | {"counterparty": "wechatpay", "side": "payer"},
            base[1].to_json() | {"counterparty": "wechatpay", "side": "payee"},
            base[2].to_json()]
    output: list[str] = []
    path = jsonl(tmp_path / "cross.jsonl", rows)
    run_submit(path, url=server.url, platform="unionpay", sm2_key=keys[0], account_key=keys[1],
               regulator_key=consortium.pboc.sm2_key.public_key(),
               counterparties=_counterparties(consortium, node), echo=output.append,
               progress=lambda done, total: None)
    receipts = [json.loads(line) for line in
                path.with_name(path.name + ".receipts.jsonl").read_text().splitlines()]
    wechatpay = consortium.wechatpay
    key = pairwise_key(consortium.unionpay.sm2_key, consortium.unionpay.account.address,
                       wechatpay.account.address, wechatpay.sm2_key.public_key())
    leaves = [node.leaf(r["index"]) for r in receipts]
    assert (leaves[0].match_tag, leaves[0].amount_tag) == record_tags(key, Side.PAYER, base[0])
    assert (leaves[1].match_tag, leaves[1].amount_tag) == record_tags(key, Side.PAYEE, base[1])
    assert leaves[2].match_tag is None and leaves[2].amount_tag is None
    for receipt, record in zip(receipts, base, strict=True):  # the hint is not committed
        assert RecordOpening.from_json(receipt["opening"]).record == record
        assert (receipt["log_id"], receipt["shard"]) == (node.log_id.hex(), 0)
    assert any("2 halves of cross-platform payments tagged" in line for line in output)


@pytest.mark.parametrize(("extra", "message"), [
    ({"counterparty": "wechatpay"}, "side is missing"),
    ({"side": "payer"}, "counterparty is missing"),
    ({"counterparty": "wechatpay", "side": "both"}, "side 'both' is not payer or payee"),
    ({"counterparty": 7, "side": "payer"}, "counterparty 7 is not a platform name"),
    ({"counterparty": "wechatpay", "side": "payer", "clearing_ref": ""},
     "clearing_ref is empty"),
    ({"counterparty": "unionpay", "side": "payer"}, "is this platform itself"),
])
def test_bad_cross_platform_marks_are_refused_before_sending(
    consortium: Consortium, node: PlatformNode, server: PlatformServer,
    keys: tuple[Path, Path], tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    row = dataclasses.replace(records(1, seed=8)[0], clearing_ref="CUP-1").to_json() | extra
    path = jsonl(tmp_path / "bad.jsonl", [row])
    size = node.size()
    with pytest.raises(RecordFileError, match=message):
        run_submit(path, url=server.url, platform="unionpay", sm2_key=keys[0],
                   account_key=keys[1], regulator_key=consortium.pboc.sm2_key.public_key(),
                   counterparties=_counterparties(consortium, node),
                   progress=lambda done, total: None)
    assert node.size() == size


def test_an_unknown_counterparty_fails_before_sending(
    consortium: Consortium, node: PlatformNode, server: PlatformServer,
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    row = dataclasses.replace(records(1, seed=9)[0], clearing_ref="CUP-2").to_json() | {
        "counterparty": "alipay", "side": "payer"}
    path = jsonl(tmp_path / "unknown.jsonl", [row])
    size = node.size()
    with pytest.raises(UnknownCounterparty, match="alipay"):
        run_submit(path, url=server.url, platform="unionpay", sm2_key=keys[0],
                   account_key=keys[1], regulator_key=consortium.pboc.sm2_key.public_key(),
                   counterparties=_counterparties(consortium, node),
                   progress=lambda done, total: None)
    with pytest.raises(RecordFileError, match="no chain is given"):
        run_submit(path, url=server.url, platform="unionpay", sm2_key=keys[0],
                   account_key=keys[1], regulator_key=consortium.pboc.sm2_key.public_key(),
                   progress=lambda done, total: None)
    assert node.size() == size
