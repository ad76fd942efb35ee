"""Sealed disclosure responses: round trip, binding to request/commitment/chain/contract,
key rotation, and every rejection path of the opener."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_node.crypto import gmcrypto
from ledger_node.crypto.hashes import sm3
from ledger_node.demo.run import sample_records
from ledger_node.errors import InvalidDisclosureResponse, UnknownDisclosureKey
from ledger_node.protocol.commitment import (
    RecordOpening,
    new_salt,
    record_commitment,
    verify_opening,
)
from ledger_node.protocol.disclosure import (
    HEADER_SIZE,
    MAX_RESPONSE_SIZE,
    MIN_RESPONSE_SIZE,
    RESPONSE_VERSION,
    canonical_opening,
    disclosure_aad,
    open_disclosure_response,
    response_digest,
    response_fingerprint,
    seal_disclosure_response,
    wrapped_key_raw,
)
from ledger_node.protocol.escrow import WRAPPED_KEY_SIZE, key_fingerprint
from tests.strategies import records, salts

REGULATOR = gmcrypto.generate_private_key()
ROTATED = gmcrypto.generate_private_key()
CHAIN_ID = 131277322940537
CONTRACT = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
OTHER_CONTRACT = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"
BODY = HEADER_SIZE + WRAPPED_KEY_SIZE  # where the nonce starts


def an_opening(seed: int = 0) -> tuple[RecordOpening, bytes]:
    record = sample_records("unionpay", 1, random.Random(seed))[0]
    opening = RecordOpening(record, new_salt())
    return opening, record_commitment(record, opening.salt)


OPENING, COMMITMENT = an_opening()


def seal(key: gmcrypto.SM2PrivateKey = REGULATOR, request_id: int = 7,
         commitment: bytes = COMMITMENT, opening: RecordOpening = OPENING, *,
         chain_id: int = CHAIN_ID, contract: str = CONTRACT) -> bytes:
    return seal_disclosure_response(key.public_key(), request_id, commitment, opening,
                                    chain_id=chain_id, contract=contract)


def open_(response: bytes, keys: tuple[gmcrypto.SM2PrivateKey, ...] = (REGULATOR,),
          request_id: int = 7, commitment: bytes = COMMITMENT, *, chain_id: int = CHAIN_ID,
          contract: str = CONTRACT) -> RecordOpening:
    return open_disclosure_response(keys, response, request_id, commitment,
                                    chain_id=chain_id, contract=contract)


def sealed_plaintext(plaintext: bytes, request_id: int = 7) -> bytes:
    """A well-formed envelope around arbitrary plaintext (what a faulty platform could send)."""
    key = gmcrypto.new_sm4_key()
    aad = disclosure_aad(request_id, COMMITMENT, chain_id=CHAIN_ID, contract=CONTRACT)
    return (bytes([RESPONSE_VERSION]) + key_fingerprint(REGULATOR.public_key())
            + wrapped_key_raw(gmcrypto.encrypt(REGULATOR.public_key(), key))
            + gmcrypto.sm4_gcm_encrypt(key, plaintext, aad))


# ---------------------------------------------------------------------- round trip


def test_round_trip_layout_and_digest() -> None:
    response = seal()
    plaintext = canonical_opening(OPENING)
    assert len(response) == MIN_RESPONSE_SIZE + len(plaintext)
    assert response[0] == RESPONSE_VERSION
    assert response_fingerprint(response) == key_fingerprint(REGULATOR.public_key())
    assert response[1:HEADER_SIZE] == key_fingerprint(REGULATOR.public_key())
    assert response_digest(response) == sm3(response)
    opened = open_(response)
    assert opened == OPENING
    verify_opening(COMMITMENT, opened)
    assert plaintext not in response and OPENING.salt not in response
    assert seal() != response  # a fresh key and nonce every time


@settings(max_examples=25, deadline=None)
@given(record=records, salt=salts, request_id=st.integers(0, 2**64 - 1),
       chain_id=st.integers(0, 2**64 - 1))
def test_any_opening_round_trips(record: object, salt: bytes, request_id: int,
                                 chain_id: int) -> None:
    opening = RecordOpening(record, salt)  # type: ignore[arg-type]
    commitment = record_commitment(opening.record, salt)
    response = seal(request_id=request_id, commitment=commitment, opening=opening,
                    chain_id=chain_id)
    opened = open_(response, request_id=request_id, commitment=commitment, chain_id=chain_id)
    assert opened == opening
    assert canonical_opening(opened) == canonical_opening(opening)
    verify_opening(commitment, opened)


def test_rotated_keys_open_old_and_new_responses() -> None:
    old, new = seal(REGULATOR), seal(ROTATED)
    assert response_fingerprint(old) != response_fingerprint(new)
    for response in (old, new):
        assert open_(response, (ROTATED, REGULATOR)) == OPENING
    with pytest.raises(UnknownDisclosureKey) as caught:
        open_(old, (ROTATED,))
    assert caught.value.fingerprint == key_fingerprint(REGULATOR.public_key())


# ---------------------------------------------------------------------- rejections


def test_wrong_version_and_sizes() -> None:
    response = seal()
    for bad, words in (
        (b"", "empty"),
        (bytes([2]) + response[1:], "version 2"),
        (bytes([0]) + response[1:], "version 0"),
        (response[:MIN_RESPONSE_SIZE], "got 157"),
        (response[:40], "got 40"),
        (response[:1] + bytes(MAX_RESPONSE_SIZE), f"got {MAX_RESPONSE_SIZE + 1}"),
    ):
        with pytest.raises(InvalidDisclosureResponse, match=words):
            open_(bad)
        with pytest.raises(InvalidDisclosureResponse, match=words):
            response_fingerprint(bad)


def test_bound_to_request_commitment_chain_and_contract() -> None:
    response = seal()
    _, other_commitment = an_opening(1)
    for changed in ({"request_id": 8}, {"commitment": other_commitment},
                    {"chain_id": CHAIN_ID + 1}, {"contract": OTHER_CONTRACT}):
        with pytest.raises(InvalidDisclosureResponse, match="does not authenticate"):
            open_(response, **changed)  # type: ignore[arg-type]
    assert open_(response, contract=CONTRACT.lower()) == OPENING  # the address, not its case


def test_unknown_key_and_flipped_fingerprint() -> None:
    response = seal()
    with pytest.raises(UnknownDisclosureKey, match="not held here"):
        open_(response, (ROTATED,))
    with pytest.raises(UnknownDisclosureKey):
        open_(response, ())
    flipped = bytearray(response)
    flipped[5] ^= 0x01
    with pytest.raises(UnknownDisclosureKey):
        open_(bytes(flipped))


def test_every_flipped_byte_is_refused() -> None:
    response = seal()
    offsets = list(range(0, len(response), 3)) + list(range(len(response) - 16, len(response)))
    for offset in sorted(set(offsets)):
        flipped = bytearray(response)
        flipped[offset] ^= 0x80
        with pytest.raises(InvalidDisclosureResponse) as caught:
            open_(bytes(flipped))
        if offset == 0:
            assert "version" in caught.value.reason
        elif offset < HEADER_SIZE:
            assert isinstance(caught.value, UnknownDisclosureKey)
        elif offset < BODY:
            assert "does not decrypt" in caught.value.reason or \
                "does not authenticate" in caught.value.reason
        else:
            assert "does not authenticate" in caught.value.reason


def test_a_wrapped_key_that_does_not_decrypt() -> None:
    response = bytearray(seal())
    response[HEADER_SIZE + 64] ^= 0x01  # inside C3: the SM2 check fails
    with pytest.raises(InvalidDisclosureResponse, match="wrapped response key does not decrypt"):
        open_(bytes(response))


@pytest.mark.parametrize(("plaintext", "words"), [
    (b"\xff\xfe not utf-8", "not JSON"),
    (b"{not json", "not JSON"),
    (b"[" * 100_000, "not JSON"),
    (b'{"a": 1}', "not an opening"),
    (b'{"record": {}, "salt": "00"}', "not an opening"),
    (b'{"record": ' + json.dumps(OPENING.record.to_json()).encode() + b', "salt": "zz"}',
     "not an opening"),
    (json.dumps(OPENING.to_json(), indent=1).encode(), "canonical"),
])
def test_plaintexts_that_are_not_canonical_openings(plaintext: bytes, words: str) -> None:
    if len(plaintext) + MIN_RESPONSE_SIZE > MAX_RESPONSE_SIZE:
        plaintext = plaintext[:MAX_RESPONSE_SIZE - MIN_RESPONSE_SIZE]
    with pytest.raises(InvalidDisclosureResponse, match=words):
        open_(sealed_plaintext(plaintext))


def test_a_valid_envelope_around_the_canonical_opening_opens() -> None:
    assert open_(sealed_plaintext(canonical_opening(OPENING))) == OPENING


@pytest.mark.parametrize("bad", [
    {"request_id": -1}, {"request_id": 2**64}, {"request_id": True}, {"chain_id": -1},
    {"chain_id": 2**64}, {"commitment": COMMITMENT[:31]}, {"contract": "0x1234"},
    {"contract": CONTRACT[2:]}, {"contract": "0x" + "zz" * 20},
])
def test_malformed_binding_values(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidDisclosureResponse, match="must be"):
        seal(**bad)  # type: ignore[arg-type]
    response = seal()
    with pytest.raises(InvalidDisclosureResponse, match="must be"):
        open_(response, **bad)  # type: ignore[arg-type]


def test_an_opening_too_large_for_a_response() -> None:
    record = OPENING.record
    big = RecordOpening(record, b"\x00" * MAX_RESPONSE_SIZE)  # only the size matters here
    with pytest.raises(InvalidDisclosureResponse, match="too large"):
        seal(opening=big)
