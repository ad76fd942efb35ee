"""``jointledger chain``: the served embedded chain, in memory or stored, with a consortium."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ledger_node.chain.adapter import Deployment, LedgerChain
from ledger_node.cli.chain import run_chain
from ledger_node.crypto.keyfiles import load_member_keys, new_member_keys
from ledger_node.demo.localsite import free_port
from ledger_node.errors import ChainError
from ledger_node.log.checkpoint import log_id_for


class ServedChain:
    """run_chain in a thread, stopped by an event (no signals off the main thread)."""

    def __init__(self, tmp: Path, data: Path | None) -> None:
        self.port = free_port()
        self.stop = threading.Event()
        self.lines: list[str] = []
        self.thread = threading.Thread(target=run_chain, args=("127.0.0.1", self.port), kwargs={
            "consortium_path": tmp / "consortium.toml", "deployment_path": tmp / "dep.json",
            "data": data, "echo": self.lines.append, "stop": self.stop})
        self.thread.start()
        deadline = time.monotonic() + 60
        while not any(line.startswith("serving") for line in self.lines):
            assert self.thread.is_alive() and time.monotonic() < deadline, self.lines
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    for name in ("unionpay", "pboc"):
        new_member_keys(tmp_path / "keys", name)
    (tmp_path / "consortium.toml").write_text(
        'threshold = 1\n\n[[members]]\nname = "unionpay"\nrole = "platform"\nkeys = "keys"\n'
        '\n[[members]]\nname = "pboc"\nrole = "regulator"\nkeys = "keys"\n')
    return tmp_path


def unionpay(site: Path, url: str) -> LedgerChain:
    keys = load_member_keys(site / "keys" / "unionpay.sm2.pem",
                            site / "keys" / "unionpay.account.key")
    return LedgerChain.from_rpc(url, keys.account).attach(Deployment.load(site / "dep.json"))


def test_a_stored_chain_continues_after_a_restart(site: Path) -> None:
    log = log_id_for("unionpay")
    served = ServedChain(site, site / "chain.db")
    try:
        chain = unionpay(site, served.url)
        chain.anchor_checkpoint(log, 5, bytes(32), 1, b"sig")
        head = chain.block_number()
    finally:
        served.close()
    deployment = Deployment.load(site / "dep.json")

    served = ServedChain(site, site / "chain.db")
    try:
        assert any("kept from" in line for line in served.lines), served.lines
        assert Deployment.load(site / "dep.json") == deployment
        chain = unionpay(site, served.url)
        assert chain.block_number() == head
        assert [c.tree_size for c in chain.checkpoints(log)] == [5]
        chain.anchor_checkpoint(log, 9, bytes(32), 2, b"sig")  # nonces continue
        assert chain.latest_checkpoint(log) is not None
    finally:
        served.close()


def test_an_in_memory_chain_starts_afresh(site: Path) -> None:
    log = log_id_for("unionpay")
    served = ServedChain(site, None)
    try:
        assert any("in memory" in line for line in served.lines)
        unionpay(site, served.url).anchor_checkpoint(log, 5, bytes(32), 1, b"sig")
    finally:
        served.close()
    with pytest.raises(ChainError):
        LedgerChain.from_rpc(served.url)  # nothing serves there any more
    served = ServedChain(site, None)
    try:
        assert unionpay(site, served.url).checkpoints(log) == []  # a new chain, redeployed
    finally:
        served.close()
