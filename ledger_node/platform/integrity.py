"""Integrity of a platform store: nothing damaged leaves the node (docs/node.md § Integrity).

Three checks, from the cheapest to the full one:

* :class:`LeafChecker`, on every read: a leaf row read from the store is served only if its
  leaf hash, recomputed from its commitment, escrow and tags (:func:`~ledger_node.log.leaf.
  leaves_data` and the log's hasher), is the stored one, and the stored one is what the
  Merkle tree holds at its index. SQLite's ``quick_check`` passes a row whose bytes were
  changed inside a valid page; this does not.
* :func:`check_tree`, at open: the tree's roots (read from the stored levels, O(log n)
  digests each) against the roots the log signed (its latest anchored and pending
  checkpoints) and the chain anchored. A root that differs is located by
  :func:`locate_damage`, which descends the stored levels instead of rehashing the log.
* :func:`full_check` (``jointledger fsck``): every row re-verified, the tree rebuilt, every
  stored checkpoint and every anchored root compared, each stored level chunk compared.
"""

from __future__ import annotations

import hmac
import logging
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from ledger_node.crypto import gmcrypto
from ledger_node.errors import (
    InvalidSignature,
    LeafDamaged,
    StoreBehindChain,
    StoreCorrupted,
    TreeMismatch,
)
from ledger_node.log.leaf import (
    Leaf,
    LeafSummary,
    batch_digest,
    leaves_data,
    summaries_from_data,
)
from ledger_node.log.merkle import Hasher, MerkleLog, bisect_roots, hash_leaves, hash_pairs
from ledger_node.platform.store import LEVEL_CHUNK, SQLiteStore, StoredLeaf

__all__ = [
    "CheckedLeaves",
    "batch_problems",
    "Damage",
    "FsckReport",
    "IntakeHalt",
    "LeafChecker",
    "TrustedRoot",
    "check_tree",
    "full_check",
    "locate_damage",
]

_log = logging.getLogger(__name__)
_Damaged = TypeVar("_Damaged", bound=StoreCorrupted)
_SUBTREE_BULK_LEVEL: Final = 10  # below 2**10 leaves a descent checks the whole subtree at once


@dataclass(frozen=True)
class CheckedLeaves:
    """Leaves ``start..start+len(leaves)-1`` that passed :class:`LeafChecker`, with their
    leaf data (each escrow hashed once: summaries are read out of it)."""

    start: int
    leaves: list[Leaf]
    datas: list[bytes]

    def summaries(self) -> list[LeafSummary]:
        """The leaves' summaries, escrow digests taken from the data already computed."""
        return summaries_from_data(self.leaves, self.datas)


class LeafChecker:
    """Checks leaf rows read from the store before they leave the node.

    ``tree`` is the node's Merkle log (``tree_lock`` the lock its writer holds), ``name``
    names the store in errors, and ``on_damage`` is told of every damaged row found (the
    node then stops acknowledging and reports it in health).
    """

    def __init__(self, *, name: str, hasher: Hasher, tree: MerkleLog,
                 tree_lock: threading.RLock | None = None,
                 on_damage: Callable[[StoreCorrupted], None] | None = None) -> None:
        """Check against ``tree``; nothing is read here."""
        self._name = name
        self._hasher = hasher
        self._tree = tree
        self._lock = tree_lock if tree_lock is not None else threading.RLock()
        self._on_damage = on_damage

    def check(self, rows: Sequence[StoredLeaf]) -> CheckedLeaves:
        """``rows`` (contiguous, in index order) if each is intact; else raise
        :class:`LeafDamaged` naming the first bad one.

        Costs one leaf encoding and one leaf hash per row (the escrow's SM3 included) and
        three byte-string comparisons for the whole range.
        """
        if not rows:
            return CheckedLeaves(0, [], [])
        start = rows[0].index
        leaves = [row.leaf for row in rows]
        datas = leaves_data(leaves)
        recomputed = hash_leaves(self._hasher, datas)
        stored = b"".join(row.leaf_hash for row in rows)
        with self._lock:
            in_tree = self._tree.level_digests(0, start, start + len(rows))
        if recomputed == stored == in_tree:
            return CheckedLeaves(start, leaves, datas)
        raise self._damaged(rows, recomputed, in_tree)

    def check_one(self, row: StoredLeaf) -> CheckedLeaves:
        """:meth:`check` of one row."""
        return self.check([row])

    def _damaged(self, rows: Sequence[StoredLeaf], recomputed: bytes,
                 in_tree: bytes) -> LeafDamaged:
        d = self._hasher.digest_size
        for offset, row in enumerate(rows):
            mine = recomputed[offset * d:(offset + 1) * d]
            tree = in_tree[offset * d:(offset + 1) * d]
            if mine != row.leaf_hash:
                reason = (f"its leaf hash recomputed from its commitment, escrow and tags is "
                          f"{mine.hex()}, the stored one {row.leaf_hash.hex()}")
            elif row.leaf_hash != tree:
                reason = (f"its stored leaf hash {row.leaf_hash.hex()} is not the one the "
                          f"Merkle tree holds at its index, {tree.hex()}")
            else:
                continue
            return self.damaged(row.index, reason)
        raise AssertionError("a range that failed its check has no bad row")

    def damaged(self, index: int, reason: str) -> LeafDamaged:
        """The error for leaf ``index`` found damaged for ``reason``, reported first."""
        return self.report(LeafDamaged(self._name, index, reason))

    def report(self, error: _Damaged) -> _Damaged:
        """Tell ``on_damage`` of ``error`` (damage found on a read); return it to raise."""
        if self._on_damage is not None:
            self._on_damage(error)
        return error


