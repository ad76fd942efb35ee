"""Pure shaping of the web console's chart data from anchored checkpoints and alerts.

Nothing here reads a store or the chain: the console routes hand in what they read.

* **Volume**: records anchored per time bucket, from the size deltas of a log's successive
  checkpoints, placed by the time of the block that anchored each (public data: anyone
  reading the chain can draw it).
* **Latency**: per checkpoint, the anchoring block's time minus the time the platform
  signed into the checkpoint.
* **Alerts by rule**: counts per AML rule name.
* **Alert basis**: the settings an alert was raised under (threshold, natural day, window),
  so the console can explain it in the reader's language with amounts in yuan.
* **Checkpoint pages**: a log's checkpoints paged backwards by tree size for the timeline.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from ledger_node.log.checkpoint import log_id_for
from ledger_node.protocol.aml import AmlConfig, rule_category

MAX_BUCKETS: Final = 2_000
"""At most this many buckets per series; a finer bucket is widened to fit."""
MAX_SHARD_SEARCHED: Final = 64

_Anchored = TypeVar("_Anchored")


@dataclass(frozen=True)
class AnchorPoint:
    """What the charts need of one anchored checkpoint."""

    tree_size: int
    timestamp: int  # Unix seconds the platform signed into the checkpoint
    block_time: int  # Unix seconds of the block that anchored it


@dataclass(frozen=True)
class VolumePoint:
    """Records anchored in the bucket starting at ``t`` (Unix seconds)."""

    t: int
    records: int


@dataclass(frozen=True)
class LatencyPoint:
    """One checkpoint's anchoring latency, placed at its block time."""

    t: int
    latency_s: int


def bucket_start(moment: int, bucket_s: int) -> int:
    """The start of the ``bucket_s``-second bucket holding ``moment`` (aligned to 0)."""
    return moment - moment % bucket_s


def chart_bucket(times: Iterable[int], requested_s: int, max_buckets: int = MAX_BUCKETS) -> int:
    """The bucket width to use: ``requested_s``, widened to a multiple of it so that the
    span of ``times`` fits in at most ``max_buckets`` buckets."""
    if requested_s < 1 or max_buckets < 1:
        raise ValueError("bucket width and bucket count must be positive")
    listed = list(times)
    if not listed:
        return requested_s
    first = bucket_start(min(listed), requested_s)
    needed = (max(listed) - first) // requested_s + 1
    factor = -(-needed // max_buckets)  # ceil
    return requested_s * factor


def volume_series(anchors: Sequence[AnchorPoint], bucket_s: int,
                  span: tuple[int, int] | None = None) -> list[VolumePoint]:
    """Records anchored per bucket of one log, oldest bucket first, empty buckets as 0.

    Each checkpoint adds its tree size minus the largest size anchored before it (in size
    order; the log starts empty) to the bucket of its block time. The series covers
    ``span`` (first and last moment, e.g. over every platform, so series line up) or else
    the checkpoints' own block times; no checkpoints and no span give no points.
    """
    if bucket_s < 1:
        raise ValueError("bucket width must be positive")
    totals: Counter[int] = Counter()
    previous = 0
    for anchor in sorted(anchors, key=lambda a: a.tree_size):
        totals[bucket_start(anchor.block_time, bucket_s)] += anchor.tree_size - previous
        previous = anchor.tree_size
    if span is None:
        if not totals:
            return []
        span = (min(totals), max(totals))
    first = bucket_start(min(span[0], *totals) if totals else span[0], bucket_s)
    last = bucket_start(max(span[1], *totals) if totals else span[1], bucket_s)
    return [VolumePoint(t, totals.get(t, 0)) for t in range(first, last + 1, bucket_s)]


def latency_series(anchors: Sequence[AnchorPoint]) -> list[LatencyPoint]:
    """Each checkpoint's block time minus its signed time, in size order (may be 0, or
    negative if the platform's clock runs ahead of the chain's)."""
    return [LatencyPoint(a.block_time, a.block_time - a.timestamp)
            for a in sorted(anchors, key=lambda a: a.tree_size)]


def rule_counts(rules: Iterable[str]) -> dict[str, int]:
    """How many alerts each rule raised, by rule name."""
    return dict(sorted(Counter(rules).items()))


def alert_basis(rule: str, config: AmlConfig) -> dict[str, object] | None:
    """What the console needs, beyond the alert itself, to explain an alert of ``rule``
    raised under ``config``: the family, the category, its inclusive threshold in CNY fen
    and, for a large-value alert, the natural day's offset from UTC in seconds and whether
    days are summed across platforms; for a structuring alert, the window in seconds.
    ``None`` for a rule name :func:`~ledger_node.protocol.aml.detect` does not raise."""
    try:
        category = rule_category(rule)
    except ValueError:
        return None
    family = rule.partition(".")[0]
    basis: dict[str, object] = {"family": family, "category": category.value,
                                "threshold_fen": config.threshold(category)}
    if family == "large_value":
        basis["day_utc_offset_s"] = int(config.day_utc_offset.total_seconds())
        basis["across_platforms"] = config.cumulate_across_platforms
    else:
        basis["window_s"] = int(config.structuring_window.total_seconds())
    return basis


def shard_of(platform: str, log_id: bytes, max_shard: int = MAX_SHARD_SEARCHED) -> int | None:
    """The shard number whose log id for ``platform`` is ``log_id`` (searched up to
    ``max_shard``), or ``None`` when none is."""
    for shard in range(max_shard):
        if log_id_for(platform, shard) == log_id:
            return shard
    return None


@dataclass(frozen=True)
class CheckpointPage(Generic[_Anchored]):
    """One page of a log's checkpoints, oldest first, and whether older ones remain."""

    checkpoints: list[_Anchored]
    older: bool


def page_before(checkpoints: Sequence[_Anchored], tree_size: Callable[[_Anchored], int],
                before: int | None, limit: int) -> CheckpointPage[_Anchored]:
    """The newest ``limit`` of ``checkpoints`` (in ascending size order) whose size is
    below ``before`` (all when ``None``), and whether any smaller one is left out: the
    timeline pages a log backwards by asking again with ``before`` = the smallest shown."""
    if limit < 1:
        raise ValueError("a page holds at least one checkpoint")
    below = [c for c in checkpoints if before is None or tree_size(c) < before]
    shown = below[-limit:]
    return CheckpointPage(shown, len(below) > len(shown))
