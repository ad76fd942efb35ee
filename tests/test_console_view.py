"""The console's chart shaping (ledger_node/regulator/console_view.py): volume buckets from
checkpoint
size deltas, anchoring latency, bucket widening, rule counts, shard lookup."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger_node.log.checkpoint import log_id_for
from ledger_node.regulator.console_view import (
    AnchorPoint,
    LatencyPoint,
    VolumePoint,
    bucket_start,
    chart_bucket,
    latency_series,
    page_before,
    rule_counts,
    shard_of,
    volume_series,
)

T = 1_795_000_000


@st.composite
def anchor_histories(draw: st.DrawFn) -> list[AnchorPoint]:
    """Checkpoints of one log: strictly growing sizes, block times that do not go back."""
    count = draw(st.integers(0, 30))
    sizes = sorted(draw(st.sets(st.integers(1, 10**6), min_size=count, max_size=count)))
    gaps = draw(st.lists(st.integers(0, 5_000), min_size=len(sizes), max_size=len(sizes)))
    lags = draw(st.lists(st.integers(0, 30), min_size=len(sizes), max_size=len(sizes)))
    block_time = T + draw(st.integers(0, 10**5))
    points = []
    for size, gap, lag in zip(sizes, gaps, lags, strict=True):
        block_time += gap
        points.append(AnchorPoint(size, block_time - lag, block_time))
    return draw(st.permutations(points))  # the functions must not rely on the input order


@given(anchor_histories(), st.integers(1, 3_600))
def test_volume_sums_to_the_largest_size_in_aligned_contiguous_buckets(
        anchors: list[AnchorPoint], bucket_s: int) -> None:
    points = volume_series(anchors, bucket_s)
    assert sum(p.records for p in points) == max((a.tree_size for a in anchors), default=0)
    assert all(p.records >= 0 for p in points)
    assert all(p.t % bucket_s == 0 for p in points)
    assert [b.t - a.t for a, b in zip(points, points[1:], strict=False)] == (
        [bucket_s] * (len(points) - 1))
    for anchor in anchors:  # every checkpoint's bucket is in the series
        assert any(p.t == bucket_start(anchor.block_time, bucket_s) for p in points)


@given(anchor_histories(), st.integers(1, 600), st.integers(0, 10**4), st.integers(0, 10**4))
def test_a_span_extends_the_series_with_empty_buckets(anchors: list[AnchorPoint],
                                                      bucket_s: int, before: int,
                                                      after: int) -> None:
    own = volume_series(anchors, bucket_s)
    if not own:
        return
    span = (own[0].t - before, own[-1].t + after)
    wide = volume_series(anchors, bucket_s, span)
    assert wide[0].t == bucket_start(span[0], bucket_s)
    assert wide[-1].t == bucket_start(span[1], bucket_s)
    assert [p for p in wide if p.records] == [p for p in own if p.records]


def test_volume_without_checkpoints_and_a_bad_bucket() -> None:
    assert volume_series([], 60) == []
    assert volume_series([], 60, (T, T + 120)) == [VolumePoint(bucket_start(T, 60) + k * 60, 0)
                                                   for k in range(3)]
    with pytest.raises(ValueError):
        volume_series([AnchorPoint(1, T, T)], 0)


def test_volume_of_an_aligned_history_exactly() -> None:
    start = 1_800_000_000 - 1_800_000_000 % 60
    anchors = [AnchorPoint(26, start + 200, start + 201), AnchorPoint(10, start, start + 5),
               AnchorPoint(25, start + 60, start + 65)]
    assert volume_series(anchors, 60) == [VolumePoint(start, 10), VolumePoint(start + 60, 15),
                                          VolumePoint(start + 120, 0),
                                          VolumePoint(start + 180, 1)]


@given(anchor_histories())
def test_latency_is_block_time_minus_signed_time_in_size_order(
        anchors: list[AnchorPoint]) -> None:
    series = latency_series(anchors)
    ordered = sorted(anchors, key=lambda a: a.tree_size)
    assert series == [LatencyPoint(a.block_time, a.block_time - a.timestamp) for a in ordered]


@given(st.lists(st.integers(T, T + 10**7), max_size=50), st.integers(1, 3_600),
       st.integers(1, 500))
def test_chart_bucket_is_a_multiple_that_fits(times: list[int], requested: int,
                                              max_buckets: int) -> None:
    bucket = chart_bucket(times, requested, max_buckets)
    assert bucket % requested == 0 and bucket >= requested
    if times:
        needed = (max(times) - bucket_start(min(times), bucket)) // bucket + 1
        assert needed <= max_buckets + 1  # alignment may cost one bucket
        if bucket > requested:  # widened only when the requested width did not fit
            assert (max(times) - bucket_start(min(times), requested)) // requested + 1 > (
                max_buckets)


def test_chart_bucket_refuses_nonsense() -> None:
    assert chart_bucket([], 60) == 60
    with pytest.raises(ValueError):
        chart_bucket([T], 0)
    with pytest.raises(ValueError):
        chart_bucket([T], 60, 0)


def test_rule_counts_and_shards() -> None:
    assert rule_counts(["b", "a", "b"]) == {"a": 1, "b": 2}
    assert list(rule_counts(["z", "a"])) == ["a", "z"]
    assert rule_counts([]) == {}
    assert shard_of("unionpay", log_id_for("unionpay", 0)) == 0
    assert shard_of("unionpay", log_id_for("unionpay", 5)) == 5
    assert shard_of("unionpay", log_id_for("wechatpay", 0)) is None
    assert shard_of("unionpay", log_id_for("unionpay", 70)) is None  # beyond the search


@given(st.lists(st.integers(1, 400), unique=True).map(sorted), st.integers(1, 30))
def test_paging_backwards_visits_every_checkpoint_once_in_order(sizes: list[int],
                                                                limit: int) -> None:
    seen: list[int] = []
    before: int | None = None
    while True:
        page = page_before(sizes, lambda size: size, before, limit)
        assert len(page.checkpoints) <= limit and page.checkpoints == sorted(page.checkpoints)
        assert all(before is None or size < before for size in page.checkpoints)
        seen = page.checkpoints + seen
        if not page.older:
            break
        assert page.checkpoints  # a page that says "older" is never empty
        before = page.checkpoints[0]
    assert seen == sizes


def test_a_page_holds_at_least_one_checkpoint() -> None:
    with pytest.raises(ValueError, match="at least one"):
        page_before([1, 2], lambda size: size, None, 0)
    assert page_before([1, 2, 3], lambda size: size, 1, 5).checkpoints == []
