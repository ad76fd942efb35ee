"""The single writer of a platform log: group commit of validated batches (PROTOCOL §9).

Intake (:mod:`ledger_node.platform.intake`) puts each validated batch on the queue as a
:class:`PendingBatch` and waits. :class:`GroupWriter`'s thread drains everything queued
(at most ``_GROUP_LEAF_CAP`` leaves) into ONE store transaction (one fsync), then appends
the new leaf hashes to the in-memory :class:`~ledger_node.log.merkle.MerkleLog`, tells the
sealer and wakes the callers: an acknowledgement means on disk, in the log and to be
anchored. Leaves already stored, or repeated within the group, get their existing index
with ``duplicate=True`` and are not stored again. ``None`` on the queue stops the thread
after everything queued before it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ledger_node.errors import LeafDamaged, NodeStopped, StoreCorrupted
from ledger_node.log.leaf import Leaf, Receipt
from ledger_node.log.merkle import MerkleLog
from ledger_node.platform.integrity import IntakeHalt, LeafChecker
from ledger_node.platform.metrics import NodeMetrics
from ledger_node.platform.store import NewBatch, SQLiteStore
from ledger_node.protocol.auth import BatchEvidence

__all__ = ["GroupWriter", "PendingBatch", "WriteQueue"]

_GROUP_LEAF_CAP: Final = 50_000  # at most this many leaves per group commit
_logger = logging.getLogger(__name__)


@dataclass
class PendingBatch:
    """One validated batch waiting for the writer; ``done`` is set once it has
    ``receipts`` (committed) or an ``error`` (nothing of it stored)."""

    leaves: tuple[Leaf, ...]
    leaf_hashes: tuple[bytes, ...]
    evidence: BatchEvidence
    received_at: float  # wall clock, stored with the batch
    started: float  # monotonic, when submit() was called (for the ack latency)
    done: threading.Event = field(default_factory=threading.Event)
    receipts: list[Receipt] | None = None
    error: BaseException | None = None


WriteQueue = queue.Queue[PendingBatch | None]
"""The queue from intake to the writer; ``None`` asks the writer to stop after the rest."""


class GroupWriter:
    """The writer thread: commits queued batches in groups and extends the log.

    ``log_lock`` guards ``log`` against the readers of its proofs; ``on_committed`` is told
    how many new leaves each commit brought (the sealer's cue); ``store_path`` only names
    the store in warnings. While ``halt`` is set nothing is committed: every queued batch
    gets its reason. ``checker`` reports a duplicate whose stored index the tree does not
    hold for that leaf hash (a damaged leaf-hash column): nobody of the group is answered.
    """

    def __init__(self, *, work: WriteQueue, store: SQLiteStore, log: MerkleLog,
                 log_lock: threading.RLock, metrics: NodeMetrics,
                 on_committed: Callable[[int], None], store_path: Path,
                 halt: IntakeHalt | None = None, checker: LeafChecker | None = None) -> None:
        """Prepare the writer; its thread runs from :meth:`start`."""
        self._halt = halt if halt is not None else IntakeHalt()
        self._checker = checker
        self._queue = work
        self._store = store
        self._log = log
        self._log_lock = log_lock
        self._metrics = metrics
        self._on_committed = on_committed
        self._store_path = store_path
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._write_loop, name="jointledger-writer",
                                        daemon=True)
        self._thread.start()

    def join(self) -> None:
        """Wait for the thread to exit (after ``None`` was queued behind the last batch)."""
        if self._thread is not None:
            self._thread.join()

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            group = [first]
            leaves = len(first.leaves)
            while leaves < _GROUP_LEAF_CAP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
                leaves += len(item.leaves)
            self._commit_group(group)

    def _commit_group(self, group: list[PendingBatch]) -> None:
        """Deduplicate, store in one transaction, extend the log, wake the callers."""
        try:
            self._halt.check()
            existing = self._store.indexes_of(h for p in group for h in p.leaf_hashes)
            self._check_duplicates(existing)
            next_index = self._log.size
            new_batches: list[NewBatch] = []
            results: list[list[Receipt]] = []
            seen = dict(existing)
            new_hashes: list[bytes] = []
            for pending in group:
                if not existing and seen.keys().isdisjoint(pending.leaf_hashes) and len(
                    set(pending.leaf_hashes)
                ) == len(pending.leaf_hashes):
                    # the common case, all new: no per-leaf bookkeeping
                    first = next_index
                    next_index += len(pending.leaf_hashes)
                    seen.update(zip(pending.leaf_hashes, range(first, next_index), strict=True))
                    results.append([Receipt(i, h, False) for i, h in
                                    zip(range(first, next_index), pending.leaf_hashes,
                                        strict=True)])
                    new_batches.append(NewBatch(
                        pending.evidence, pending.received_at, tuple(range(first, next_index)),
                        pending.leaves, pending.leaf_hashes,
                    ))
                    new_hashes.extend(pending.leaf_hashes)
                    continue
                receipts: list[Receipt] = []
                fresh_leaves: list[Leaf] = []
                fresh_hashes: list[bytes] = []
                for leaf, leaf_hash in zip(pending.leaves, pending.leaf_hashes, strict=True):
                    index = seen.get(leaf_hash)
                    if index is not None:
                        receipts.append(Receipt(index, leaf_hash, True))
                        continue
                    seen[leaf_hash] = next_index
                    receipts.append(Receipt(next_index, leaf_hash, False))
                    fresh_leaves.append(leaf)
                    fresh_hashes.append(leaf_hash)
                    next_index += 1
                results.append(receipts)
                if fresh_leaves:
                    new_batches.append(NewBatch(
                        pending.evidence, pending.received_at,
                        tuple(r.index for r in receipts), tuple(fresh_leaves),
                        tuple(fresh_hashes),
                    ))
                    new_hashes.extend(fresh_hashes)
            self._store.append_batches(new_batches)
            with self._log_lock:
                self._log.extend_leaf_hashes(new_hashes)
        except BaseException as exc:  # the store refused: nobody is acknowledged
            self._metrics.store_failed()
            for pending in group:
                pending.error = exc
                pending.done.set()
            return
        now = time.monotonic()
        self._metrics.committed([p.started for p in group], results,
                                batches=len(new_batches), leaves=len(new_hashes), now=now)
        self._on_committed(len(new_hashes))
        for pending, receipts in zip(group, results, strict=True):
            pending.receipts = receipts
            pending.done.set()
        self._save_levels()

    def _check_duplicates(self, existing: dict[bytes, int]) -> None:
        """A receipt for a duplicate names the stored index of its leaf hash: the tree must
        hold that leaf hash there (cheap: in memory, this thread is the log's only writer)."""
        log = self._log
        for leaf_hash, index in existing.items():
            if index >= log.size or log.leaf_hash(index) != leaf_hash:
                reason = (f"the store's leaf-hash index names it for leaf hash "
                          f"{leaf_hash.hex()}, which the Merkle tree does not hold there")
                if self._checker is not None:
                    raise self._checker.damaged(index, reason)
                raise LeafDamaged(str(self._store_path), index, reason)

    def _save_levels(self) -> None:
        """Persist the Merkle level chunks this commit completed, after the acknowledgements.

        They only speed the next start up (it rebuilds what is missing), so a failure is
        logged, not raised: the leaves are already durable.
        """
        try:
            self._store.save_levels(self._log)
        except (StoreCorrupted, NodeStopped) as exc:
            _logger.warning("store %s: Merkle levels not saved: %s", self._store_path, exc)
