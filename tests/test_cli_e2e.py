"""The command line end to end, as an operator would run it: real processes on 127.0.0.1.

``keys new`` for three members → ``chain --consortium`` (embedded chain served as JSON-RPC,
contract deployed) → ``serve`` a platform node → ``submit`` records from JSONL and CSV, their
escrows sealed for the regulator registered on that chain → ``proof`` / ``checkpoints`` →
``verify`` against the chain with the node stopped → restart.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger_node.client.sdk import RegulatorClient
from ledger_node.crypto.keyfiles import MemberKeys, load_member_keys
from ledger_node.demo.localsite import free_ports
from ledger_node.demo.run import sample_records
from ledger_node.log.checkpoint import log_id_for
from ledger_node.log.leaf import Leaf
from ledger_node.protocol.aml import PartyKind
from ledger_node.protocol.escrow import EscrowOpener, EscrowPayload

pytestmark = pytest.mark.slow
JOINTLEDGER = [sys.executable, "-m", "ledger_node.cli"]
KINDS = {"payer_kind": "person", "payee_kind": "institution"}  # the demo's names are not IDs


def free_port() -> int:
    """A TCP port free on 127.0.0.1 (below the ephemeral range: see ``free_ports``)."""
    return free_ports(1)


def run(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*JOINTLEDGER, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"jointledger {' '.join(args)} -> {result.returncode}\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*JOINTLEDGER, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_until(condition: object, what: str, process: subprocess.Popen[str],
               timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"process ended before {what}: {output}")
        try:
            if condition():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Keys, a consortium chain process and its deployment file."""
    root = tmp_path_factory.mktemp("site")
    for name in ("unionpay", "wechatpay", "pboc"):
        run("keys", "new", "--name", name, "--dir", "keys", cwd=root)
    (root / "consortium.toml").write_text(
        "threshold = 2\n"
        + "".join(f'\n[[members]]\nname = "{n}"\nrole = "{r}"\nkeys = "keys"\n'
                  for n, r in (("unionpay", "platform"), ("wechatpay", "platform"),
                               ("pboc", "regulator")))
    )
    chain_port = free_port()
    chain = start("chain", "--port", str(chain_port), "--consortium", "consortium.toml",
                  "--deployment", "deployment.json", cwd=root)
    wait_until(lambda: (root / "deployment.json").exists(), "the deployment file", chain)
    node_port = free_port()
    (root / "unionpay.toml").write_text(f"""
[node]
platform = "unionpay"
store = "unionpay.db"
seal_interval = 0.2

[http]
port = {node_port}

[keys]
sm2 = "keys/unionpay.sm2.pem"
account = "keys/unionpay.account.key"

[chain]
deployment = "deployment.json"
rpc_url = "http://127.0.0.1:{chain_port}"
""")
    try:
        yield {"root": root, "rpc": f"http://127.0.0.1:{chain_port}",
               "url": f"http://127.0.0.1:{node_port}"}
    finally:
        stop(chain)


def serve(site: dict[str, object]) -> subprocess.Popen[str]:
    root, url = site["root"], str(site["url"])
    assert isinstance(root, Path)
    node = start("serve", "--role", "platform", "--name", "unionpay", "--config",
                 "unionpay.toml", cwd=root)
    wait_until(lambda: httpx.get(f"{url}/v1/health", timeout=2).status_code == 200,
               "the node to serve", node)
    return node


def pboc_keys(root: Path) -> MemberKeys:
    return load_member_keys(root / "keys/pboc.sm2.pem", root / "keys/pboc.account.key")


def regulator_leaves(site: dict[str, object], start: int, end: int) -> list[Leaf]:
    """unionpay's leaves [start, end) with their escrows, as the regulator pboc reads them."""
    root = site["root"]
    assert isinstance(root, Path)
    pboc = pboc_keys(root)
    with RegulatorClient(str(site["url"]), pboc.address, pboc.sm2_key) as regulator:
        return regulator.leaves(log_id_for("unionpay", 0), start, end)


def store_size(url: str) -> int:
    return int(httpx.get(f"{url}/v1/health", timeout=5).json()["store_size"])


