"""The durable embedded chain (ledger_node/chain/embedded_store.py): reopen, crash, corruption.

A JointLedger consortium is deployed on a stored chain, checkpoints are anchored, the store
is closed and reopened (twice) and everything a node relies on must be the same: chain id,
head, every block hash, contract code, members, checkpoint history, balances. A child
process anchoring in a loop is killed with SIGKILL and the store must reopen at a
consistent head holding every anchor the child saw acknowledged. Damaged files are refused
with :class:`ChainStoreCorrupt`.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger_node.chain.adapter import AnchoredCheckpoint, Deployment, LedgerChain, Member, Role
from ledger_node.chain.embedded_store import (
    TESTER_CHAIN_ID,
    close_chain_store,
    open_chain_store,
    verify_chain,
    verify_state,
)
from ledger_node.chain.rpc_server import ChainServer
from ledger_node.cli.chain import run_chain
from ledger_node.errors import ChainError, ChainStoreCorrupt
from ledger_node.log.checkpoint import log_id_for

REPO_ROOT = Path(__file__).resolve().parent.parent
ETHER = 10**18
LOG_ID = log_id_for("unionpay", 0)


@dataclass
class Consortium:
    """A deployment on a stored chain and the accounts acting in it."""

    path: Path
    deployment: Deployment
    platform: LocalAccount
    regulator: LocalAccount


def _key64(seed: int) -> bytes:
    return bytes([seed]) * 64


def _root(size: int) -> bytes:
    return size.to_bytes(32, "big")


def _anchor(chain: LedgerChain, size: int) -> None:
    chain.anchor_checkpoint(LOG_ID, size, _root(size), 1_700_000_000 + size, b"sig%d" % size)


def _snapshot(chain: LedgerChain) -> dict[str, Any]:
    """Everything that must survive a reopen."""
    w3 = chain.w3
    head = chain.block_number()
    return {
        "chain_id": chain.chain_id,
        "head": head,
        "hashes": [bytes(w3.eth.get_block(n)["hash"]) for n in range(head + 1)],
        "code": bytes(w3.eth.get_code(chain.deployment.address)),
        "members": chain.members(),
        "checkpoints": chain.checkpoints(LOG_ID),
        "balances": [chain.balance(a.address) for a in _dev_accounts()],
    }


def _dev_accounts() -> list[LocalAccount]:
    return [Account.from_key(i.to_bytes(32, "big")) for i in range(1, 11)]


def _open(path: Path, account: LocalAccount | None = None) -> LedgerChain:
    return LedgerChain.embedded_on_disk(path, account)


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[Consortium]:
    """A stored chain with JointLedger deployed and three checkpoints anchored, closed."""
    path = tmp_path / "chain.sqlite"
    chain = _open(path)
    faucet = chain.with_account(chain.dev_faucet())
    platform, regulator = Account.create(), Account.create()
    for account in (platform, regulator):
        faucet.fund(account.address, 10 * ETHER)
    deployment = chain.with_account(regulator).deploy(
        [
            Member(platform.address, Role.PLATFORM, "unionpay", _key64(1)),
            Member(regulator.address, Role.REGULATOR, "pboc", _key64(2)),
        ],
        threshold=1,
    )
    as_platform = chain.with_account(platform).attach(deployment)
    for size in (1, 5, 9):
        _anchor(as_platform, size)
    close_chain_store(chain.w3)
    yield Consortium(path, deployment, platform, regulator)


def test_fresh_store_has_eth_testers_genesis(tmp_path: Path) -> None:
    stored = _open(tmp_path / "c.sqlite")
    memory = LedgerChain.embedded()
    assert stored.chain_id == memory.chain_id == TESTER_CHAIN_ID
    assert stored.block_number() == 0
    for account in _dev_accounts():
        assert stored.balance(account.address) == memory.balance(account.address) > 0
    genesis, reference = stored.w3.eth.get_block(0), memory.w3.eth.get_block(0)
    for field in ("gasLimit", "difficulty", "extraData", "stateRoot", "baseFeePerGas"):
        assert genesis[field] == reference[field], field  # type: ignore[literal-required]
    assert not (tmp_path / "c.sqlite.creating").exists()
    close_chain_store(stored.w3)


def test_a_creation_cut_short_is_started_over(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    (tmp_path / "c.sqlite.creating").write_bytes(b"half-written by a killed process")
    store = open_chain_store(path)
    assert store.info.created and store.info.head_number == 0
    store.close()
    store.close()  # idempotent
    store = open_chain_store(path)
    assert not store.info.created and store.info.genesis_hash == store.info.head_hash
    store.close()
    assert not (tmp_path / "c.sqlite.creating").exists()


def test_reopen_continues_the_same_chain_twice(consortium: Consortium) -> None:
    chain = _open(consortium.path).attach(consortium.deployment)
    before = _snapshot(chain)
    assert [c.tree_size for c in before["checkpoints"]] == [1, 5, 9]
    close_chain_store(chain.w3)

    reopened = _open(consortium.path, consortium.platform).attach(consortium.deployment)
    assert _snapshot(reopened) == before
    assert reopened.latest_checkpoint(LOG_ID) == reopened.checkpoint_at(LOG_ID, 9)
    # Anchoring continues: the nonce comes from the stored state, sizes must still grow.
    _anchor(reopened, 12)
    with pytest.raises(Exception, match="Checkpoint_TreeSizeNotIncreasing"):
        _anchor(reopened, 12)
    _anchor(reopened, 20)
    after_first = _snapshot(reopened)
    assert after_first["hashes"][: before["head"] + 1] == before["hashes"]
    assert [c.tree_size for c in after_first["checkpoints"]] == [1, 5, 9, 12, 20]
    close_chain_store(reopened.w3)

    again = _open(consortium.path, consortium.platform).attach(consortium.deployment)
    assert _snapshot(again) == after_first
    # 3 + 2 anchors + the refused one (sent with fixed gas, so mined with status 0)
    assert again.w3.eth.get_transaction_count(consortium.platform.address) == 6
    _anchor(again, 21)
    assert again.latest_checkpoint(LOG_ID).tree_size == 21  # type: ignore[union-attr]
    close_chain_store(again.w3)

    store = open_chain_store(consortium.path)
    assert not store.info.created
    assert list(verify_chain(store)) == list(range(store.info.head_number + 1))
    assert verify_state(store) > verify_state(store, 0) > 0  # the contract added nodes
    store.close()


def test_verify_state_finds_damage_below_the_head(consortium: Consortium) -> None:
    store = open_chain_store(consortium.path)
    code_hash = bytes(store.chain.get_vm().state.get_code_hash(
        bytes.fromhex(consortium.deployment.address[2:])
    ))
    store.close()
    with closing(sqlite3.connect(consortium.path)) as db, db:
        db.execute("UPDATE kv SET value = ? WHERE key = ?", (b"\x00", code_hash))
    store = open_chain_store(consortium.path)  # the head checks do not reach contract code
    with pytest.raises(ChainStoreCorrupt, match="contract code .* missing or altered"):
        verify_state(store)
    store.close()


def test_chain_server_serves_a_reopened_chain(consortium: Consortium) -> None:
    chain = _open(consortium.path).attach(consortium.deployment)
    expected = _snapshot(chain)
    with ChainServer(chain) as server:
        remote = LedgerChain.from_rpc(server.url, consortium.platform).attach(
            consortium.deployment
        )
        assert _snapshot(remote) == expected
        _anchor(remote, 30)  # a raw transaction through the server is committed too
        history: list[AnchoredCheckpoint] = remote.checkpoints(LOG_ID)
    close_chain_store(chain.w3)
    reopened = _open(consortium.path).attach(consortium.deployment)
    assert reopened.checkpoints(LOG_ID) == history
    assert history[-1].tree_size == 30
    close_chain_store(reopened.w3)


def test_jointledger_chain_serves_and_keeps_the_stored_chain(consortium: Consortium) -> None:
    lines: list[str] = []
    urls: list[str] = []
    url_ready, stop = threading.Event(), threading.Event()
    no_deployment = consortium.path.parent / "no-deployment.json"

    def echo(line: str) -> None:
        lines.append(line)
        if line.startswith("connect with"):
            urls.append(line.split()[-1])
            url_ready.set()

    thread = threading.Thread(
        target=run_chain, args=("127.0.0.1", 0),
        kwargs={"data": consortium.path, "deployment_path": no_deployment, "echo": echo,
                "stop": stop},
    )
    thread.start()
    try:
        assert url_ready.wait(30)
        remote = LedgerChain.from_rpc(urls[0], consortium.platform).attach(consortium.deployment)
        _anchor(remote, 40)
        head = remote.block_number()
    finally:
        stop.set()
        thread.join()
    assert any("stored" in line for line in lines)
    assert lines[-1] == "chain server stopped; every mined block is on disk"
    reopened = _open(consortium.path).attach(consortium.deployment)
    assert reopened.block_number() == head
    assert reopened.latest_checkpoint(LOG_ID).tree_size == 40  # type: ignore[union-attr]
    close_chain_store(reopened.w3)
    with pytest.raises(ValueError):
        run_chain("0.0.0.0", 0, data=consortium.path, deployment_path=no_deployment,
                  echo=lines.append)
    open_chain_store(consortium.path).close()  # a refused serve released the store


_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from eth_account import Account
    from ledger_node.chain.adapter import Deployment, LedgerChain
    from ledger_node.log.checkpoint import log_id_for

    path, deployment_file, key = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    chain = LedgerChain.embedded_on_disk(path, Account.from_key(key))
    chain = chain.attach(Deployment.load(deployment_file))
    log_id = log_id_for("unionpay", 0)
    size = chain.latest_checkpoint(log_id).tree_size
    print("ready", size, flush=True)
    while True:
        size += 1
        out = chain.anchor_checkpoint(log_id, size, size.to_bytes(32, "big"), size, b"s")
        print("ack", size, out.block_number, flush=True)
    """
)


