"""The chain server as ethers.js v6 (from npm, pinned) sees it (issue 14).

``tests/ethers/drive.mjs`` is an ordinary ethers client of a ``ChainServer`` with the
JointLedger contract deployed: view calls, ``contract.on`` (which failed before: the server
refused ``eth_newFilter`` in words ethers does not recognise and the program ended on the
unhandled rejection), a transaction that ethers populates, signs and sends, an estimate at
a nonce ahead of the account's, and ``queryFilter``. The pinned ethers is installed into
``tests/ethers/node_modules`` with ``npm ci`` (from ``package-lock.json``) when missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger_node.chain.adapter import LedgerChain
from ledger_node.chain.rpc_server import ChainServer
from tests.api_support import Consortium, make_consortium

HARNESS = Path(__file__).resolve().parent / "ethers"
ARTIFACT = (Path(__file__).resolve().parent.parent / "ledger_node" / "chain" / "artifacts"
            / "JointLedger.json")
NPM_CI_TIMEOUT_S = 300
DRIVE_TIMEOUT_S = 60


def _pinned_version() -> str:
    dependencies: dict[str, str] = json.loads((HARNESS / "package.json").read_text())[
        "dependencies"]
    return dependencies["ethers"]


@pytest.fixture(scope="module")
def node_binary() -> str:
    """Node.js, with the pinned ethers installed in the harness (``npm ci`` if missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are required for the ethers test (./dev.sh needs them too)")
    installed = HARNESS / "node_modules" / "ethers" / "package.json"
    if not installed.is_file() or json.loads(installed.read_text())["version"] != (
        _pinned_version()
    ):
        subprocess.run(
            [npm, "ci", "--prefix", str(HARNESS), "--no-audit", "--no-fund",
             "--loglevel=error"],
            check=True, timeout=NPM_CI_TIMEOUT_S, stdout=subprocess.DEVNULL,
        )
    assert json.loads(installed.read_text())["version"] == _pinned_version()
    return node


@pytest.fixture(scope="module")
def consortium() -> Consortium:
    return make_consortium(LedgerChain.embedded())


@pytest.fixture(scope="module")
def server(consortium: Consortium) -> Iterator[ChainServer]:
    with ChainServer(consortium.chain) as running:
        yield running


def drive(node: str, server: ChainServer, consortium: Consortium) -> dict[str, Any]:
    """Run the ethers client as unionpay; return what it printed (failing on any error)."""
    env = {**os.environ, "JL_KEY": "0x" + bytes(consortium.unionpay.account.key).hex()}
    done = subprocess.run(
        [node, str(HARNESS / "drive.mjs"), server.url, consortium.deployment.address,
         str(ARTIFACT)],
        env=env, capture_output=True, text=True, timeout=DRIVE_TIMEOUT_S, check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, done.stdout
    assert "@TODO" not in done.stdout, done.stdout  # ethers' report of a failed poll
    outcome: dict[str, Any] = json.loads(lines[0].removeprefix("RESULT "))
    return outcome


def test_ethers_reads_listens_sends_and_queries(
    node_binary: str, server: ChainServer, consortium: Consortium
) -> None:
    outcome = drive(node_binary, server, consortium)
    assert outcome["threshold"] == "2" and outcome["members"] == 4
    assert outcome["status"] == 1
    tx_hash = outcome["transactionHash"]
    # contract.on delivered the event of the transaction ethers sent
    assert outcome["event"]["transactionHash"] == tx_hash
    assert outcome["event"]["name"] == "CheckpointAnchored"
    assert outcome["event"]["treeSize"] == "7" and outcome["event"]["logId"].startswith("0x")
    # queryFilter found it through eth_getLogs
    assert outcome["queried"] == [{"transactionHash": tx_hash, "treeSize": "7"}]
    assert outcome["checkpointCount"] == "1"
    populated = outcome["populated"]
    assert populated["type"] == 2 and int(populated["gasLimit"]) > 21_000
    assert int(populated["chainId"]) == consortium.chain.chain_id
    assert int(outcome["estimateAheadOfNonce"]) > 21_000
    # what ethers sent is on the chain as it said
    receipt = LedgerChain.from_rpc(server.url).w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["blockNumber"] == outcome["blockNumber"]
    assert receipt["from"] == consortium.unionpay.account.address
