"""Repairing a platform store from the regulator's verified copy (``jointledger fsck
--repair-from``), checked against the chain before anything is written.

Two things can be restored: damaged leaf rows (found by
:func:`~ledger_node.platform.integrity.full_check`) and the tail a store lost (an old copy
restored, a WAL lost) up to the chain's latest anchored checkpoint. The regulator serves the
platform its own leaves as it verified them (``GET /v1/logs/{log_id}/leaves`` of the
regulator node); this module trusts none of it: the store's tree with the fetched leaves in
place must give **every** root the chain anchored for the log and every checkpoint the store
holds, or nothing is written (:class:`~ledger_node.errors.StoreRepairRefused`). Leaves the
chain never anchored have no verified copy anywhere: a damaged one of those cannot be
repaired, and a lost one is lost (its client holds the receipt and re-sends it).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from ledger_node.chain.adapter import AnchoredCheckpoint
from ledger_node.errors import StoreRepairRefused
from ledger_node.log.checkpoint import Checkpoint
from ledger_node.log.leaf import Leaf, leaves_data
from ledger_node.log.merkle import Hasher, MerkleLog, hash_leaves
from ledger_node.platform.integrity import FsckReport
from ledger_node.platform.store import SQLiteStore, StoredCheckpoint, StoredLeaf

__all__ = ["LeafFetch", "RepairPlan", "apply_repair", "plan_repair"]

FETCH_PAGE: Final = 10_000
"""The most leaves one read from the regulator asks for (its endpoint's limit)."""

LeafFetch = Callable[[int, int], Sequence[Leaf]]
"""Leaves ``[start, end)`` of the log from a verified copy (the regulator's)."""


@dataclass
class RepairPlan:
    """What a repair writes, every piece already checked against the anchored roots.

    ``replaced``: damaged rows with their verified copies; ``appended``: the lost tail, from
    the store's size to the chain's latest anchored size; ``checkpoints``: the chain's
    anchored checkpoints the store lacks (or holds only as signed); ``dropped``: sizes of
    signed, never anchored checkpoints the chain has passed; ``unrepairable``: damaged rows
    no anchored root covers, with why.
    """

    replaced: list[StoredLeaf] = field(default_factory=list)
    appended: list[StoredLeaf] = field(default_factory=list)
    checkpoints: list[StoredCheckpoint] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    unrepairable: list[tuple[int, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to write."""
        return not (self.replaced or self.appended or self.checkpoints or self.dropped)


def _ranges(indexes: Sequence[int], page: int) -> list[tuple[int, int]]:
    """Sorted ``indexes`` as half-open runs of consecutive indexes, at most ``page`` long."""
    runs: list[tuple[int, int]] = []
    for index in indexes:
        if runs and runs[-1][1] == index and runs[-1][1] - runs[-1][0] < page:
            runs[-1] = (runs[-1][0], index + 1)
        else:
            runs.append((index, index + 1))
    return runs


def plan_repair(store: SQLiteStore, report: FsckReport, *, hasher: Hasher,
                chain_history: Sequence[AnchoredCheckpoint], fetch: LeafFetch,
                platform: str, log_id: bytes, hash_name: str) -> RepairPlan:
    """Fetch and verify what a repair of ``store`` (checked into ``report``) needs.

    ``chain_history`` is the log's every anchored checkpoint, oldest first, with signatures
    and transactions (:meth:`~ledger_node.chain.adapter.LedgerChain.checkpoints`). Raises
    :class:`StoreRepairRefused` if the fetched leaves, in place, do not give every anchored
    root and every stored checkpoint's root, or the store holds an anchored checkpoint the
    chain's history lacks below its latest size (another history: not repaired here).
    """
    plan = RepairPlan()
    chain_size = chain_history[-1].tree_size if chain_history else 0
    on_chain = {cp.tree_size: cp for cp in chain_history}
    stored = store.checkpoints()
    for cp in stored:
        if cp.anchored and cp.tree_size <= chain_size and cp.tree_size not in on_chain:
            raise StoreRepairRefused(
                f"the store's anchored checkpoint of size {cp.tree_size} is not in the "
                f"chain's history of log {log_id.hex()} (which reaches {chain_size}): the "
                "chain holds another history; not repaired")
    bad = sorted(index for index, _ in report.rows)
    fixable = [index for index in bad if index < chain_size]
    plan.unrepairable = [(index, "no anchored checkpoint covers it: the regulator has no "
                          "verified copy") for index in bad if index >= chain_size]
    d = hasher.digest_size
    level0 = bytearray(report.tree.level_digests(0, 0, report.size))
    for start, end in _ranges(fixable, FETCH_PAGE):
        for offset, leaf in enumerate(_fetched(fetch, start, end)):
            row = _row(hasher, start + offset, leaf)
            plan.replaced.append(row)
            level0[row.index * d:(row.index + 1) * d] = row.leaf_hash
    for start in range(report.size, chain_size, FETCH_PAGE):
        end = min(chain_size, start + FETCH_PAGE)
        for offset, leaf in enumerate(_fetched(fetch, start, end)):
            row = _row(hasher, start + offset, leaf)
            plan.appended.append(row)
            level0 += row.leaf_hash
    tree = MerkleLog.from_leaf_hashes(hasher, (bytes(level0[i:i + d])
                                               for i in range(0, len(level0), d)))
    wanted = [(a.tree_size, a.root, "the chain's anchored checkpoint") for a in chain_history]
    wanted += [(cp.tree_size, cp.root, f"the store's {cp.status} checkpoint") for cp in stored
               if cp.tree_size <= tree.size]
    for size, root, source in wanted:
        if size > tree.size:
            raise StoreRepairRefused(f"{source} of size {size} is past the {tree.size} leaves "
                                     "the repaired store would hold")
        if not hmac.compare_digest(tree.root(size), root):
            raise StoreRepairRefused(
                f"with the regulator's copy in place the store does not give the root of "
                f"{source} of size {size}: nothing is written (the copy, or the rows it "
                "does not replace, are not the anchored ones)")
    by_size = {cp.tree_size: cp for cp in stored}
    for anchored in chain_history:
        mine = by_size.get(anchored.tree_size)
        if mine is not None and mine.anchored:
            continue
        if anchored.signature is None or anchored.tx_hash is None:
            raise StoreRepairRefused(f"the chain's checkpoint of size {anchored.tree_size} was "
                                     "read without its signature or transaction")
        checkpoint = Checkpoint(platform, log_id, anchored.tree_size, anchored.root,
                                anchored.timestamp, hash_name)
        plan.checkpoints.append(StoredCheckpoint(
            checkpoint, anchored.signature, "anchored", float(anchored.block_time),
            anchored.tx_hash, anchored.block_number, float(anchored.block_time)))
    plan.dropped = [cp.tree_size for cp in stored if not cp.anchored
                    and cp.tree_size < chain_size and cp.tree_size not in on_chain]
    return plan


def apply_repair(store: SQLiteStore, plan: RepairPlan) -> None:
    """Write ``plan`` in one transaction (the stored levels are dropped: the next start
    rebuilds them from the repaired leaves)."""
    store.repair(replaced=plan.replaced, appended=plan.appended, checkpoints=plan.checkpoints,
                 dropped_checkpoints=plan.dropped, restored_at=time.time())


def _fetched(fetch: LeafFetch, start: int, end: int) -> Sequence[Leaf]:
    leaves = fetch(start, end)
    if len(leaves) != end - start:
        raise StoreRepairRefused(f"the regulator served {len(leaves)} leaves for "
                                 f"[{start}, {end})")
    return leaves


def _row(hasher: Hasher, index: int, leaf: Leaf) -> StoredLeaf:
    return StoredLeaf(index, leaf, hash_leaves(hasher, leaves_data([leaf])))
