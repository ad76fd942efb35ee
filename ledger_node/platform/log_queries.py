"""Reads of a platform log: leaves, leaf status, batch evidence, proof bundles, checkpoints.

:class:`LogQueries` answers from the store and the in-memory Merkle log that the writer
extends, and tracks the latest anchored checkpoint the sealer reports: proof bundles and
leaf statuses are served against that checkpoint only (PROTOCOL §5, §10).

Nothing damaged is served: every leaf row read from the store passes the
:class:`~ledger_node.platform.integrity.LeafChecker` (its leaf hash recomputed from its
commitment, escrow and tags, and its place in the tree) before it leaves, and every
inclusion and consistency proof is verified against the anchored roots it names before it
is returned; a failure raises :class:`~ledger_node.errors.LeafDamaged` /
:class:`~ledger_node.errors.TreeMismatch` (HTTP 503 ``store-damaged``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final

from ledger_node.chain.adapter import Deployment
from ledger_node.errors import (
    InvalidCheckpoint,
    InvalidLeafRange,
    InvalidProof,
    LeafRangeUnavailable,
    TreeMismatch,
    UnknownCheckpoint,
    UnknownLeaf,
)
from ledger_node.log.leaf import Leaf, LeafSummary
from ledger_node.log.merkle import (
    ConsistencyProof,
    Hasher,
    InclusionVerifier,
    MerkleLog,
    TreeHead,
    verify_consistency,
)
from ledger_node.platform.integrity import CheckedLeaves, LeafChecker
from ledger_node.platform.store import SQLiteStore, StoredBatch, StoredCheckpoint
from ledger_node.protocol.bundle import ChainAnchor, ProofBundle

__all__ = ["MAX_LEAF_RANGE", "LeafStatus", "LogQueries"]

MAX_LEAF_RANGE: Final = 10_000
"""The most leaves :meth:`LogQueries.leaves` returns at once."""


@dataclass(frozen=True)
class LeafStatus:
    """A leaf's place and whether a proof bundle is available for it yet.

    ``checkpoint_size`` is the size of the anchored checkpoint its bundle is made against
    (the latest anchored one), ``None`` while the leaf is pending.
    """

    index: int
    leaf_hash: bytes
    anchored: bool
    checkpoint_size: int | None


class LogQueries:
    """The read side of one log: committed leaves (``index < log.size``) and anchored
    checkpoints.

    ``log_lock`` is the lock the writer holds while it extends ``log``; ``latest_anchored``
    is the latest anchored checkpoint in the store when the node opened it; ``checker``
    checks every leaf row before it is served.
    """

    def __init__(self, *, store: SQLiteStore, log: MerkleLog, log_lock: threading.RLock,
                 hasher: Hasher, hash_name: str, log_id: bytes, deployment: Deployment,
                 latest_anchored: StoredCheckpoint | None, checker: LeafChecker) -> None:
        """Answer from ``store`` and ``log``; nothing is read here."""
        self._store = store
        self._log = log
        self._log_lock = log_lock
        self._checker = checker
        self._hasher = hasher
        self._inclusion = InclusionVerifier(hasher)
        self.hash_name = hash_name
        self.log_id = log_id
        self.deployment = deployment
        self._latest_anchored = latest_anchored

    # ------------------------------------------------------------------ the head

    def size(self) -> int:
        """The number of durably committed leaves in the log."""
        return self._log.size

    def head(self) -> TreeHead:
        """The log's current size and root (what the sealer checkpoints)."""
        with self._log_lock:
            return self._log.head()

    def anchored(self, stored: StoredCheckpoint) -> None:
        """Serve bundles and statuses against ``stored``, just anchored."""
        self._latest_anchored = stored

    def rolled_back(self, still_anchored: StoredCheckpoint | None) -> None:
        """The chain lost the anchorings above ``still_anchored``: bundles and statuses
        fall back to it (later leaves are pending again) until they are anchored again."""
        self._latest_anchored = still_anchored

    # ------------------------------------------------------------------ leaves

    def find(self, leaf_hash: bytes) -> int | None:
        """The index of the committed leaf with ``leaf_hash``, or ``None``."""
        if not isinstance(leaf_hash, bytes) or len(leaf_hash) != self._hasher.digest_size:
            return None
        index = self._store.index_of(leaf_hash)
        return index if index is not None and index < self._log.size else None

    def _check_index(self, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or not (
            0 <= index < self._log.size
        ):
            raise UnknownLeaf(f"no leaf at index {index!r} (log size {self._log.size})")

    def leaf(self, index: int) -> Leaf:
        """The leaf at ``index``, checked; raise :class:`UnknownLeaf` if there is none and
        :class:`LeafDamaged` if its row is damaged."""
        return self._checked(index).leaves[0]

    def summary(self, index: int) -> LeafSummary:
        """The summary of leaf ``index``, checked (:meth:`leaf`'s errors)."""
        return self._checked(index).summaries()[0]

    def _checked(self, index: int) -> CheckedLeaves:
        self._check_index(index)
        return self._checker.check(self._store.leaf_rows(index, index + 1))

    def leaves(self, start: int, end: int, *, limit: int = MAX_LEAF_RANGE) -> list[Leaf]:
        """The committed leaves ``[start, end)`` with their escrows, in one store read,
        each checked (:class:`LeafDamaged` names the first damaged one).

        For the regulator, who rebuilds the log's roots and opens the escrows. Raises
        :class:`InvalidLeafRange` unless ``0 <= start < end`` and ``end - start <= limit``,
        and :class:`LeafRangeUnavailable` (an :class:`UnknownLeaf`) if ``end`` is past the
        log's size.
        """
        return self._checked_range(start, end, limit).leaves

    def summaries(self, start: int, end: int, *,
                  limit: int = MAX_LEAF_RANGE) -> list[LeafSummary]:
        """The summaries of the committed leaves ``[start, end)``, checked; the escrow
        digests come from the check's own hashing (:meth:`leaves`' errors)."""
        return self._checked_range(start, end, limit).summaries()

    def _checked_range(self, start: int, end: int, limit: int) -> CheckedLeaves:
        for name, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidLeafRange(f"{name} must be an integer, got {value!r}")
        if start < 0 or end <= start or end - start > limit:
            raise InvalidLeafRange(
                f"a range [start, end) holds 1..{limit} leaves from start >= 0, "
                f"got [{start}, {end})"
            )
        size = self._log.size
        if end > size:
            raise LeafRangeUnavailable(start, end, size)
        return self._checker.check(self._store.leaf_rows(start, end))

    def leaf_batch(self, index: int) -> StoredBatch:
        """The signed batch leaf ``index`` arrived in: the signer, digest and signature,
        when it arrived and its leaves' indexes (non-repudiation evidence); raise
        :class:`UnknownLeaf` if there is no such leaf."""
        self._check_index(index)
        return self._store.batch_of(index)

    def leaf_status(self, index: int) -> LeafStatus:
        """Where leaf ``index`` is and whether it is anchored; raise :class:`UnknownLeaf`."""
        self._check_index(index)
        with self._log_lock:
            leaf_hash = self._log.leaf_hash(index)
        latest = self._latest_anchored
        anchored = latest is not None and index < latest.tree_size
        return LeafStatus(index, leaf_hash, anchored,
                          latest.tree_size if anchored and latest is not None else None)

    def proof_bundle(self, index: int) -> ProofBundle | None:
        """The proof bundle of leaf ``index`` against the latest anchored checkpoint.

        Returns ``None`` while the leaf is pending (not below an anchored checkpoint).
        Raises :class:`UnknownLeaf` if there is no such leaf.
        """
        self._check_index(index)
        latest = self._latest_anchored
        if latest is None or index >= latest.tree_size:
            return None
        assert latest.tx_hash is not None and latest.block_number is not None
        with self._log_lock:
            proof = self._log.inclusion_proof(index, latest.tree_size)
            leaf_hash = self._log.leaf_hash(index)
        summary = self.summary(index)  # the row matches leaf_hash, or LeafDamaged
        try:
            self._inclusion.verify(index, latest.tree_size, leaf_hash, proof.path, latest.root)
        except InvalidProof as exc:
            raise self._checker.damaged(
                index, f"its inclusion proof does not give the root anchored at size "
                f"{latest.tree_size} ({exc}): a Merkle level digest on its path is damaged"
            ) from None
        deployment = self.deployment
        return ProofBundle(
            hash_name=self.hash_name,
            leaf=summary,
            index=index,
            tree_size=latest.tree_size,
            path=proof.path,
            checkpoint=latest.signed(),
            anchor=ChainAnchor.of(deployment, latest.tx_hash, latest.block_number),
        )

    # ------------------------------------------------------------------ checkpoints

    def checkpoints(self, *, after: int = 0, limit: int | None = None) -> list[StoredCheckpoint]:
        """The anchored checkpoints of this log, oldest first, with transaction and block.

        Only those with ``tree_size > after``, at most ``limit`` of them (default: all).
        """
        return self._store.checkpoints("anchored", after=after, limit=limit)

    def checkpoint(self, tree_size: int) -> StoredCheckpoint:
        """The anchored checkpoint of ``tree_size``; raise :class:`UnknownCheckpoint`."""
        try:
            stored = self._store.checkpoint_at(tree_size)
        except UnknownCheckpoint:
            stored = None
        if stored is None or not stored.anchored:
            raise UnknownCheckpoint(
                f"no anchored checkpoint of size {tree_size} in log {self.log_id.hex()[:16]}…"
            )
        return stored

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The latest anchored checkpoint, or ``None`` before the first."""
        return self._latest_anchored

    def consistency_proof(self, size1: int, size2: int) -> ConsistencyProof:
        """The RFC 9162 consistency proof between two anchored checkpoints of this log.

        Raises :class:`InvalidCheckpoint` unless ``size1 <= size2`` and
        :class:`UnknownCheckpoint` if either size is not an anchored checkpoint's.
        """
        for name, size in (("size1", size1), ("size2", size2)):
            if isinstance(size, bool) or not isinstance(size, int):
                raise InvalidCheckpoint(f"{name} must be an integer, got {size!r}")
        if size1 > size2:
            raise InvalidCheckpoint(f"size1 {size1} is larger than size2 {size2}")
        first, second = self.checkpoint(size1), self.checkpoint(size2)
        with self._log_lock:
            proof = self._log.consistency_proof(size1, size2)
        try:
            verify_consistency(self._hasher, size1, size2, proof.path, first.root, second.root)
        except InvalidProof as exc:
            raise self._checker.report(TreeMismatch(
                f"the consistency proof between anchored sizes {size1} and {size2} does not "
                f"verify ({exc}): a Merkle level digest is damaged; it is not served: run "
                "jointledger fsck", tree_size=size2, first_bad=None,
                detail="consistency proof")) from None
        return proof
