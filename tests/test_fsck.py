"""``jointledger fsck`` of a platform store (issue 18): every damaged row reported, a live
store refused, a repair the anchored roots do not confirm never written (docs/node.md §
Integrity). The repair from a regulator's copy is in tests/test_regulator_integrity.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger_node.cli.fsck import run_platform_fsck
from ledger_node.cli.main import main
from ledger_node.errors import StoreRepairRefused
from ledger_node.log.checkpoint import log_id_for
from ledger_node.log.leaf import Leaf
from ledger_node.log.merkle import SM3_HASHER
from ledger_node.platform.integrity import full_check
from ledger_node.platform.repair import plan_repair
from ledger_node.platform.store import SQLiteStore
from tests.api_support import Consortium
from tests.test_integrity import DAMAGES, _leaves, _rewrite_level, filled, open_node


@pytest.fixture
def damaged(consortium: Consortium, tmp_path: Path) -> Iterator[tuple[Path, int, list[Leaf]]]:
    """A 2,100-leaf store with a damaged commitment (100), escrow (200), leaf hash (300) and
    level-1 chunk (CRC kept right)."""
    path = tmp_path / "store.db"
    shard, written = filled(consortium, path, 2100)
    DAMAGES["commitment"](path, 100)
    DAMAGES["escrow"](path, 200)
    DAMAGES["leaf-hash"](path, 300)
    _rewrite_level(path, 1, 0, lambda d: d[:32 * 5] + os.urandom(32) + d[32 * 6:])
    yield path, shard, written


def test_fsck_reports_every_damaged_row_and_exits_1(
    consortium: Consortium, damaged: tuple[Path, int, list[Leaf]],
) -> None:
    path, _, _ = damaged
    lines: list[str] = []
    assert run_platform_fsck(path, chain=consortium.chain, echo=lines.append) == 1
    text = "\n".join(lines)
    for index in (100, 200, 300):
        assert f"leaf {index}: damaged" in text, text
    assert "Merkle level 1 chunk 0: is not the rebuilt tree's" in text, text
    # the tree rebuilt from what the rows hold (the data served) gives other roots
    assert "root: the chain's anchored checkpoint of size 2100" in text, text
    assert main(["fsck", str(path)]) == 1


def test_fsck_without_a_regulator_copy_does_not_repair_rows(
    consortium: Consortium, damaged: tuple[Path, int, list[Leaf]],
) -> None:
    """--rebuild-levels fixes the level chunk; damaged rows stay reported (exit 1)."""
    path, _, _ = damaged
    lines: list[str] = []
    assert run_platform_fsck(path, rebuild_levels=True, echo=lines.append) == 1
    after = "\n".join(lines[lines.index(next(x for x in lines if x.startswith("repaired"))):])
    assert "Merkle level 1 chunk" not in after and "leaf 100: damaged" in after


def test_a_repair_the_anchored_roots_do_not_confirm_writes_nothing(
    consortium: Consortium, damaged: tuple[Path, int, list[Leaf]],
) -> None:
    path, shard, written = damaged
    log_id = log_id_for("unionpay", shard)
    store = SQLiteStore(path, platform="unionpay", log_id=log_id, hash_name="sm3")
    try:
        report = full_check(store, SM3_HASHER)
        history = consortium.chain.checkpoints(log_id)
        with pytest.raises(StoreRepairRefused, match="does not give the root"):
            plan_repair(store, report, hasher=SM3_HASHER, chain_history=history,
                        fetch=lambda start, end: _leaves(end - start), platform="unionpay",
                        log_id=log_id, hash_name="sm3")
        plan = plan_repair(store, report, hasher=SM3_HASHER, chain_history=history,
                           fetch=lambda start, end: written[start:end], platform="unionpay",
                           log_id=log_id, hash_name="sm3")
        assert [r.index for r in plan.replaced] == [100, 200, 300]
        assert [r.leaf for r in plan.replaced] == [written[100], written[200], written[300]]
    finally:
        store.close()


def test_fsck_refuses_a_live_store_and_passes_a_clean_one(
    consortium: Consortium, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "store.db"
    shard, _ = filled(consortium, path, 50)
    node = open_node(consortium, path, shard)
    try:
        assert main(["fsck", str(path)]) == 1  # a running node holds the store
        assert "StoreLocked" in capsys.readouterr().err
    finally:
        node.stop()
    assert main(["fsck", str(path)]) == 0
    assert capsys.readouterr().out.endswith("clean\n")


def test_fsck_checks_every_batchs_evidence(consortium: Consortium, tmp_path: Path) -> None:
    """A batch's stored digest is recomputed from its stored leaves and, with the chain, its
    signature verified with the platform's registered keys."""
    import sqlite3

    path = tmp_path / "store.db"
    filled(consortium, path, 1400)
    lines: list[str] = []
    assert run_platform_fsck(path, chain=consortium.chain, echo=lines.append) == 0, lines
    db = sqlite3.connect(path)
    (signature,) = db.execute("SELECT signature FROM batches WHERE id = 2").fetchone()
    db.execute("UPDATE batches SET signature = ? WHERE id = 2",
               (bytes(signature[:-1]) + bytes([signature[-1] ^ 1]),))
    db.execute("UPDATE batches SET digest = ? WHERE id = 1", (b"\x01" * 32,))
    db.commit()
    db.close()
    lines.clear()
    assert run_platform_fsck(path, chain=consortium.chain, echo=lines.append) == 1
    text = "\n".join(lines)
    assert "evidence: batch 1 (leaves 0..699): its stored digest is not the batch digest" in text
    assert "evidence: batch 2 (leaves 700..1399): its signature verifies with no key" in text


def test_fsck_refuses_unusable_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fsck"]) == 2
    assert main(["fsck", str(tmp_path / "missing.db")]) == 2
    assert "no store at" in capsys.readouterr().err
    SQLiteStore(tmp_path / "s.db", platform="unionpay", log_id=log_id_for("unionpay"),
                hash_name="sm3").close()
    assert main(["fsck", str(tmp_path / "s.db"), "--rpc-url", "http://127.0.0.1:9"]) == 2
    assert "--rpc-url needs --deployment" in capsys.readouterr().err
    assert main(["fsck", "--role", "regulator", str(tmp_path / "s.db")]) == 2
    assert main(["fsck", str(tmp_path / "s.db"), "--repair-from", "http://127.0.0.1:9"]) == 2
    assert "--repair-from needs --config" in capsys.readouterr().err
    assert main(["fsck", str(tmp_path / "s.db")]) == 0  # an empty store is clean