def test_operator_flow(site: dict[str, object]) -> None:
    root, url, rpc = site["root"], str(site["url"]), str(site["rpc"])
    assert isinstance(root, Path)
    records = sample_records("unionpay", 30, random.Random(5))
    (root / "records.jsonl").write_text("".join(
        json.dumps(r.to_json() | KINDS, ensure_ascii=False) + "\n" for r in records[:20]))
    header = [*records[0].to_json(), *KINDS]
    (root / "records.csv").write_text(",".join(header) + "\n" + "".join(
        ",".join(str((r.to_json() | KINDS)[h]).lower() if h == "cross_border"
                 else str((r.to_json() | KINDS)[h]) for h in header) + "\n"
        for r in records[20:]))

    node = serve(site)
    try:
        submitted = run("submit", "records.jsonl", "--config", "unionpay.toml", "--chunk", "7",
                        cwd=root)
        assert "submitted 20 records" in submitted.stdout and "20 new" in submitted.stdout
        assert "20/20 leaves" in submitted.stderr  # the progress bar
        assert "AML escrows sealed for the regulator (key fingerprint" in submitted.stdout
        receipts_file = root / "records.jsonl.receipts.jsonl"
        assert receipts_file.stat().st_mode & 0o077 == 0  # openings are private
        receipts = [json.loads(line) for line in receipts_file.read_text().splitlines()]
        assert [r["index"] for r in receipts] == list(range(20))
        csv_run = run("submit", "records.csv", "--config", "unionpay.toml", "--regulator",
                      "pboc", cwd=root)
        assert "submitted 10 records" in csv_run.stdout
        # the regulator opens every escrow with its key; each decodes to its record's payload
        leaves = regulator_leaves(site, 0, 30)
        opener = EscrowOpener.from_keys(pboc_keys(root).sm2_key)
        for leaf, record in zip(leaves, records, strict=True):
            assert opener.open(leaf.escrow, leaf.commitment) == EscrowPayload.from_record(
                record, payer_kind=PartyKind.PERSON, payee_kind=PartyKind.INSTITUTION)

        run("proof", "25", "--url", url, "--out", "bundle.json", "--wait", "20", cwd=root)
        listing = run("checkpoints", "--url", url, cwd=root).stdout
        assert "checkpoint(s)" in listing and "0x" in listing
        # Re-submitting the same records commits them under fresh salts: new, unlinkable leaves.
        again = run("submit", "records.jsonl", "--config", "unionpay.toml", cwd=root)
        assert "20 new, 0 already in the log" in again.stdout

        # a regulator not on chain: refused before sending; --no-escrow: sent, with a warning
        (root / "one.jsonl").write_text(json.dumps(records[0].to_json() | KINDS) + "\n")
        result = run("submit", "one.jsonl", "--config", "unionpay.toml", "--regulator",
                     "cbirc", cwd=root, check=False)
        assert result.returncode == 1
        assert ("UnknownRegulator: no active regulator named 'cbirc' is registered on chain; "
                "nothing was submitted") in result.stderr
        assert store_size(url) == 50
        result = run("submit", "one.jsonl", "--config", "unionpay.toml", "--no-escrow", cwd=root)
        assert "warning: submitting WITHOUT escrows (--no-escrow): the regulator cannot trace" \
            in result.stderr
        assert json.loads((root / "one.jsonl.receipts.jsonl").read_text())["index"] == 50
        assert regulator_leaves(site, 50, 51)[0].escrow == b""
    finally:
        stop(node)

    verified = run("verify", "bundle.json", "--rpc-url", rpc, "--deployment", "deployment.json",
                   cwd=root)
    assert verified.stdout.rstrip().splitlines()[-1].startswith("VALID")

    node = serve(site)  # restart on the same store: everything acknowledged is still there
    try:
        status = httpx.get(f"{url}/v1/leaves/25", timeout=5).json()
        assert status["index"] == 25
        run("proof", "25", "--url", url, "--out", "bundle-after-restart.json", cwd=root)
    finally:
        stop(node)
    assert run("verify", "bundle-after-restart.json", "--rpc-url", rpc, cwd=root).returncode == 0


def test_bad_records_are_rejected_before_anything_is_sent(site: dict[str, object]) -> None:
    root = site["root"]
    assert isinstance(root, Path)
    good = sample_records("unionpay", 2, random.Random(1))
    bad = good[1].to_json() | {"amount_fen": -5}
    (root / "bad.jsonl").write_text(json.dumps(good[0].to_json()) + "\n" + json.dumps(bad) + "\n")
    result = run("submit", "bad.jsonl", "--config", "unionpay.toml", cwd=root, check=False)
    assert result.returncode == 2
    assert "bad.jsonl:2: invalid record field 'amount_fen'" in result.stderr
    assert "nothing was submitted" in result.stderr
    (root / "bad.csv").write_text("platform,nickname\nunionpay,x\n")
    result = run("submit", "bad.csv", "--config", "unionpay.toml", cwd=root, check=False)
    assert result.returncode == 2 and "unknown column 'nickname'" in result.stderr


def test_serve_refuses_a_config_for_another_member(site: dict[str, object]) -> None:
    root = site["root"]
    assert isinstance(root, Path)
    result = run("serve", "--role", "platform", "--name", "wechatpay", "--config",
                 "unionpay.toml", cwd=root, check=False)
    assert result.returncode == 2 and "configures platform 'unionpay'" in result.stderr

