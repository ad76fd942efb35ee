"""``jointledger disclose-field``: a single-field disclosure written from the receipts file
``jointledger submit`` writes, accepted by ``jointledger verify BUNDLE --disclosure`` against
the embedded chain served as JSON-RPC (unionpay's log of real leaves anchored once); every
refusal by its message."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger_node.chain.adapter import LedgerChain
from ledger_node.chain.rpc_server import ChainServer
from ledger_node.cli import main as cli
from ledger_node.demo.run import sample_records
from ledger_node.log import merkle
from ledger_node.log.checkpoint import Checkpoint, log_id_for, sign_checkpoint
from ledger_node.log.leaf import Leaf
from ledger_node.protocol.bundle import ChainAnchor, build_bundle
from ledger_node.protocol.commitment import RecordOpening, new_salt, record_commitment
from ledger_node.protocol.record import FIELD_NAMES
from tests.api_support import make_consortium

SIZE = 4


@dataclass
class Site:
    chain_url: str
    receipts: Path
    bundles: list[Path]
    tmp: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """unionpay's log of SIZE records anchored on chain, its receipts file (as jointledger
    submit writes it) and each leaf's proof bundle."""
    tmp = tmp_path_factory.mktemp("disclose-field")
    with ChainServer(LedgerChain.embedded()) as server:
        c = make_consortium(LedgerChain.from_rpc(server.url))
        unionpay = c.as_party(c.unionpay)
        log_id = log_id_for("unionpay", 0)
        records = sample_records("unionpay", SIZE, random.Random(17))
        salts = [new_salt() for _ in records]
        leaves = [Leaf(record_commitment(r, s), escrow=os.urandom(48))
                  for r, s in zip(records, salts, strict=True)]
        log = merkle.MerkleLog(merkle.SM3_HASHER)
        log.extend(leaf.leaf_data() for leaf in leaves)
        checkpoint = Checkpoint("unionpay", log_id, SIZE, log.root(SIZE), int(time.time()))
        signed = sign_checkpoint(c.unionpay.sm2_key, checkpoint)
        outcome = unionpay.anchor_checkpoint(log_id, SIZE, checkpoint.root,
                                             checkpoint.timestamp, signed.signature)
        anchor = ChainAnchor.of(c.deployment, outcome.tx_hash, outcome.block_number)
        receipts = tmp / "day.jsonl.receipts.jsonl"
        receipts.write_text("".join(json.dumps({
            "local_tx_id": record.local_tx_id, "log_id": log_id.hex(), "shard": 0,
            "index": index, "leaf_hash": "00" * 32, "duplicate": False,
            "commitment": leaf.commitment.hex(),
            "opening": RecordOpening(record, salt).to_json()}) + "\n"
            for index, (record, salt, leaf) in enumerate(zip(records, salts, leaves,
                                                             strict=True))))
        bundles = []
        for index, leaf in enumerate(leaves):
            path = tmp / f"bundle-{index}.json"
            path.write_text(json.dumps(build_bundle(leaf, index, signed, anchor,
                                                    log=log).to_json()))
            bundles.append(path)
        yield Site(server.url, receipts, bundles, tmp)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def receipt(site: Site, index: int) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(site.receipts.read_text().splitlines()[index])
    return loaded


