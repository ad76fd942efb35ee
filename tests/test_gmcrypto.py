"""Tests for ledger_node.crypto.gmcrypto: standard vectors, cross-checks against gmssl, every
rejection path, and interoperability with the OpenSSL 3 command line.

Every SM2 test runs on both backends (the ``backend`` fixture): OpenSSL 3 through ctypes, the
default, and the pure-Python gmssl arithmetic. tests/test_sm2_backends.py holds the two
against each other."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from gmssl import sm3 as gmssl_sm3
from gmssl import sm4 as gmssl_sm4
from gmssl.sm2 import CryptSM2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger_node.crypto import gmcrypto as gm
from ledger_node.crypto import sm2_gmssl
from ledger_node.crypto.hashes import sm3
from ledger_node.errors import CryptoError, DecryptionFailed, InvalidKey, InvalidSignature

VECTORS = Path(__file__).parent / "vectors" / "crypto"
STANDARD: dict[str, Any] = json.loads((VECTORS / "standard.json").read_text())
MUTATIONS: dict[str, Any] = json.loads((VECTORS / "sm2-signature-mutations.json").read_text())

N = gm.SM2_N
STD_D = int(STANDARD["sm2_sign"][0]["private_key"], 16)
ERRORS: dict[str, type[Exception]] = {
    "InvalidSignature": InvalidSignature,
    "InvalidKey": InvalidKey,
    "DecryptionFailed": DecryptionFailed,
}

# gmssl is pure Python: keep example counts modest and never fail on slow examples. The
# backend fixture is function-scoped on purpose: every example of a test runs on its backend.
FEW = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SOME = settings(max_examples=40, deadline=None)


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.fixture(scope="module")
def key() -> gm.SM2PrivateKey:
    return gm.generate_private_key()


@pytest.fixture(params=gm.SM2_BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test on one SM2 backend ("openssl", "gmssl"), then restore the default."""
    with gm.sm2_backend_override(request.param):
        assert gm.sm2_backend() == request.param
        yield request.param


def _point(public: gm.SM2PublicKey) -> tuple[int, int]:
    return public.x, public.y


# ------------------------------------------------------------------------------------------
# SM3
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", STANDARD["sm3"], ids=lambda v: v["name"])
def test_sm3_standard_vectors(vector: dict[str, str]) -> None:
    message = bytes.fromhex(vector["message_hex"])
    assert sm3(message).hex() == vector["digest"]
    assert gmssl_sm3.sm3_hash(list(message)) == vector["digest"]


@SOME
@given(st.binary(max_size=300))
def test_sm3_openssl_agrees_with_gmssl(data: bytes) -> None:
    assert sm3(data).hex() == gmssl_sm3.sm3_hash(list(data))


# ------------------------------------------------------------------------------------------
# SM4 block cipher
# ------------------------------------------------------------------------------------------


def test_sm4_ecb_standard_block() -> None:
    vector = STANDARD["sm4_ecb"][0]
    key = bytes.fromhex(vector["key"])
    block = bytes.fromhex(vector["plaintext"])
    assert gm.sm4_ecb_encrypt_block(key, block).hex() == vector["ciphertext"]


def test_sm4_ecb_million_iterations() -> None:
    vector = STANDARD["sm4_ecb"][1]
    block = bytes.fromhex(vector["plaintext"])
    # One encryptor updated repeatedly: a fresh Cipher per block would take ~10x longer.
    encryptor = Cipher(algorithms.SM4(bytes.fromhex(vector["key"])), modes.ECB()).encryptor()
    for _ in range(vector["iterations"]):
        block = encryptor.update(block)
    assert block.hex() == vector["ciphertext"]


def test_sm4_ecb_rejects_bad_sizes() -> None:
    with pytest.raises(InvalidKey):
        gm.sm4_ecb_encrypt_block(b"k" * 15, b"b" * 16)
    with pytest.raises(ValueError):
        gm.sm4_ecb_encrypt_block(b"k" * 16, b"b" * 17)


