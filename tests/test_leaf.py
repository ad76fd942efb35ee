"""Leaves and leaf summaries: canonical bytes, strict JSON parsing with named fields, and
batch digests."""

from __future__ import annotations

import json
import re

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


# ---------------------------------------------------------------------- leaf summaries

summaries = st.builds(
    lambda c, e, tags: LeafSummary(c, e, *(tags or (None, None))),
    digests, digests, tag_pairs,
)
_DIGEST_HEX = "ab" * 32
_SUMMARY = {"commitment": _DIGEST_HEX, "escrow_digest": "cd" * 32, "match_tag": None,
            "amount_tag": None}


@given(summaries)
def test_summary_json_round_trip(summary: LeafSummary) -> None:
    assert LeafSummary.from_json(summary.to_json()) == summary
    assert LeafSummary.from_json(json.loads(json.dumps(summary.to_json()))) == summary


@given(leaves)
def test_summary_json_is_the_leafs_with_the_escrow_digest(leaf: Leaf) -> None:
    document = LeafSummary.of(leaf).to_json()
    assert list(document) == ["commitment", "escrow_digest", "match_tag", "amount_tag"]
    whole = leaf.to_json()
    assert document == {"commitment": whole["commitment"], "escrow_digest": sm3(leaf.escrow).hex(),
                        "match_tag": whole["match_tag"], "amount_tag": whole["amount_tag"]}


def test_summary_json_is_lowercase_hex_with_null_tags() -> None:
    summary = LeafSummary(bytes([0xAB]) * 32, bytes([0xCD]) * 32)
    assert summary.to_json() == {"commitment": "ab" * 32, "escrow_digest": "cd" * 32,
                                 "match_tag": None, "amount_tag": None}
    assert LeafSummary.from_json({"commitment": "AB" * 32, "escrow_digest": "Cd" * 32}) == summary


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ([], "leaf", "must be a JSON object"),
        (None, "leaf", "must be a JSON object"),
        (_DIGEST_HEX, "leaf", "must be a JSON object"),
        (_SUMMARY | {"escrow": ""}, "escrow", "is not a leaf summary field"),
        ({"commitment": _DIGEST_HEX}, "escrow_digest", "is missing"),
        ({"escrow_digest": _DIGEST_HEX}, "commitment", "is missing"),
        (_SUMMARY | {"commitment": "zz" * 32}, "commitment", "hex byte pairs"),
        (_SUMMARY | {"commitment": "0" * 63}, "commitment", "hex byte pairs"),
        (_SUMMARY | {"commitment": "0x" + "00" * 31}, "commitment", "hex byte pairs"),
        (_SUMMARY | {"commitment": "00 " * 32}, "commitment", "hex byte pairs"),
        (_SUMMARY | {"commitment": 5}, "commitment", "hex byte pairs"),
        (_SUMMARY | {"commitment": None}, "commitment", "hex byte pairs"),
        (_SUMMARY | {"commitment": "00" * 31}, "commitment", "must be 32 bytes, got 31"),
        (_SUMMARY | {"escrow_digest": "00" * 33}, "escrow_digest", "must be 32 bytes, got 33"),
        (_SUMMARY | {"escrow_digest": ["00"]}, "escrow_digest", "hex byte pairs"),
        (_SUMMARY | {"match_tag": "00" * 31, "amount_tag": _DIGEST_HEX}, "match_tag",
         "must be 32 bytes, got 31"),
        (_SUMMARY | {"match_tag": _DIGEST_HEX, "amount_tag": "xy"}, "amount_tag",
         "hex byte pairs"),
        (_SUMMARY | {"match_tag": _DIGEST_HEX}, "amount_tag", "together"),
        ({"commitment": _DIGEST_HEX, "escrow_digest": _DIGEST_HEX, "match_tag": _DIGEST_HEX},
         "amount_tag", "together"),
        (_SUMMARY | {"amount_tag": _DIGEST_HEX}, "amount_tag", "together"),
    ],
)
def test_invalid_summaries_name_the_field(data: object, field: str, reason: str) -> None:
    with pytest.raises(InvalidLeaf, match=reason) as caught:
        LeafSummary.from_json(data)
    assert caught.value.field == field


def test_absent_tags_are_none() -> None:
    parsed = LeafSummary.from_json({"commitment": _DIGEST_HEX, "escrow_digest": _DIGEST_HEX})
    assert parsed.match_tag is None and parsed.amount_tag is None


_HEX_PAIRS = re.compile(r"(?:[0-9a-fA-F]{2})*")


@given(st.text(alphabet=st.sampled_from("0123456789abcdefABCDEFgx \t\n\r\x0b\x0c\x1c\u3000"
                                        "\u00a0\u0660\uff10"), max_size=8) | st.text(max_size=8))
def test_hex_values_are_exactly_pairs_of_hex_digits(text: str) -> None:
    """Whatever the string, it is read as hex if and only if it is hex digit pairs and
    nothing else (no whitespace, no 0x): the reading ``bytes.fromhex`` makes is checked."""
    for parse in (lambda: Leaf.from_json({"commitment": text}),
                  lambda: LeafSummary.from_json(_SUMMARY | {"commitment": text})):
        try:
            parse()
        except InvalidLeaf as exc:
            read_as_hex = exc.reason != "must be a string of hex byte pairs"
        else:
            read_as_hex = True
        assert read_as_hex == bool(_HEX_PAIRS.fullmatch(text))
