"""Sealed disclosure responses (PROTOCOL §6): a record's opening, encrypted to the regulator.

When a regulator logs a disclosure request on chain (who, which commitment, which case),
the addressed platform answers off chain with the record's opening (record and salt)
encrypted to the regulator's registered SM2 key, and logs ``SM3(response)`` on chain with
``fulfilDisclosure``. The regulator decrypts the response, checks it against the digest on
chain and verifies the opening against the commitment (:func:`verify_opening`) and the
anchored checkpoint.

Response v1 layout (157 bytes plus the opening's canonical JSON)::

    off  len  field
      0    1  version            0x01
      1   16  key fingerprint    escrow.key_fingerprint of the regulator key
     17  112  wrapped K          SM2 ciphertext of a fresh SM4 key K, raw C1.x ‖ C1.y ‖ C3 ‖ C2
    129   12  nonce              random
    141    n  ciphertext         SM4-GCM(K, canonical JSON of the opening, aad)
  141+n   16  tag                GCM tag

``aad = encode_parts("disclosure-response", request_id (u64 BE), commitment,
chain_id (u64 BE), contract address (20 bytes))``: a response opens only for the request,
commitment, chain and contract it was sealed for.

The module is pure: bytes in, bytes out, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Final

from ledger_node.crypto.encoding import encode_parts
from ledger_node.crypto.gmcrypto import (
    GCM_NONCE_SIZE,
    GCM_TAG_SIZE,
    SM2PrivateKey,
    SM2PublicKey,
    decrypt,
    encrypt,
    new_sm4_key,
    sm4_gcm_decrypt,
    sm4_gcm_encrypt,
)
from ledger_node.crypto.hashes import DIGEST_SIZE, sm3
from ledger_node.errors import (
    DecryptionFailed,
    EscrowFormatError,
    InvalidDisclosureResponse,
    InvalidOpening,
    InvalidRecord,
    UnknownDisclosureKey,
)
from ledger_node.jsonlimits import parse_json
from ledger_node.protocol.commitment import RecordOpening

# The wrapped key uses the escrow envelope's fixed raw SM2 form (no DER length fields).
from ledger_node.protocol.escrow import WRAPPED_KEY_SIZE, key_fingerprint
from ledger_node.protocol.escrow import _der_from_raw as wrapped_key_der
from ledger_node.protocol.escrow import _raw_from_der as wrapped_key_raw

__all__ = [
    "MAX_RESPONSE_SIZE",
    "MIN_RESPONSE_SIZE",
    "RESPONSE_VERSION",
    "canonical_opening",
    "disclosure_aad",
    "open_disclosure_response",
    "response_digest",
    "response_fingerprint",
    "seal_disclosure_response",
]

RESPONSE_VERSION: Final = 1
FINGERPRINT_SIZE: Final = 16
HEADER_SIZE: Final = 1 + FINGERPRINT_SIZE
_BODY_OFFSET: Final = HEADER_SIZE + WRAPPED_KEY_SIZE
MIN_RESPONSE_SIZE: Final = _BODY_OFFSET + GCM_NONCE_SIZE + GCM_TAG_SIZE
MAX_RESPONSE_SIZE: Final = 64 * 1024
"""A record's opening is a few hundred bytes; anything near this is not an opening."""
_U64: Final = 2**64