class IntakeHalt:
    """Why the node acknowledges nothing any more, if it does not (thread-safe).

    Set when the store turns out behind the chain or disagreeing with it
    (:class:`~ledger_node.errors.StoreBehindChain`), or a read found a damaged row
    (:class:`~ledger_node.errors.LeafDamaged`); it stays set until the node is restarted
    after the operator repaired the store. The first reason is kept.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reason: StoreBehindChain | StoreCorrupted | None = None

    def halt(self, reason: StoreBehindChain | StoreCorrupted) -> None:
        """Stop acknowledging, for ``reason`` (kept only if none is set yet)."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
                _log.error("intake stopped: %s", reason)

    @property
    def reason(self) -> StoreBehindChain | StoreCorrupted | None:
        """The error that stopped intake, or ``None``."""
        return self._reason

    @property
    def anchoring_allowed(self) -> bool:
        """False while the chain holds what the store lacks: anchoring would conflict."""
        return not isinstance(self._reason, StoreBehindChain)

    def check(self) -> None:
        """Raise a copy of the halting error, if intake is halted."""
        reason = self._reason
        if reason is None:
            return
        if isinstance(reason, StoreBehindChain):
            raise StoreBehindChain(str(reason), chain_size=reason.chain_size,
                                   store_size=reason.store_size, disagrees=reason.disagrees)
        if isinstance(reason, LeafDamaged):
            raise LeafDamaged(reason.log, reason.index, reason.reason)
        raise StoreCorrupted(str(reason))


# ------------------------------------------------------------------ the tree at open


@dataclass(frozen=True)
class TrustedRoot:
    """A root the tree must give at ``tree_size``, and where it comes from (for messages)."""

    tree_size: int
    root: bytes
    source: str


@dataclass(frozen=True)
class Damage:
    """Where :func:`locate_damage` found the tree or the rows bad.

    ``index`` is the first leaf index affected (the leftmost leaf under a bad tree node),
    ``None`` when nothing could be named; ``level_row`` whether the bad thing is a stored
    Merkle level digest (a cache of the leaves) rather than a leaf row.
    """

    index: int | None
    detail: str
    level_row: bool = False

    def describe(self) -> str:
        """One phrase for messages: the index and what is wrong there."""
        if self.index is None:
            return self.detail
        return f"first bad index {self.index}: {self.detail}"


def check_tree(tree: MerkleLog, store: SQLiteStore, trusted: Iterable[TrustedRoot],
               *, name: str) -> None:
    """Raise :class:`TreeMismatch` unless ``tree`` gives every trusted root.

    Each root costs O(log n) digest reads from the stored levels (not a rebuild). On the
    first mismatch the damage is located with :func:`locate_damage` and named in the
    error (``first_bad``). A trusted size past the tree's raises too (leaves lost).
    """
    for want in sorted(trusted, key=lambda t: t.tree_size):
        if want.tree_size > tree.size:
            raise TreeMismatch(
                f"store {name} has {want.source} of size {want.tree_size} but only "
                f"{tree.size} leaves", tree_size=want.tree_size, first_bad=tree.size,
                detail="leaves lost")
        if not hmac.compare_digest(tree.root(want.tree_size), want.root):
            damage = locate_damage(tree, store, want, hasher=tree.hasher)
            raise TreeMismatch(
                f"store {name}: the stored leaves do not produce the root of {want.source} "
                f"of size {want.tree_size}; {damage.describe()}",
                tree_size=want.tree_size, first_bad=damage.index, detail=damage.detail)