def test_sigkill_while_anchoring_leaves_a_consistent_store(
    consortium: Consortium, tmp_path: Path
) -> None:
    child = tmp_path / "child.py"
    child.write_text(_CHILD, encoding="utf-8")
    deployment_file = tmp_path / "deployment.json"
    consortium.deployment.save(deployment_file)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    rng = random.Random(5)
    acknowledged: list[int] = []
    latest = 9
    for _round in range(4):
        proc = subprocess.Popen(
            [sys.executable, str(child), str(consortium.path), str(deployment_file),
             consortium.platform.key.hex()],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["ready", str(latest)]
        for _ in range(rng.randint(2, 6)):
            word, size, _block = proc.stdout.readline().split()
            assert word == "ack"
            acknowledged.append(int(size))
        time.sleep(rng.uniform(0, 0.1))  # vary the moment: executing, committing, printing
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()

        store = open_chain_store(consortium.path)
        assert list(verify_chain(store)) == list(range(store.info.head_number + 1))
        assert verify_state(store) > 0
        store.close()
        chain = _open(consortium.path).attach(consortium.deployment)
        history = [c.tree_size for c in chain.checkpoints(LOG_ID)]
        # Every acknowledged anchor is there, in order, once; anchors in flight at the kill
        # (mined but not yet reported) may be there too.
        assert history == list(range(1, 2)) + [5] + list(range(9, history[-1] + 1))
        assert set(acknowledged) <= set(history)
        latest = history[-1]
        # the platform sent nothing but these anchors: no nonce was lost or reused
        assert chain.w3.eth.get_transaction_count(consortium.platform.address) == len(history)
        close_chain_store(chain.w3)
    recovered = len(set(acknowledged) & set(history))
    lost = len(acknowledged) - recovered
    print(f"kills 4, acknowledged {len(acknowledged)}, recovered {recovered}, lost {lost}")
    assert lost == 0


def test_second_open_is_refused_while_the_store_is_open(consortium: Consortium) -> None:
    store = open_chain_store(consortium.path)
    with pytest.raises(ChainError, match="open in another process"):
        open_chain_store(consortium.path)
    store.close()
    open_chain_store(consortium.path).close()


def test_history_cannot_be_rewritten(consortium: Consortium) -> None:
    store = open_chain_store(consortium.path)
    head = store.info.head_number
    snapshot = store.tester.take_snapshot()
    with pytest.raises(ChainError, match="cannot be reset"):
        store.tester.reset_to_genesis()
    with pytest.raises(ChainError, match="cannot be rewound"):
        store.tester.revert_to_snapshot(snapshot)
    store.close()
    store = open_chain_store(consortium.path)
    assert store.info.head_number == head
    store.close()


def _truncate_half(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _truncate_empty(path: Path) -> None:
    path.write_bytes(b"")


def _overwrite_header(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(b"\xff" * 100)


def _garbage_pages(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(page, len(data), page * 2):  # scribble over every other page
        data[offset : offset + 64] = b"\xa5" * 64
    path.write_bytes(bytes(data))


def _drop_head_state(path: Path) -> None:
    store = open_chain_store(path)
    root = bytes(store.chain.get_canonical_head().state_root)
    store.close()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM kv WHERE key = ?", (root,))


def _alter_head_header(path: Path) -> None:
    store = open_chain_store(path)
    head_hash = bytes(store.chain.get_canonical_head().hash)
    store.close()
    with closing(sqlite3.connect(path)) as db, db:
        (value,) = db.execute("SELECT value FROM kv WHERE key = ?", (head_hash,)).fetchone()
        altered = bytes(value[:-1]) + bytes([value[-1] ^ 1])
        db.execute("UPDATE kv SET value = ? WHERE key = ?", (altered, head_hash))


def _foreign_sqlite(path: Path) -> None:
    path.unlink()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE notes (x)")


def _wrong_format(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = ? WHERE name = 'format'", (b"99",))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate_half, "corrupt"),
        (_truncate_empty, "not a JointLedger chain store"),
        (_overwrite_header, "not a readable SQLite database|file is not a database"),
        (_garbage_pages, "corrupt"),
        (_drop_head_state, "state root is missing"),
        (_alter_head_header, "unreadable|does not hash"),
        (_foreign_sqlite, "not a JointLedger chain store"),
        (_wrong_format, "unsupported store format"),
    ],
)
def test_damaged_store_is_refused(consortium: Consortium, damage: Any, reason: str) -> None:
    damage(consortium.path)
    with pytest.raises(ChainStoreCorrupt, match=reason) as caught:
        LedgerChain.embedded_on_disk(consortium.path)
    assert caught.value.path == str(consortium.path)