def canonical_opening(opening: RecordOpening) -> bytes:
    """The opening's canonical JSON: sorted keys, no spaces, UTF-8."""
    return json.dumps(opening.to_json(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def disclosure_aad(request_id: int, commitment: bytes, *, chain_id: int, contract: str) -> bytes:
    """The associated data binding a response to its request, commitment, chain and contract.

    Raises :class:`InvalidDisclosureResponse` for a request id or chain id outside
    0..2^64-1, a commitment that is not 32 bytes or a contract that is not a 0x address.
    """
    for name, value in (("request_id", request_id), ("chain_id", chain_id)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _U64:
            raise InvalidDisclosureResponse(f"{name} must be an integer in 0..2^64-1")
    if not isinstance(commitment, bytes) or len(commitment) != DIGEST_SIZE:
        raise InvalidDisclosureResponse(f"commitment must be {DIGEST_SIZE} bytes")
    try:
        if not isinstance(contract, str) or not contract.startswith(("0x", "0X")):
            raise ValueError
        address = bytes.fromhex(contract[2:])
    except ValueError:
        address = b""
    if len(address) != 20:
        raise InvalidDisclosureResponse("contract must be a 0x-prefixed 20-byte address")
    return encode_parts("disclosure-response", request_id.to_bytes(8, "big"), commitment,
                        chain_id.to_bytes(8, "big"), address)


def response_digest(response: bytes) -> bytes:
    """``SM3(response)``: what the platform logs on chain with ``fulfilDisclosure``."""
    return sm3(response)


def response_fingerprint(response: bytes) -> bytes:
    """The fingerprint of the regulator key ``response`` was sealed for.

    Checks the envelope's form only (version, size bounds); raises
    :class:`InvalidDisclosureResponse` for an unknown version or a size outside
    :data:`MIN_RESPONSE_SIZE`..:data:`MAX_RESPONSE_SIZE`.
    """
    if not isinstance(response, bytes) or not response:
        raise InvalidDisclosureResponse("the response is empty")
    if response[0] != RESPONSE_VERSION:
        raise InvalidDisclosureResponse(f"unsupported response version {response[0]}")
    if not MIN_RESPONSE_SIZE < len(response) <= MAX_RESPONSE_SIZE:
        raise InvalidDisclosureResponse(
            f"a v1 response is {MIN_RESPONSE_SIZE + 1}..{MAX_RESPONSE_SIZE} bytes, "
            f"got {len(response)}"
        )
    return response[1:HEADER_SIZE]


def seal_disclosure_response(
    regulator_public_key: SM2PublicKey,
    request_id: int,
    commitment: bytes,
    opening: RecordOpening,
    *,
    chain_id: int,
    contract: str,
) -> bytes:
    """Encrypt ``opening`` for the regulator key, bound to request ``request_id``.

    One SM2 encryption (of a fresh SM4 key) and one SM4-GCM seal. The caller should have
    checked that ``opening`` opens ``commitment``. Raises :class:`InvalidDisclosureResponse`
    for malformed binding values (see :func:`disclosure_aad`) or an opening too large.
    """
    aad = disclosure_aad(request_id, commitment, chain_id=chain_id, contract=contract)
    plaintext = canonical_opening(opening)
    key = new_sm4_key()
    try:
        wrapped = wrapped_key_raw(encrypt(regulator_public_key, key))
    except EscrowFormatError as exc:  # pragma: no cover - encrypt's DER form is fixed
        raise InvalidDisclosureResponse(f"cannot wrap the response key: {exc}") from None
    response = (bytes([RESPONSE_VERSION]) + key_fingerprint(regulator_public_key) + wrapped
                + sm4_gcm_encrypt(key, plaintext, aad))
    if len(response) > MAX_RESPONSE_SIZE:
        raise InvalidDisclosureResponse(
            f"the opening is {len(plaintext)} bytes of JSON, too large for a response"
        )
    return response


def open_disclosure_response(
    keys: Iterable[SM2PrivateKey],
    response: bytes,
    request_id: int,
    commitment: bytes,
    *,
    chain_id: int,
    contract: str,
) -> RecordOpening:
    """Decrypt a sealed response with whichever of ``keys`` it was sealed for.

    Returns the opening; the caller still checks it with
    :func:`~ledger_node.protocol.commitment.verify_opening` against the commitment (and the digest
    on chain against :func:`response_digest`). Raises :class:`InvalidDisclosureResponse` for,
    in the order checked: an unknown version or a size out of bounds; no key with the
    response's fingerprint (:class:`UnknownDisclosureKey`); a wrapped key that does not
    decrypt; a tag that does not authenticate (altered bytes, or a response sealed for
    another request, commitment, chain or contract); a plaintext that is not the canonical
    JSON of an opening.
    """
    fingerprint = response_fingerprint(response)
    aad = disclosure_aad(request_id, commitment, chain_id=chain_id, contract=contract)
    private_key = next((k for k in keys if key_fingerprint(k.public_key()) == fingerprint),
                       None)
    if private_key is None:
        raise UnknownDisclosureKey(fingerprint)
    try:
        key = decrypt(private_key, wrapped_key_der(response[HEADER_SIZE:_BODY_OFFSET]))
    except DecryptionFailed:
        raise InvalidDisclosureResponse("the wrapped response key does not decrypt") from None
    try:
        plaintext = sm4_gcm_decrypt(key, response[_BODY_OFFSET:], aad)
    except DecryptionFailed:
        raise InvalidDisclosureResponse(
            "the response does not authenticate for this request, commitment, chain and "
            "contract (altered, or sealed for another)"
        ) from None
    try:
        document = parse_json(plaintext)
    except (ValueError, RecursionError) as exc:  # JsonTextRefused, JSONDecodeError
        raise InvalidDisclosureResponse(f"the plaintext is not JSON: {exc}") from None
    try:
        opening = RecordOpening.from_json(document)
    except (InvalidOpening, InvalidRecord) as exc:
        raise InvalidDisclosureResponse(f"the plaintext is not an opening: {exc}") from None
    if canonical_opening(opening) != plaintext:
        raise InvalidDisclosureResponse("the plaintext is not the opening's canonical JSON")
    return opening


CASE_KEY_SIZE: Final = 32


def case_reference(case_key: bytes, commitment: bytes) -> bytes:
    """The case id one disclosure request carries on chain.

    ``SM3(tag("case-ref") ‖ lp(case_key) ‖ lp(commitment))``: each request of a case gets a
    different value, so the chain does not show which requests belong together (equal case
    ids would link a person's records across platforms). The regulator keeps one random
    ``case_key`` per case and puts it in the case file, where a verifier recomputes the
    reference of every request.
    """
    if len(case_key) != CASE_KEY_SIZE or len(commitment) != 32:
        raise ValueError("case key and commitment must be 32 bytes")
    return sm3(encode_parts("case-ref", case_key, commitment))