def locate_damage(tree: MerkleLog, store: SQLiteStore, bad: TrustedRoot, *,
                  hasher: Hasher) -> Damage:
    """Find the first place where ``tree`` (and the store's rows) stop agreeing with what
    was signed, given that ``tree.root(bad.tree_size) != bad.root``.

    1. Bisect the store's own checkpoints below ``bad`` (each root O(log n) reads) for the
       largest size ``p`` whose root still matches and the smallest ``s`` that does not:
       everything the tree holds below ``p`` is vouched for by a signed root.
    2. Descend the tree from the complete subtrees of ``s`` that reach past ``p``, left
       first: a node that is not the hash of its two children is a bad level digest; at the
       bottom each leaf row's data, stored leaf hash and tree digest are compared. The
       first bad node or row, in index order, is returned.

    Cost: O(log C · log n) for the bisection over C checkpoints, then the nodes and rows
    between ``p`` and ``s`` (at most one seal's worth on a running log). When everything
    between them is consistent the leaves there were replaced wholesale (or the roots are
    another history's): the damage is reported at ``p`` without a finer position.
    """
    trusted = [(cp.tree_size, cp.root) for cp in store.checkpoints()
               if cp.tree_size < bad.tree_size] + [(bad.tree_size, bad.root)]
    good, size = bisect_roots(tree, trusted)
    descent = _Descent(tree, store, hasher, good)
    for level, node in _complete_subtrees(size):
        found = descent.first_bad(level, node)
        if found is not None:
            return found
    return Damage(good, f"leaves {good}..{size - 1} agree with each other and with the tree "
                  f"but do not give the root signed at size {size}: they were replaced, or "
                  "the root is another history's")


def _complete_subtrees(size: int) -> list[tuple[int, int]]:
    """The (level, node) of the complete subtrees a tree of ``size`` leaves folds, left first."""
    out = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append((level, start >> level))
            start += 1 << level
    return out


@dataclass
class _Descent:
    """The left-first descent of :func:`locate_damage` below the vouched-for size ``good``."""

    tree: MerkleLog
    store: SQLiteStore
    hasher: Hasher
    good: int
    visited: int = field(default=0)

    def first_bad(self, level: int, node: int) -> Damage | None:
        lo, hi = node << level, (node + 1) << level
        if hi <= self.good:
            return None  # a complete subtree of the matching size: vouched for
        if level <= _SUBTREE_BULK_LEVEL:
            return self._bulk(level, node)
        digest = self.tree.level_digests(level, node, node + 1)
        children = self.tree.level_digests(level - 1, 2 * node, 2 * node + 2)
        d = self.hasher.digest_size
        if self.hasher.hash_children(children[:d], children[d:]) != digest:
            return Damage(lo, f"the Merkle level {level} digest {node} (leaves {lo}..{hi - 1}) "
                          "is not the hash of its two children", level_row=True)
        return self.first_bad(level - 1, 2 * node) or self.first_bad(level - 1, 2 * node + 1)

    def _bulk(self, level: int, node: int) -> Damage | None:
        """The subtree of ``2**level`` leaves at once: its rows, then each level's digests
        against the hashes of the level below; the lowest index found bad wins."""
        lo, hi = node << level, (node + 1) << level
        d = self.hasher.digest_size
        try:
            rows = self.store.leaf_rows(lo, hi)
        except LeafDamaged as exc:  # a row that is not even a leaf
            return Damage(exc.index, exc.reason)
        tree_leaves = self.tree.level_digests(0, lo, hi)
        recomputed = hash_leaves(self.hasher, leaves_data([r.leaf for r in rows]))
        found: list[Damage] = []
        for offset, row in enumerate(rows):
            want = tree_leaves[offset * d:(offset + 1) * d]
            mine = recomputed[offset * d:(offset + 1) * d]
            if mine != row.leaf_hash:
                found.append(Damage(row.index, f"leaf {row.index}'s leaf hash recomputed from "
                                    "its commitment, escrow and tags is not the stored one"))
                break
            if row.leaf_hash != want:
                found.append(Damage(row.index, f"leaf {row.index}'s stored leaf hash is not "
                                    "the tree's level 0 digest", level_row=True))
                break
        below = tree_leaves
        for k in range(1, level + 1):
            first = lo >> k
            digests = self.tree.level_digests(k, first, hi >> k)
            pairs = hash_pairs(self.hasher, below)
            if pairs != digests:
                at = next(i for i in range(0, len(pairs), d) if pairs[i:i + d] != digests[i:i + d])
                bad = first + at // d
                found.append(Damage(bad << k, f"the Merkle level {k} digest {bad} (leaves "
                                    f"{bad << k}..{((bad + 1) << k) - 1}) is not the hash of its "
                                    "two children", level_row=True))
                break
            below = digests
        return min(found, key=lambda f: (f.index or 0, f.level_row)) if found else None


