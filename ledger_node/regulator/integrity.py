"""``jointledger fsck --role regulator``: every record of a regulator's store re-verified.

For each followed log: every record's leaf hash recomputed from its commitment, escrow and
tags (so the escrow is checked against the digest the anchored root binds), the indexes
contiguous, the tree rebuilt from the recomputed hashes and compared with the verified root
the store recorded, with every anchored root it stored from the chain and, given the chain,
with the chain's own history of the log. O(n). The node itself checks roots at open and
each record when it serves it (:mod:`ledger_node.regulator.node`); this is the full check.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ledger_node.chain.adapter import AnchoredCheckpoint
from ledger_node.errors import InvalidLeaf
from ledger_node.log.leaf import leaves_data
from ledger_node.log.merkle import MerkleLog, hasher_for
from ledger_node.regulator.store import RegulatorStore

__all__ = ["RegulatorLogReport", "full_check"]

_PAGE: Final = 10_000


@dataclass
class RegulatorLogReport:
    """What :func:`full_check` found in one followed log: ``rows`` (index, reason) of
    every damaged record, ``roots`` every root the rebuilt tree does not give."""

    platform: str
    log_id: bytes
    verified_size: int
    rows: list[tuple[int, str]] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Nothing damaged."""
        return not (self.rows or self.roots)


def full_check(store: RegulatorStore, *,
               chain_history: Mapping[bytes, Sequence[AnchoredCheckpoint]] | None = None
               ) -> list[RegulatorLogReport]:
    """Re-verify every record of every followed log of ``store`` (see the module docstring).

    ``chain_history`` maps a log id to the chain's anchored checkpoints of it; without it
    the store's own copy of the anchors is the reference.
    """
    reports = []
    for state in store.logs():
        report = RegulatorLogReport(state.platform, state.log_id, state.verified_size)
        hasher = hasher_for(state.hash_name)
        tree = MerkleLog(hasher)
        d = hasher.digest_size
        for first in range(0, state.verified_size, _PAGE):
            stop = min(state.verified_size, first + _PAGE)
            records = store.records(state.log_id, first, stop)
            indexes = [r.index for r in records]
            if indexes != list(range(first, stop)):
                missing = sorted(set(range(first, stop)) - set(indexes))
                report.rows.extend((index, "the verified record is missing")
                                   for index in missing)
            hashes = bytearray()
            for record in records:
                try:
                    data = leaves_data([record.leaf])[0]
                except InvalidLeaf as exc:
                    report.rows.append((record.index, f"the row is not a leaf: {exc}"))
                    hashes += record.leaf_hash
                    continue
                mine = hasher.hash_leaf(data)
                if mine != record.leaf_hash:
                    report.rows.append((record.index, "its leaf hash recomputed from its "
                                        f"commitment, escrow and tags is {mine.hex()}, the "
                                        f"stored one {record.leaf_hash.hex()}"))
                hashes += mine
            tree.extend_leaf_hashes(bytes(hashes[i:i + d]) for i in range(0, len(hashes), d))
        if tree.size != state.verified_size:  # records missing: no tree to compare
            report.rows.sort()
            reports.append(report)
            continue
        wanted: list[tuple[int, bytes, str]] = [
            (a.tree_size, a.root, "the stored anchored checkpoint")
            for a in store.anchors(state.log_id) if a.tree_size <= state.verified_size]
        if state.verified_size and state.verified_root is not None:
            wanted.append((state.verified_size, state.verified_root, "the verified root"))
        stored = {a.tree_size: a.root for a in store.anchors(state.log_id)}
        for anchored in (chain_history or {}).get(state.log_id, ()):
            if anchored.tree_size in stored and not hmac.compare_digest(
                    stored[anchored.tree_size], anchored.root):
                report.roots.append(f"the stored anchor of size {anchored.tree_size} is not "
                                    "the chain's")
            if anchored.tree_size <= state.verified_size:
                wanted.append((anchored.tree_size, anchored.root,
                               "the chain's anchored checkpoint"))
        for size, root, source in sorted(wanted):
            if not hmac.compare_digest(tree.root(size), root):
                report.roots.append(f"{source} of size {size}: the rebuilt tree gives "
                                    f"{tree.root(size).hex()}, not {root.hex()}")
        reports.append(report)
    return reports
