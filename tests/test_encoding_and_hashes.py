"""Encoding is injective; SM3 helpers agree with each other and with the standard vectors."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger_node.crypto import hashes
from ledger_node.crypto.encoding import domain_tag, encode_parts, length_prefixed

SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
SM3_ABCD16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


def test_sm3_standard_vectors() -> None:
    assert hashes.sm3(b"abc").hex() == SM3_ABC
    assert hashes.sm3(b"abcd" * 16).hex() == SM3_ABCD16


def test_hash_function_by_name() -> None:
    assert hashes.hash_function("sm3") is hashes.sm3
    assert hashes.hash_function("sha256")(b"abc") == hashlib.sha256(b"abc").digest()
    with pytest.raises(ValueError, match="unknown hash 'md5'"):
        hashes.hash_function("md5")


@pytest.mark.parametrize("use_hashlib", [True, False], ids=["hashlib", "cryptography"])
@given(prefix=st.binary(max_size=80), data=st.binary(max_size=200))
def test_sm3_with_prefix_equals_plain_sm3(use_hashlib: bool, prefix: bytes, data: bytes) -> None:
    if use_hashlib and not hashes.HASHLIB_HAS_SM3:
        pytest.skip("this Python's OpenSSL has no SM3; only the cryptography path exists")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hashes, "HASHLIB_HAS_SM3", use_hashlib)
        prefixed = hashes.sm3_with_prefix(prefix)
    assert prefixed(data) == hashes.sm3(prefix + data)
    assert prefixed(data) == prefixed(data)  # the shared prefix context is never consumed


def test_domain_tag_is_versioned_and_length_prefixed() -> None:
    assert domain_tag("field") == b"\x00\x00\x00\x0bjl:v1:field"
    assert length_prefixed(b"") == b"\x00\x00\x00\x00"


@given(
    st.lists(st.binary(max_size=12), max_size=5), st.lists(st.binary(max_size=12), max_size=5)
)
def test_encode_parts_is_injective(first: list[bytes], second: list[bytes]) -> None:
    if first != second:
        assert encode_parts("t", *first) != encode_parts("t", *second)


def test_encode_parts_separates_domains() -> None:
    assert encode_parts("leaf", b"x") != encode_parts("node", b"x")
    assert encode_parts("ab", b"c") != encode_parts("a", b"bc")


@pytest.mark.parametrize("use_hashlib", [True, False], ids=["hashlib", "cryptography"])
@given(prefix=st.binary(max_size=80), data=st.binary(max_size=200))
def test_sm3_state_copies_equal_plain_sm3(use_hashlib: bool, prefix: bytes, data: bytes) -> None:
    if use_hashlib and not hashes.HASHLIB_HAS_SM3:
        pytest.skip("this Python's OpenSSL has no SM3; only the cryptography path exists")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hashes, "HASHLIB_HAS_SM3", use_hashlib)
        base = hashes.sm3_state(prefix)
    state = base.copy()
    state.update(data)
    assert state.digest() == state.digest() == hashes.sm3(prefix + data)
    assert base.digest() == hashes.sm3(prefix)  # copies never consume the base