# ------------------------------------------------------------------ fsck


@dataclass
class FsckReport:
    """What :func:`full_check` found. ``rows``: (index, reason) of every damaged leaf row;
    ``level_chunks``: (level, chunk, reason) of every stored level chunk that is not the
    rebuilt tree's; ``roots``: every root (a stored checkpoint's, an anchored one's) the
    rebuilt tree does not give; ``notes``: facts that are not damage (e.g. anchorings the
    chain lost, which the node sends again). ``tree`` is the log rebuilt from the rows'
    recomputed leaf hashes."""

    size: int
    tree: MerkleLog
    rows: list[tuple[int, str]] = field(default_factory=list)
    level_chunks: list[tuple[int, int, str]] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    behind: tuple[int, int] | None = None  # (chain size, store size) when the chain is ahead

    @property
    def clean(self) -> bool:
        """Nothing damaged, nothing missing."""
        return not (self.rows or self.level_chunks or self.roots or self.behind)


def batch_problems(store: SQLiteStore, log_id: bytes,
                   keys: Sequence[gmcrypto.SM2PublicKey] | None) -> list[str]:
    """Every stored batch's evidence re-verified: its digest must be
    ``batch_digest(log_id, leaves)`` of the leaves at its indexes as stored and, with
    ``keys`` (the platform's registered SM2 keys), its signature must verify with one of
    them. Restored batches (no signature: lost with the tail) are skipped."""
    problems = []
    for batch in store.batches():
        if not batch.evidence.signature:
            continue
        first, last = min(batch.indexes), max(batch.indexes)
        name = f"batch {batch.id} (leaves {first}..{last})"
        leaves = store.leaves_at(batch.indexes)
        if len(leaves) != len(set(batch.indexes)):
            problems.append(f"{name}: some of its leaves are not stored")
            continue
        digest = batch_digest(log_id, [leaves[i] for i in batch.indexes])
        if not hmac.compare_digest(digest, batch.evidence.digest):
            problems.append(f"{name}: its stored digest is not the batch digest of its stored "
                            "leaves")
            continue
        if keys is None:
            continue
        for key in keys:
            try:
                gmcrypto.verify(key, digest, batch.evidence.signature)
                break
            except InvalidSignature:
                continue
        else:
            problems.append(f"{name}: its signature verifies with no key the platform has "
                            "registered")
    return problems


def full_check(store: SQLiteStore, hasher: Hasher, *,
               extra_roots: Sequence[TrustedRoot] = ()) -> FsckReport:
    """Re-verify every row, rebuild the tree, compare every stored checkpoint's root and
    ``extra_roots`` (the chain's anchored ones) and every stored level chunk.

    O(n): one leaf encoding and leaf hash per row, the tree rebuilt once.
    """
    size = store.size()
    tree = MerkleLog(hasher)
    report = FsckReport(size, tree)
    for page in store.scan_leaf_rows():
        datas = leaves_data([row.leaf for row in page])
        recomputed = hash_leaves(hasher, datas)
        d = hasher.digest_size
        for offset, row in enumerate(page):
            mine = recomputed[offset * d:(offset + 1) * d]
            if mine != row.leaf_hash:
                report.rows.append((row.index, "its leaf hash recomputed from its commitment, "
                                    f"escrow and tags is {mine.hex()}, the stored one "
                                    f"{row.leaf_hash.hex()}"))
        tree.extend_leaf_hashes(recomputed[i:i + d] for i in range(0, len(recomputed), d))
    for level, chunk, digests, crc in store.level_rows():
        start, stop = chunk * LEVEL_CHUNK, (chunk + 1) * LEVEL_CHUNK
        if zlib.crc32(digests) != crc:
            report.level_chunks.append((level, chunk, "fails its CRC-32"))
        elif stop > size >> level:
            report.level_chunks.append((level, chunk, f"covers more than {size} leaves give"))
        elif tree.level_digests(level, start, stop) != digests:
            report.level_chunks.append((level, chunk, "is not the rebuilt tree's"))
    wanted = [TrustedRoot(cp.tree_size, cp.root, f"the {cp.status} checkpoint")
              for cp in store.checkpoints()] + list(extra_roots)
    for want in sorted(wanted, key=lambda t: t.tree_size):
        if want.tree_size > size:
            report.roots.append(f"{want.source} of size {want.tree_size}: the store holds only "
                                f"{size} leaves")
        elif not hmac.compare_digest(tree.root(want.tree_size), want.root):
            report.roots.append(f"{want.source} of size {want.tree_size}: the rebuilt tree "
                                f"gives root {tree.root(want.tree_size).hex()}, not "
                                f"{want.root.hex()}")
    return report
