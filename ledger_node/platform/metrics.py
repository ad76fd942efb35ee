"""A platform node's intake counters and latency samples, and the ``/metrics`` figures.

:class:`NodeMetrics` is written by the node's parts as they work (a rejected submission, a
group commit, a failed commit, an anchored checkpoint) and read as one snapshot by
:meth:`~ledger_node.platform.node.PlatformNode.metrics`; one lock keeps each update whole.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Final

from ledger_node.log.leaf import Receipt
from ledger_node.platform.sealer import SealerCounters
from ledger_node.platform.store import StoredCheckpoint

__all__ = ["NodeMetrics"]

_LATENCY_WINDOW: Final = 100_000  # latency samples kept for the p50/p99 summaries


def _percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``samples`` by nearest rank; 0.0 when empty."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


class NodeMetrics:
    """Counters of intake and commits, submit→ack and ack→anchored latencies (seconds)."""

    def __init__(self) -> None:
        """Start every counter at zero with no latency samples."""
        self._lock = threading.Lock()
        self._counts = {
            "submissions": 0, "leaves": 0, "duplicates": 0, "rejected": 0, "commits": 0,
            "committed_batches": 0, "store_errors": 0,
        }
        self._acks: deque[tuple[int, float]] = deque()  # (log size after batch, ack time)
        self._ack_latency: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._anchor_latency: deque[float] = deque(maxlen=_LATENCY_WINDOW)

    def rejected(self) -> None:
        """Count a submission refused by validation (nothing was queued)."""
        with self._lock:
            self._counts["rejected"] += 1

    def store_failed(self) -> None:
        """Count a group commit the store refused (nobody in it was acknowledged)."""
        with self._lock:
            self._counts["store_errors"] += 1

    def committed(self, started: Sequence[float], results: Sequence[Sequence[Receipt]], *,
                  batches: int, leaves: int, now: float) -> None:
        """Count one group commit: ``started`` (monotonic submit times) and ``results``
        (receipts) per submission in it, ``batches`` stored and ``leaves`` new leaves, all
        acknowledged at ``now``; remember when each batch with new leaves was acknowledged
        to measure its ack→anchored latency."""
        with self._lock:
            self._counts["commits"] += 1
            self._counts["committed_batches"] += batches
            self._counts["submissions"] += len(started)
            self._counts["leaves"] += leaves
            self._counts["duplicates"] += sum(r.duplicate for rs in results for r in rs)
            for submitted, receipts in zip(started, results, strict=True):
                self._ack_latency.append(now - submitted)
                fresh = [r.index for r in receipts if not r.duplicate]
                if fresh:  # ack→anchored is measured per batch that brought new leaves
                    self._acks.append((max(fresh) + 1, now))

    def anchored(self, tree_size: int) -> None:
        """Record the ack→anchored latency of every batch a checkpoint of ``tree_size``
        covers that had not been covered yet."""
        now = time.monotonic()
        with self._lock:
            while self._acks and self._acks[0][0] <= tree_size:
                _, acked = self._acks.popleft()
                self._anchor_latency.append(now - acked)

    def ack_latencies(self) -> list[float]:
        """The recorded submit→ack latencies (seconds), one per submission."""
        with self._lock:
            return list(self._ack_latency)

    def anchor_latencies(self) -> list[float]:
        """The recorded ack→anchored latencies (seconds), one per committed batch group."""
        with self._lock:
            return list(self._anchor_latency)

    def report(self, *, sealer: SealerCounters, log_size: int,
               latest: StoredCheckpoint | None, member_read_failures: int,
               chain_probe_failures: int) -> dict[str, float]:
        """The counters and latency summaries with the node's other figures, for ``/metrics``.

        ``sealer``, ``log_size``, ``latest`` (the latest anchored checkpoint) and the failure
        counts are read by the caller, which owns those parts.
        """
        with self._lock:
            counts = dict(self._counts)
            acks = list(self._ack_latency)
            anchors = list(self._anchor_latency)
        out: dict[str, float] = {k: float(v) for k, v in counts.items()}
        out.update({
            "log_size": float(log_size),
            "checkpoints_signed": float(sealer.checkpoints_signed),
            "checkpoints_anchored": float(sealer.checkpoints_anchored),
            "anchoring_failures": float(sealer.anchoring_failures),
            "anchoring_failing": 1.0 if sealer.failing else 0.0,
            "anchored_size": float(latest.tree_size if latest is not None else 0),
            "final_size": float(sealer.final_size),
            "lost_anchorings": float(sealer.lost_anchorings),
            "member_read_failures": float(member_read_failures),
            "chain_probe_failures": float(chain_probe_failures),
            "pending_leaves": float(log_size - (latest.tree_size if latest else 0)),
            "ack_latency_p50_seconds": _percentile(acks, 0.50),
            "ack_latency_p99_seconds": _percentile(acks, 0.99),
            "anchor_latency_p50_seconds": _percentile(anchors, 0.50),
            "anchor_latency_p99_seconds": _percentile(anchors, 0.99),
            "anchor_latency_samples": float(len(anchors)),
        })
        return out