def test_a_disclosed_amount_verifies_against_the_chain(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    chosen = receipt(site, 2)
    out_file = site.tmp / "amount.json"
    status, out, err = run(capsys, "disclose-field", str(site.receipts), "--field", "amount_fen",
                           "--tx", str(chosen["local_tx_id"]), "--out", str(out_file))
    assert (status, err) == (0, "")
    amount = chosen["opening"]["record"]["amount_fen"]  # type: ignore[index]
    assert out.splitlines()[0].startswith(
        f"disclosed amount_fen = {amount!r} of record {chosen['local_tx_id']!r} (log ")
    document = json.loads(out_file.read_text())
    assert (document["field"], document["value"]) == ("amount_fen", amount)
    assert len(document["other_field_hashes"]) == len(FIELD_NAMES) - 1
    text = out_file.read_text()
    for hidden in ("payer_identity", "payee_account"):  # only the one field's value is there
        assert chosen["opening"]["record"][hidden] not in text  # type: ignore[index]

    status, out, _ = run(capsys, "verify", str(site.bundles[2]), "--rpc-url", site.chain_url,
                         "--disclosure", str(out_file))
    assert status == 0 and "PASS  disclosure" in out and "PASS  anchoring" in out
    # Another leaf's bundle does not take it.
    status, out, _ = run(capsys, "verify", str(site.bundles[1]), "--rpc-url", site.chain_url,
                         "--disclosure", str(out_file))
    assert status == 1 and "FAIL  disclosure" in out

    # By commitment, to standard output; the same document.
    status, out, _ = run(capsys, "disclose-field", str(site.receipts), "--field", "amount_fen",
                         "--commitment", "0x" + str(chosen["commitment"]).upper())
    assert status == 0 and json.loads(out) == document


def test_refusals(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    receipts = str(site.receipts)
    status, _, err = run(capsys, "disclose-field", receipts, "--field", "payer")
    assert status == 2
    assert err.startswith("jointledger disclose-field: 'payer' is not a record field (did "
                          "you mean payer_identity, payer_account")
    assert "; expected one of platform, local_tx_id, " in err
    status, _, err = run(capsys, "disclose-field", receipts, "--field", "amount_fen")
    assert (status, err) == (2, f"jointledger disclose-field: {receipts} holds {SIZE} "
                                "receipts; choose one with --tx LOCAL_TX_ID or --commitment "
                                "HEX\n")
    status, _, err = run(capsys, "disclose-field", receipts, "--field", "amount_fen",
                         "--tx", "nope")
    assert (status, err) == (2, f"jointledger disclose-field: 0 receipts in {receipts} have "
                                "local tx id 'nope'; expected exactly one (the local_tx_id and "
                                "commitment keys of its lines)\n")

    # A single receipt (as a JSON object) needs no selection, but must open its commitment.
    forged = receipt(site, 0) | {"commitment": receipt(site, 1)["commitment"]}
    single = site.tmp / "forged.json"
    single.write_text(json.dumps(forged, indent=2))
    status, _, err = run(capsys, "disclose-field", str(single), "--field", "channel")
    assert status == 2 and err.startswith(
        "jointledger disclose-field: the receipt's opening does not open its commitment "
        f"{forged['commitment']} (record and salt commit to ")
    broken = site.tmp / "broken.jsonl"
    broken.write_text(site.receipts.read_text().splitlines()[0] + "\n{not json\n")
    status, _, err = run(capsys, "disclose-field", str(broken), "--field", "channel")
    assert status == 2 and err.startswith(f"jointledger disclose-field: {broken} line 2 is not "
                                          "JSON (")
    status, _, err = run(capsys, "disclose-field", str(site.tmp / "missing"), "--field", "time")
    assert status == 2 and "cannot read receipts" in err


def test_the_issue_spelling_disclose_receipt_field_amount(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17 names ``jointledger disclose RECEIPT --field amount``: ``--field`` makes
    ``disclose`` the member's single-field disclosure (``amount`` = ``amount_fen``), which
    ``verify --disclosure`` accepts; the regulator's ``disclose request|status|collect`` stay
    as they were. Before, ``disclose`` took only the regulator's actions and ``amount`` was
    refused."""
    chosen = receipt(site, 3)
    out_file = site.tmp / "amount-by-disclose.json"
    status, out, err = run(capsys, "disclose", str(site.receipts), "--field", "amount",
                           "--tx", str(chosen["local_tx_id"]), "--out", str(out_file))
    assert (status, err) == (0, "")
    assert out.startswith("disclosed amount_fen = ")
    assert json.loads(out_file.read_text())["field"] == "amount_fen"
    status, out, _ = run(capsys, "verify", str(site.bundles[3]), "--rpc-url", site.chain_url,
                         "--disclosure", str(out_file))
    assert status == 0 and "PASS  disclosure" in out
    status, out, _ = run(capsys, "disclose-field", str(site.receipts), "--field", "amount_fen",
                         "--tx", str(chosen["local_tx_id"]))
    assert status == 0 and json.loads(out) == json.loads(out_file.read_text())
    # Refusals under the disclose name.
    status, _, err = run(capsys, "disclose", str(site.receipts), "--field", "amount")
    assert status == 2 and err.startswith(f"jointledger disclose: {site.receipts} holds {SIZE} "
                                          "receipts; choose one with --tx")


@pytest.mark.parametrize(("args", "message"), [
    (["disclose", "{receipts}"],
     "jointledger disclose: '{receipts}' is not a disclose action; expected request, status, "
     "collect (the regulator's, with --config), or RECEIPTS --field NAME for a single-field "
     "disclosure. Try: jointledger disclose {receipts} --field amount --tx LOCAL_TX_ID\n"),
    (["disclose", "request", "--field", "amount"],
     "jointledger disclose: --field writes a single-field disclosure from a receipts file, "
     "but 'request' is the regulator's action (and no such file is here); expected RECEIPTS "
     "--field NAME, or request without --field. Try: jointledger disclose "
     "unionpay.csv.receipts.jsonl --field amount --tx LOCAL_TX_ID\n"),
    (["disclose", "status"],
     "jointledger disclose: disclose status is the regulator's and needs its node config; "
     "expected --config REGULATOR_TOML. Try: jointledger disclose status --config "
     "site/pboc-regulator.toml\n"),
    (["disclose", "collect", "--tx", "up-1", "--config", "x.toml"],
     "jointledger disclose: --tx chooses the record of a single-field disclosure; expected it "
     "with RECEIPTS --field NAME. Try: jointledger disclose RECEIPTS --field amount --tx "
     "LOCAL_TX_ID\n"),
])
def test_disclose_tells_the_two_jobs_apart(site: Site, capsys: pytest.CaptureFixture[str],
                                           args: list[str], message: str) -> None:
    receipts = str(site.receipts)
    status, out, err = run(capsys, *(a.replace("{receipts}", receipts) for a in args))
    assert (status, out, err) == (2, "", message.replace("{receipts}", receipts))
