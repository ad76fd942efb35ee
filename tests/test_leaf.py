"""Leaves: canonical bytes, strict parsing with named fields, and batch digests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger_node.crypto.encoding import encode_parts
from ledger_node.crypto.hashes import sm3
from ledger_node.errors import InvalidLeaf
from ledger_node.log.leaf import (
    MAX_ESCROW_BYTES,
    Leaf,
    LeafSummary,
    batch_digest,
    batch_digest_from_data,
    leaves_data,
)

digests = st.binary(min_size=32, max_size=32)
tag_pairs = st.none() | st.tuples(digests, digests)
leaves = st.builds(
    lambda c, e, tags: Leaf(c, e, *(tags or (None, None))),
    digests,
    st.binary(max_size=200),
    tag_pairs,
)


@given(leaves)
def test_json_round_trip_and_summary_agree(leaf: Leaf) -> None:
    assert Leaf.from_json(leaf.to_json()) == leaf
    assert LeafSummary.of(leaf).leaf_data() == leaf.leaf_data()


def test_leaf_data_layout() -> None:
    leaf = Leaf(bytes(32), b"escrow", bytes([1]) * 32, bytes([2]) * 32)
    assert leaf.leaf_data() == encode_parts(
        "leaf", bytes(32), sm3(b"escrow"), bytes([1]) * 32, bytes([2]) * 32
    )
    assert Leaf(bytes(32)).leaf_data() == encode_parts("leaf", bytes(32), sm3(b""), b"", b"")


@given(leaves, leaves)
def test_different_leaves_have_different_data(first: Leaf, second: Leaf) -> None:
    if first != second:
        assert first.leaf_data() != second.leaf_data()


@pytest.mark.parametrize(
    ("build", "field", "reason"),
    [
        (lambda: Leaf(bytes(31)), "commitment", "must be 32 bytes, got 31"),
        (lambda: Leaf("00" * 32), "commitment", "must be 32 bytes, got str"),  # type: ignore[arg-type]
        (lambda: Leaf(bytes(32), bytes(MAX_ESCROW_BYTES + 1)), "escrow", "at most 4096"),
        (lambda: Leaf(bytes(32), b"", bytes(32), None), "amount_tag", "together"),
        (lambda: Leaf(bytes(32), b"", bytes(31), bytes(32)), "match_tag", "32 bytes"),
        (lambda: Leaf.from_json([]), "leaf", "JSON object"),
        (lambda: Leaf.from_json({"escrow": ""}), "commitment", "is missing"),
        (lambda: Leaf.from_json({"commitment": "00" * 32, "x": 1}), "x", "not a leaf field"),
        (lambda: Leaf.from_json({"commitment": "zz" * 32}), "commitment", "hex byte pairs"),
        (lambda: Leaf.from_json({"commitment": "0" * 63}), "commitment", "hex byte pairs"),
        (lambda: Leaf.from_json({"commitment": 5}), "commitment", "hex byte pairs"),
        (lambda: batch_digest(bytes(32), []), "leaves", "at least one leaf"),
    ],
)
def test_invalid_leaves_name_the_field(build: object, field: str, reason: str) -> None:
    with pytest.raises(InvalidLeaf, match=reason) as caught:
        build()  # type: ignore[operator]
    assert caught.value.field == field


def test_batch_digest_binds_log_order_and_content() -> None:
    a, b = Leaf(bytes(32)), Leaf(bytes([1]) * 32)
    log1, log2 = bytes(32), bytes([9]) * 32
    digest = batch_digest(log1, [a, b])
    assert digest != batch_digest(log2, [a, b])
    assert digest != batch_digest(log1, [b, a])
    assert digest != batch_digest(log1, [a])


_digests = st.binary(min_size=32, max_size=32)
_leaves = st.builds(
    lambda c, e, tags: Leaf(c, e, *(tags or (None, None))),
    _digests, st.binary(max_size=64), st.none() | st.tuples(_digests, _digests))


@given(log_id=st.binary(min_size=1, max_size=40), batch=st.lists(_leaves, min_size=1, max_size=8))
def test_leaves_data_and_batch_digest_match_the_reference_encoding(
        log_id: bytes, batch: list[Leaf]) -> None:
    datas = leaves_data(batch)
    reference = [encode_parts("leaf", leaf.commitment, sm3(leaf.escrow), leaf.match_tag or b"",
                              leaf.amount_tag or b"") for leaf in batch]
    assert datas == reference == [leaf.leaf_data() for leaf in batch]
    expected = sm3(encode_parts("batch", log_id, *reference))
    assert batch_digest_from_data(log_id, datas) == expected == batch_digest(log_id, batch)


def test_a_batch_of_no_leaves_has_no_digest() -> None:
    with pytest.raises(InvalidLeaf, match="at least one leaf"):
        batch_digest(b"\x09" * 32, [])
    with pytest.raises(InvalidLeaf, match="at least one leaf"):
        batch_digest_from_data(b"\x09" * 32, [])