def _pkcs7(data: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    return padder.update(data) + padder.finalize()


@SOME
@given(key=st.binary(min_size=16, max_size=16), data=st.binary(max_size=80))
def test_sm4_ecb_openssl_agrees_with_gmssl(key: bytes, data: bytes) -> None:
    theirs = gmssl_sm4.CryptSM4()
    theirs.set_key(key, gmssl_sm4.SM4_ENCRYPT)
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    ours = encryptor.update(_pkcs7(data)) + encryptor.finalize()
    assert theirs.crypt_ecb(data) == ours  # gmssl pads with PKCS#7 itself


@SOME
@given(
    key=st.binary(min_size=16, max_size=16),
    iv=st.binary(min_size=16, max_size=16),
    data=st.binary(max_size=80),
)
def test_sm4_cbc_openssl_agrees_with_gmssl(key: bytes, iv: bytes, data: bytes) -> None:
    encryptor = Cipher(algorithms.SM4(key), modes.CBC(iv)).encryptor()
    ours = encryptor.update(_pkcs7(data)) + encryptor.finalize()
    theirs = gmssl_sm4.CryptSM4()
    theirs.set_key(key, gmssl_sm4.SM4_ENCRYPT)
    assert theirs.crypt_cbc(iv, data) == ours
    theirs.set_key(key, gmssl_sm4.SM4_DECRYPT)
    assert theirs.crypt_cbc(iv, ours) == data


# ------------------------------------------------------------------------------------------
# SM4-GCM
# ------------------------------------------------------------------------------------------


def test_sm4_gcm_rfc8998_vector() -> None:
    v = STANDARD["sm4_gcm"][0]
    key, nonce, aad = (bytes.fromhex(v[f]) for f in ("key", "nonce", "aad"))
    plaintext = bytes.fromhex(v["plaintext"])
    sealed = gm.sm4_gcm_encrypt(key, plaintext, aad, nonce)
    assert sealed.hex() == v["nonce"] + v["ciphertext"] + v["tag"]
    assert gm.sm4_gcm_decrypt(key, sealed, aad) == plaintext


@SOME
@given(plaintext=st.binary(max_size=200), aad=st.binary(max_size=40))
def test_sm4_gcm_round_trip(plaintext: bytes, aad: bytes) -> None:
    key = gm.new_sm4_key()
    sealed = gm.sm4_gcm_encrypt(key, plaintext, aad)
    assert len(sealed) == gm.GCM_NONCE_SIZE + len(plaintext) + gm.GCM_TAG_SIZE
    assert gm.sm4_gcm_decrypt(key, sealed, aad) == plaintext


def test_sm4_gcm_fresh_key_and_nonce_each_time() -> None:
    assert len(gm.new_sm4_key()) == 16
    assert gm.new_sm4_key() != gm.new_sm4_key()
    key = gm.new_sm4_key()
    assert gm.sm4_gcm_encrypt(key, b"m", b"")[:12] != gm.sm4_gcm_encrypt(key, b"m", b"")[:12]


def test_sm4_gcm_rejects_every_flipped_bit() -> None:
    key = gm.new_sm4_key()
    sealed = gm.sm4_gcm_encrypt(key, b"escrow!", b"jl:v1:escrow")
    for bit in range(len(sealed) * 8):  # nonce, ciphertext and tag
        with pytest.raises(DecryptionFailed):
            gm.sm4_gcm_decrypt(key, flip(sealed, bit), b"jl:v1:escrow")


def test_sm4_gcm_rejects_wrong_aad_wrong_key_and_truncation() -> None:
    key = gm.new_sm4_key()
    sealed = gm.sm4_gcm_encrypt(key, b"payload", b"aad")
    for aad in (b"", b"aae", b"aad\x00"):
        with pytest.raises(DecryptionFailed):
            gm.sm4_gcm_decrypt(key, sealed, aad)
    with pytest.raises(DecryptionFailed):
        gm.sm4_gcm_decrypt(gm.new_sm4_key(), sealed, b"aad")
    for length in range(len(sealed)):
        with pytest.raises(DecryptionFailed):
            gm.sm4_gcm_decrypt(key, sealed[:length], b"aad")
    with pytest.raises(DecryptionFailed):
        gm.sm4_gcm_decrypt(key, sealed + b"\x00", b"aad")


def test_sm4_gcm_empty_plaintext_is_still_authenticated() -> None:
    key = gm.new_sm4_key()
    sealed = gm.sm4_gcm_encrypt(key, b"", b"header")
    assert gm.sm4_gcm_decrypt(key, sealed, b"header") == b""
    with pytest.raises(DecryptionFailed):
        gm.sm4_gcm_decrypt(key, sealed, b"header2")


def test_sm4_gcm_rejects_bad_key_and_nonce_sizes() -> None:
    for bad in (b"", b"k" * 15, b"k" * 32):
        with pytest.raises(InvalidKey):
            gm.sm4_gcm_encrypt(bad, b"m", b"")
        with pytest.raises(InvalidKey):
            gm.sm4_gcm_decrypt(bad, b"\x00" * 40, b"")
    with pytest.raises(ValueError):
        gm.sm4_gcm_encrypt(gm.new_sm4_key(), b"m", b"", nonce=b"\x00" * 16)


# ------------------------------------------------------------------------------------------
# SM2 keys
# ------------------------------------------------------------------------------------------


def test_sm2_standard_public_key_and_z_a(backend: str) -> None:
    v = STANDARD["sm2_sign"][0]
    private = gm.SM2PrivateKey(STD_D)
    assert private.public_key().raw.hex() == v["public_key_raw"]
    assert gm.z_a(private.public_key(), bytes.fromhex(v["user_id_hex"])).hex() == v["z_a"]
    assert gm.z_a(private.public_key()).hex() == v["z_a"]  # the default ID


def test_sm2_private_key_range(backend: str) -> None:
    for bad in (0, -1, N - 1, N, N + 1, 2**256):
        with pytest.raises(InvalidKey):
            gm.SM2PrivateKey(bad)
    assert gm.SM2PrivateKey(1).public_key() == gm.SM2PublicKey(gm.SM2_GX, gm.SM2_GY)
    gm.SM2PrivateKey(N - 2)
    with pytest.raises(InvalidKey):
        gm.SM2PrivateKey(True)
    with pytest.raises(InvalidKey):
        gm.SM2PrivateKey.from_bytes(b"\x01" * 31)
    assert gm.SM2PrivateKey.from_bytes(STD_D.to_bytes(32, "big")).d == STD_D


def test_sm2_private_key_repr_hides_scalar(key: gm.SM2PrivateKey) -> None:
    assert f"{key.d:x}" not in repr(key)
    assert str(key.d) not in repr(key)


def test_sm2_public_key_raw_round_trip(key: gm.SM2PrivateKey) -> None:
    public = key.public_key()
    assert len(public.raw) == 64
    assert gm.SM2PublicKey.from_raw(public.raw) == public
    assert gm.SM2PublicKey.from_raw(public.uncompressed) == public


def test_sm2_public_key_rejects_bad_points(key: gm.SM2PrivateKey) -> None:
    raw = key.public_key().raw
    with pytest.raises(InvalidKey, match="not on the SM2 curve"):
        gm.SM2PublicKey.from_raw(raw[:-1] + bytes([raw[-1] ^ 1]))
    for bad in (b"", raw[:-1], raw + b"\x00", b"\x02" + raw[:32]):
        with pytest.raises(InvalidKey):
            gm.SM2PublicKey.from_raw(bad)
    with pytest.raises(InvalidKey):
        gm.SM2PublicKey(0, 0)
    with pytest.raises(InvalidKey):  # coordinates must be reduced mod p
        gm.SM2PublicKey(key.public_key().x + gm.SM2_P, key.public_key().y)


def test_sm2_keys_are_immutable(key: gm.SM2PrivateKey) -> None:
    with pytest.raises(AttributeError):
        key.d = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        key.public_key().x = 5  # type: ignore[misc]


def test_generated_keys_differ() -> None:
    assert gm.generate_private_key().d != gm.generate_private_key().d


# Keys whose x coordinate, in hex, starts with the characters gmssl's
# ``public_key.lstrip("04")`` eats: "04…" (the GM/T 0003.5 Annex C point k·G), "4…", "0…"
# (the Annex A key) and "00…".
LSTRIP_KEYS = {
    "x-starts-04": int(STANDARD["sm2_encrypt"][0]["k"], 16),
    "x-starts-4": 65,
    "x-starts-0": STD_D,
    "x-starts-00": 327,
}


@pytest.mark.parametrize("d", LSTRIP_KEYS.values(), ids=LSTRIP_KEYS.keys())
def test_gmssl_lstrip_trap_does_not_affect_us(backend: str, d: int) -> None:
    private = gm.SM2PrivateKey(d)
    public = private.public_key()
    prefix = {65: "4", 327: "00", STD_D: "0"}.get(d, "04")
    assert f"{public.x:064x}".startswith(prefix)
    # The trap itself: handing the uncompressed key to gmssl corrupts it.
    assert CryptSM2(private_key="", public_key=public.uncompressed.hex()).public_key != (
        public.raw.hex()
    )
    signature = gm.sign(private, b"regression")
    gm.verify(public, b"regression", signature)
    assert gm.decrypt(private, gm.encrypt(public, b"regression")) == b"regression"
    assert gm.public_key_from_pem(gm.public_key_to_pem(public)) == public


# ------------------------------------------------------------------------------------------
# SM2 signatures
# ------------------------------------------------------------------------------------------


def test_sm2_sign_standard_vector(backend: str) -> None:
    v = STANDARD["sm2_sign"][0]
    private = gm.SM2PrivateKey(STD_D)
    message = bytes.fromhex(v["message_hex"])
    e = gm._digest(private.public_key(), message, gm.DEFAULT_USER_ID)
    assert f"{e:064x}" == v["e"]
    assert sm2_gmssl._sign_with_k(STD_D, e, int(v["k"], 16)) == (int(v["r"], 16), int(v["s"], 16))
    gm.verify(private.public_key(), message, gm.encode_signature(int(v["r"], 16), int(v["s"], 16)))


@pytest.mark.parametrize("case", MUTATIONS["cases"], ids=lambda c: c["name"])
def test_sm2_signature_mutations(backend: str, case: dict[str, Any]) -> None:
    public = gm.SM2PublicKey.from_raw(bytes.fromhex(MUTATIONS["public_key_raw"]))
    message = bytes.fromhex(MUTATIONS["message_hex"])
    signature = bytes.fromhex(case["signature_hex"])
    if case["want_err"] is None:
        gm.verify(public, message, signature)
    else:
        with pytest.raises(ERRORS[case["want_err"]]):
            gm.verify(public, message, signature)


@FEW
@given(message=st.binary(max_size=100))
def test_sm2_sign_verify_round_trip(backend: str, key: gm.SM2PrivateKey, message: bytes) -> None:
    signature = gm.sign(key, message)
    r, s = gm.decode_signature(signature)
    assert gm.encode_signature(r, s) == signature
    gm.verify(key.public_key(), message, signature)
    with pytest.raises(InvalidSignature):
        gm.verify(key.public_key(), message + b"\x00", signature)


def test_sm2_user_id_length_limit(backend: str, key: gm.SM2PrivateKey) -> None:
    gm.verify(key.public_key(), b"m", gm.sign(key, b"m", user_id=b"u" * 8191), user_id=b"u" * 8191)
    with pytest.raises(ValueError):
        gm.sign(key, b"m", user_id=b"u" * 8192)


def test_sm2_signatures_are_randomised(backend: str, key: gm.SM2PrivateKey) -> None:
    assert gm.sign(key, b"same") != gm.sign(key, b"same")


def test_sm2_verify_rejects_wrong_key_and_wrong_id(backend: str, key: gm.SM2PrivateKey) -> None:
    signature = gm.sign(key, b"pay 100")
    other = gm.generate_private_key().public_key()
    with pytest.raises(InvalidSignature):
        gm.verify(other, b"pay 100", signature)
    with pytest.raises(InvalidSignature):
        gm.verify(key.public_key(), b"pay 100", signature, user_id=b"ALICE123@YAHOO.COM")
    signed_with_id = gm.sign(key, b"pay 100", user_id=b"ALICE123@YAHOO.COM")
    gm.verify(key.public_key(), b"pay 100", signed_with_id, user_id=b"ALICE123@YAHOO.COM")
    with pytest.raises(InvalidSignature):
        gm.verify(key.public_key(), b"pay 100", signed_with_id)


def test_sm2_verify_rejects_flipped_signature_bits(backend: str, key: gm.SM2PrivateKey) -> None:
    signature = gm.sign(key, b"flip me")
    # One bit per byte position (bit index varies with position): covers tags, lengths,
    # integer padding and both values without ~600 slow verifications.
    for position in range(len(signature)):
        with pytest.raises(InvalidSignature):
            gm.verify(key.public_key(), b"flip me", flip(signature, position * 8 + position % 8))


def test_sm2_encode_signature_range() -> None:
    for r, s in ((0, 1), (1, 0), (N, 1), (1, N)):
        with pytest.raises(InvalidSignature):
            gm.encode_signature(r, s)
    assert gm.decode_signature(gm.encode_signature(1, N - 1)) == (1, N - 1)


def test_sm2_verify_r_plus_s_equal_n_is_rejected(backend: str, key: gm.SM2PrivateKey) -> None:
    with pytest.raises(InvalidSignature):
        gm.verify(key.public_key(), b"m", gm.encode_signature(5, N - 5))


# ------------------------------------------------------------------------------------------
# SM2 encryption
# ------------------------------------------------------------------------------------------


def test_sm2_encrypt_standard_vector(backend: str) -> None:
    v = STANDARD["sm2_encrypt"][0]
    private = gm.SM2PrivateKey(int(v["private_key"], 16))
    plaintext = bytes.fromhex(v["plaintext_hex"])
    ciphertext = sm2_gmssl._encrypt_with_k(_point(private.public_key()), plaintext, int(v["k"], 16))
    assert ciphertext is not None and ciphertext.hex() == v["ciphertext"]
    assert gm.decrypt(private, bytes.fromhex(v["ciphertext"])) == plaintext


@FEW
@given(plaintext=st.binary(min_size=1, max_size=100))
def test_sm2_encrypt_round_trip(backend: str, key: gm.SM2PrivateKey, plaintext: bytes) -> None:
    ciphertext = gm.encrypt(key.public_key(), plaintext)
    assert gm.decrypt(key, ciphertext) == plaintext


def test_sm2_encrypt_rejects_empty_plaintext(backend: str, key: gm.SM2PrivateKey) -> None:
    with pytest.raises(CryptoError):
        gm.encrypt(key.public_key(), b"")


def test_sm2_decrypt_rejects_tampering(backend: str, key: gm.SM2PrivateKey) -> None:
    ciphertext = gm.encrypt(key.public_key(), b"escrow key")
    for position in range(len(ciphertext)):  # C1, C3, C2 and the DER framing
        with pytest.raises(DecryptionFailed):
            gm.decrypt(key, flip(ciphertext, position * 8 + position % 8))
    for length in (0, 1, 10, len(ciphertext) - 1):
        with pytest.raises(DecryptionFailed):
            gm.decrypt(key, ciphertext[:length])
    with pytest.raises(DecryptionFailed):
        gm.decrypt(key, ciphertext + b"\x00")
    with pytest.raises(DecryptionFailed):
        gm.decrypt(gm.generate_private_key(), ciphertext)


# ------------------------------------------------------------------------------------------
# PEM
# ------------------------------------------------------------------------------------------


def _tlv(tag: int, body: bytes) -> bytes:
    assert len(body) < 0x10000
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes(1 if len(body) < 0x100 else 2, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _pem(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n".encode()


def _der(pem: bytes) -> bytes:
    return base64.b64decode(b"".join(pem.strip().splitlines()[1:-1]))


OID_EC = _tlv(6, bytes.fromhex("2a8648ce3d0201"))
OID_SM2 = _tlv(6, bytes.fromhex("2a811ccf5501822d"))
OID_P256 = _tlv(6, bytes.fromhex("2a8648ce3d030107"))


def _pkcs8(scalar: bytes, point: bytes | None, curve: bytes = OID_SM2) -> bytes:
    inner = _tlv(2, b"\x01") + _tlv(4, scalar)
    if point is not None:
        inner += _tlv(0xA1, _tlv(3, b"\x00" + point))
    return _pem(
        "PRIVATE KEY",
        _tlv(0x30, _tlv(2, b"\x00") + _tlv(0x30, OID_EC + curve) + _tlv(4, _tlv(0x30, inner))),
    )


def _spki(point: bytes, curve: bytes = OID_SM2) -> bytes:
    return _pem("PUBLIC KEY", _tlv(0x30, _tlv(0x30, OID_EC + curve) + _tlv(3, b"\x00" + point)))


def test_pem_round_trip(backend: str, key: gm.SM2PrivateKey) -> None:
    private_pem = gm.private_key_to_pem(key)
    public_pem = gm.public_key_to_pem(key.public_key())
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    assert gm.private_key_from_pem(private_pem) == key
    assert gm.public_key_from_pem(public_pem) == key.public_key()
    # Independent encoders in this file produce the same bytes.
    assert _pkcs8(key.to_bytes(), key.public_key().uncompressed) == private_pem
    assert _spki(key.public_key().uncompressed) == public_pem


def test_pem_accepts_sec1_and_pkcs8_without_public_key(backend: str, key: gm.SM2PrivateKey) -> None:
    assert gm.private_key_from_pem(_pkcs8(key.to_bytes(), None)) == key
    sec1 = _tlv(
        0x30,
        _tlv(2, b"\x01")
        + _tlv(4, key.to_bytes())
        + _tlv(0xA0, OID_SM2)
        + _tlv(0xA1, _tlv(3, b"\x00" + key.public_key().uncompressed)),
    )
    for label in ("EC PRIVATE KEY", "SM2 PRIVATE KEY"):
        assert gm.private_key_from_pem(_pem(label, sec1)) == key
    # Surrounding text (as in OpenSSL's "Bag Attributes") is ignored.
    assert gm.private_key_from_pem(b"comment\n" + gm.private_key_to_pem(key) + b"\n") == key


def _malformed_private_pems(key: gm.SM2PrivateKey) -> dict[str, bytes]:
    good = gm.private_key_to_pem(key)
    point = key.public_key().uncompressed
    other = gm.generate_private_key().public_key().uncompressed
    der = _der(good)
    return {
        "empty": b"",
        "no-pem": b"not a key",
        "public-label": good.replace(b"PRIVATE KEY", b"PUBLIC KEY"),
        "no-end-line": good.split(b"-----END")[0],
        "bad-base64": good.replace(good.splitlines()[1][:4], b"!!!!"),
        "empty-body": b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        "truncated-der": _pem("PRIVATE KEY", der[:-1]),
        "trailing-der": _pem("PRIVATE KEY", der + b"\x00"),
        "wrong-curve": _pkcs8(key.to_bytes(), point, OID_P256),
        "scalar-zero": _pkcs8(b"\x00" * 32, None),
        "scalar-n": _pkcs8(N.to_bytes(32, "big"), None),
        "scalar-too-long": _pkcs8(b"\x01" * 33, None),
        "public-mismatch": _pkcs8(key.to_bytes(), other),
        "public-not-on-curve": _pkcs8(key.to_bytes(), point[:-1] + bytes([point[-1] ^ 1])),
        "encrypted": b"-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
        + good.split(b"\n", 1)[1],
    }


def test_pem_rejects_malformed_private_keys(backend: str, key: gm.SM2PrivateKey) -> None:
    for name, pem in _malformed_private_pems(key).items():
        with pytest.raises(InvalidKey):
            gm.private_key_from_pem(pem)
            pytest.fail(f"accepted malformed private key {name!r}")


def test_pem_rejects_malformed_public_keys(key: gm.SM2PrivateKey) -> None:
    point = key.public_key().uncompressed
    good = gm.public_key_to_pem(key.public_key())
    compressed = bytes([2 + (key.public_key().y & 1)]) + point[1:33]
    cases = {
        "private-label": good.replace(b"PUBLIC KEY", b"PRIVATE KEY"),
        "wrong-curve": _spki(point, OID_P256),
        "not-on-curve": _spki(point[:-1] + bytes([point[-1] ^ 1])),
        "compressed": _spki(compressed),
        "raw-without-04": _spki(point[1:] + b"\x00"),
        "truncated-der": _pem("PUBLIC KEY", _der(good)[:-1]),
        "trailing-der": _pem("PUBLIC KEY", _der(good) + b"\x00"),
        "unused-bits": _pem("PUBLIC KEY", _der(good).replace(b"\x03\x42\x00", b"\x03\x42\x01")),
        "non-ascii": "-----BEGIN PUBLIC KEY-----\n密钥\n-----END PUBLIC KEY-----\n".encode(),
    }
    for name, pem in cases.items():
        with pytest.raises(InvalidKey):
            gm.public_key_from_pem(pem)
            pytest.fail(f"accepted malformed public key {name!r}")


# ------------------------------------------------------------------------------------------
# P-interop with the OpenSSL 3 command line
# ------------------------------------------------------------------------------------------

SIGN_OPTS = ["-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678"]


@pytest.fixture(scope="module")
def openssl() -> Callable[..., bytes]:
    """Return an ``openssl`` runner; skip, printing why, only when no OpenSSL 3 binary exists."""
    binary = shutil.which("openssl")
    reason = ""
    if binary is None:
        reason = "no openssl binary on PATH"
    else:
        version = subprocess.run([binary, "version"], capture_output=True, text=True).stdout
        if not re.match(r"OpenSSL 3\.", version):
            reason = f"openssl is not OpenSSL 3: {version.strip()!r}"
    if reason:
        print(f"SKIPPING OpenSSL interop: {reason}")
        pytest.skip(reason)
    assert binary is not None

    def run(*args: str | Path, stdin: bytes = b"") -> bytes:
        result = subprocess.run(
            [binary, *map(str, args)], input=stdin, capture_output=True, timeout=30
        )
        if result.returncode != 0:
            raise AssertionError(f"openssl {args} failed: {result.stderr.decode()}")
        return result.stdout

    return run


@pytest.fixture(scope="module")
def openssl_key(openssl: Callable[..., bytes], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("openssl") / "key.pem"
    openssl("genpkey", "-algorithm", "SM2", "-out", path)
    return path


def test_openssl_key_loads_and_reserialises_byte_for_byte(
    backend: str, openssl: Callable[..., bytes], openssl_key: Path, tmp_path: Path
) -> None:
    pem = openssl_key.read_bytes()
    private = gm.private_key_from_pem(pem)
    assert gm.private_key_to_pem(private) == pem
    public_pem = openssl("pkey", "-in", openssl_key, "-pubout")
    assert gm.public_key_from_pem(public_pem) == private.public_key()
    assert gm.public_key_to_pem(private.public_key()) == public_pem
    sec1 = openssl("ec", "-in", openssl_key)  # writes "SM2 PRIVATE KEY" (SEC1)
    assert gm.private_key_from_pem(sec1) == private


@pytest.mark.parametrize("d", [None, *LSTRIP_KEYS.values()], ids=["random", *LSTRIP_KEYS])
def test_project_key_and_signature_verify_in_openssl(
    backend: str, openssl: Callable[..., bytes], tmp_path: Path, d: int | None
) -> None:
    private = gm.generate_private_key() if d is None else gm.SM2PrivateKey(d)
    (tmp_path / "key.pem").write_bytes(gm.private_key_to_pem(private))
    (tmp_path / "pub.pem").write_bytes(gm.public_key_to_pem(private.public_key()))
    # OpenSSL reads our key files and derives the same public key.
    assert openssl("pkey", "-in", tmp_path / "key.pem", "-pubout") == gm.public_key_to_pem(
        private.public_key()
    )
    message = b"jl:v1:commitment\x00\x01payment"
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig").write_bytes(gm.sign(private, message))
    out = openssl(
        "pkeyutl", "-verify", *SIGN_OPTS, "-pubin", "-inkey", tmp_path / "pub.pem",
        "-in", tmp_path / "msg", "-sigfile", tmp_path / "sig",
    )  # fmt: skip
    assert b"Signature Verified Successfully" in out
    (tmp_path / "msg").write_bytes(message + b"!")
    with pytest.raises(AssertionError, match="openssl"):
        openssl(
            "pkeyutl", "-verify", *SIGN_OPTS, "-pubin", "-inkey", tmp_path / "pub.pem",
            "-in", tmp_path / "msg", "-sigfile", tmp_path / "sig",
        )  # fmt: skip


def test_openssl_signature_verifies_in_project(
    backend: str, openssl: Callable[..., bytes], openssl_key: Path, tmp_path: Path
) -> None:
    public = gm.private_key_from_pem(openssl_key.read_bytes()).public_key()
    for message in (b"", b"abc", bytes(range(256)) * 3):
        (tmp_path / "msg").write_bytes(message)
        signature = openssl(
            "pkeyutl", "-sign", *SIGN_OPTS, "-inkey", openssl_key, "-in", tmp_path / "msg"
        )
        gm.verify(public, message, signature)
        with pytest.raises(InvalidSignature):
            gm.verify(public, message + b"x", signature)


def test_project_ciphertext_decrypts_in_openssl(
    backend: str, openssl: Callable[..., bytes], openssl_key: Path, tmp_path: Path
) -> None:
    public = gm.private_key_from_pem(openssl_key.read_bytes()).public_key()
    for plaintext in (b"k", b"sixteen byte key", bytes(range(256))):
        (tmp_path / "ct").write_bytes(gm.encrypt(public, plaintext))
        out = openssl("pkeyutl", "-decrypt", "-inkey", openssl_key, "-in", tmp_path / "ct")
        assert out == plaintext


def test_openssl_ciphertext_decrypts_in_project(
    backend: str, openssl: Callable[..., bytes], openssl_key: Path, tmp_path: Path
) -> None:
    private = gm.private_key_from_pem(openssl_key.read_bytes())
    (tmp_path / "pub.pem").write_bytes(gm.public_key_to_pem(private.public_key()))
    for plaintext in (b"k", b"sixteen byte key", bytes(range(256))):
        (tmp_path / "msg").write_bytes(plaintext)
        ciphertext = openssl(
            "pkeyutl", "-encrypt", "-pubin", "-inkey", tmp_path / "pub.pem",
            "-in", tmp_path / "msg",
        )  # fmt: skip
        assert gm.decrypt(private, ciphertext) == plaintext


# ------------------------------------------------------------------------------------------
# Scalar multiplication paths (comb tables vs gmssl's double-and-add)
# ------------------------------------------------------------------------------------------


@FEW
@given(k=st.integers(min_value=0, max_value=2**256 - 1))
def test_comb_multiplication_matches_gmssl_double_and_add(k: int) -> None:
    point = gm.SM2PrivateKey(LSTRIP_KEYS["x-starts-04"]).public_key()
    p = (point.x, point.y)
    assert sm2_gmssl._mul_base(k) == sm2_gmssl._mul_generic(k, sm2_gmssl.G)
    assert sm2_gmssl._comb_mul(sm2_gmssl._key_table(p), k, p) == sm2_gmssl._mul_generic(k, p)


def test_small_and_edge_scalars() -> None:
    for k in (1, 2, 15, 16, 17, 255, 256, N - 2, N - 1, N, N + 1):
        assert sm2_gmssl._mul_base(k) == sm2_gmssl._mul_generic(k, sm2_gmssl.G)
    assert sm2_gmssl._mul_base(0) is None and sm2_gmssl._mul_base(N) is None
    assert sm2_gmssl._mul_generic(N - 1, sm2_gmssl.G) == (gm.SM2_GX, gm.SM2_P - gm.SM2_GY)  # −G


def test_verify_is_stable_once_a_key_table_is_cached() -> None:
    private = gm.generate_private_key()
    signatures = [gm.sign(private, bytes([i])) for i in range(6)]
    with gm.sm2_backend_override("gmssl"):
        for i, signature in enumerate(signatures):  # the first uses go through gmssl's _kg
            gm.verify(private.public_key(), bytes([i]), signature)
            with pytest.raises(InvalidSignature):
                gm.verify(private.public_key(), bytes([i + 1]), signature)
    assert (private.public_key().x, private.public_key().y) in sm2_gmssl._uses
