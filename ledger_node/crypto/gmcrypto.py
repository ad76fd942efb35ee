"""Chinese national cryptography (国密) for the ledger: SM4-GCM, SM2 signatures and encryption, PEM.

* **SM4** (GB/T 32907) goes through OpenSSL via ``cryptography``: the AEAD for escrows is
  SM4-GCM, sealed as ``nonce(12) || ciphertext || tag(16)``.
* **SM2** (GB/T 32918) uses ``gmssl`` for the elliptic-curve point arithmetic only. Everything
  around it is done here, because ``gmssl`` has traps: its ``CryptSM2`` constructor runs
  ``public_key.lstrip("04")`` (which eats any leading ``0``/``4`` hex digits of *x*), its
  nonces come from :mod:`random` rather than a CSPRNG, its decryption never checks C3 and its
  verification skips range checks and mishandles ``P1 == P2``. So this module never hands a key
  to ``CryptSM2``, draws every nonce from :mod:`secrets`, hashes with OpenSSL's SM3 and checks
  all ranges itself.
* Signatures are DER ``SEQUENCE { r INTEGER, s INTEGER }`` over ``SM3(Z_A || M)`` with the
  default user ID ``1234567812345678``; ciphertexts are the GM/T 0009 DER form
  ``SEQUENCE { x INTEGER, y INTEGER, C3 OCTET STRING, C2 OCTET STRING }``. Both are what
  OpenSSL 3 reads and writes (``openssl pkeyutl``).
* Keys serialise as PKCS#8 ``PRIVATE KEY`` and SubjectPublicKeyInfo ``PUBLIC KEY`` PEM, with
  ``id-ecPublicKey`` and the SM2 curve OID, byte-for-byte what ``openssl genpkey -algorithm SM2``
  and ``openssl pkey -pubout`` write. ``cryptography`` cannot load SM2 keys ("Curve
  1.2.156.10197.1.301 is not supported"), hence the small strict DER codec below.

The module is pure: bytes in, bytes out, no I/O.
"""

from __future__ import annotations

import binascii
import functools
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from gmssl.sm2 import CryptSM2

from ledger_node.crypto.hashes import sm3
from ledger_node.errors import CryptoError, DecryptionFailed, InvalidKey, InvalidSignature

# --------------------------------------------------------------------------------------------
# SM4
# --------------------------------------------------------------------------------------------

SM4_KEY_SIZE: Final = 16
SM4_BLOCK_SIZE: Final = 16
GCM_NONCE_SIZE: Final = 12
GCM_TAG_SIZE: Final = 16


def new_sm4_key() -> bytes:
    """Return a fresh random 16-byte SM4 key from the operating system's CSPRNG."""
    return secrets.token_bytes(SM4_KEY_SIZE)


def _check_sm4_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != SM4_KEY_SIZE:
        raise InvalidKey(f"SM4 key must be {SM4_KEY_SIZE} bytes")


def sm4_ecb_encrypt_block(key: bytes, block: bytes) -> bytes:
    """Return the SM4 encryption of one 16-byte ``block`` (raw ECB, for standard vectors only).

    Raises :class:`InvalidKey` for a key that is not 16 bytes and ``ValueError`` for a block
    that is not 16 bytes.
    """
    _check_sm4_key(key)
    if len(block) != SM4_BLOCK_SIZE:
        raise ValueError(f"SM4 block must be {SM4_BLOCK_SIZE} bytes")
    encryptor = Cipher(algorithms.SM4(bytes(key)), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def sm4_gcm_encrypt(key: bytes, plaintext: bytes, aad: bytes, nonce: bytes | None = None) -> bytes:
    """Seal ``plaintext`` with SM4-GCM, authenticating ``aad`` as well.

    Returns ``nonce(12) || ciphertext || tag(16)``. ``nonce`` defaults to 12 fresh random
    bytes; pass one only for test vectors, and never reuse a nonce under one key.
    Raises :class:`InvalidKey` for a key that is not 16 bytes and ``ValueError`` for a nonce
    that is not 12 bytes.
    """
    _check_sm4_key(key)
    if nonce is None:
        nonce = secrets.token_bytes(GCM_NONCE_SIZE)
    elif len(nonce) != GCM_NONCE_SIZE:
        raise ValueError(f"SM4-GCM nonce must be {GCM_NONCE_SIZE} bytes")
    encryptor = Cipher(algorithms.SM4(bytes(key)), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    body = encryptor.update(plaintext) + encryptor.finalize()
    return bytes(nonce) + body + encryptor.tag


def sm4_gcm_decrypt(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Open a value sealed by :func:`sm4_gcm_encrypt` and return the plaintext.

    Raises :class:`DecryptionFailed` if ``sealed`` is too short or fails authentication
    (tampered nonce, ciphertext or tag, wrong ``aad``, wrong key) and :class:`InvalidKey` for
    a key that is not 16 bytes.
    """
    _check_sm4_key(key)
    if len(sealed) < GCM_NONCE_SIZE + GCM_TAG_SIZE:
        raise DecryptionFailed("SM4-GCM input shorter than nonce and tag")
    nonce = bytes(sealed[:GCM_NONCE_SIZE])
    body = bytes(sealed[GCM_NONCE_SIZE:-GCM_TAG_SIZE])
    tag = bytes(sealed[-GCM_TAG_SIZE:])
    decryptor = Cipher(algorithms.SM4(bytes(key)), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(aad)
    try:
        return decryptor.update(body) + decryptor.finalize()
    except InvalidTag:
        raise DecryptionFailed("SM4-GCM authentication failed") from None


# --------------------------------------------------------------------------------------------
# SM2 curve (GB/T 32918.5 recommended parameters)
# --------------------------------------------------------------------------------------------

SM2_P: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
SM2_A: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
SM2_B: Final = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
SM2_N: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
SM2_GX: Final = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
SM2_GY: Final = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

DEFAULT_USER_ID: Final = b"1234567812345678"

Point = tuple[int, int]
"""An affine point (x, y); the point at infinity is represented by ``None`` where allowed."""

_G: Final[Point] = (SM2_GX, SM2_GY)

# One gmssl object used purely as a point-arithmetic engine. It is built with empty key
# strings so that its constructor's ``lstrip("04")`` has nothing to corrupt; points are always
# passed explicitly as 128-hex-digit strings.
_ENGINE: Final = CryptSM2(private_key="", public_key="")


def _on_curve(x: int, y: int) -> bool:
    return (
        0 <= x < SM2_P and 0 <= y < SM2_P and (y * y - (x * x * x + SM2_A * x + SM2_B)) % SM2_P == 0
    )


def _hex(point: Point) -> str:
    return f"{point[0]:064x}{point[1]:064x}"


def _from_hex(h: object) -> Point | None:
    if not isinstance(h, str) or len(h) != 128:
        return None  # gmssl returns None for the point at infinity
    return int(h[:64], 16), int(h[64:], 16)


def _to_affine(jacobian: object) -> Point | None:
    """Normalise a gmssl Jacobian point string (X, Y, Z) to affine; ``None`` if Z = 0.

    gmssl's own ``_convert_jacb_to_nor`` inverts Z by Fermat (``pow(z, p - 2, p)``), which
    costs ~200 µs; Python's ``pow(z, -1, p)`` gives the same inverse in ~7 µs.
    """
    if not isinstance(jacobian, str) or len(jacobian) < 129:
        return None
    x, y, z = int(jacobian[:64], 16), int(jacobian[64:128], 16), int(jacobian[128:], 16)
    if z % SM2_P == 0:
        return None
    z_inv = pow(z, -1, SM2_P)
    z_inv2 = z_inv * z_inv % SM2_P
    return x * z_inv2 % SM2_P, y * z_inv2 * z_inv % SM2_P


def _mul_generic(k: int, point: Point) -> Point | None:
    """Return k·P via gmssl's double-and-add; ``None`` for the point at infinity."""
    k %= SM2_N
    if k == 0:
        return None  # gmssl would wrongly return P itself for k = 0
    return _from_hex(_ENGINE._kg(k, _hex(point)))


def _add(p1: Point | None, p2: Point | None) -> Point | None:
    """Return P1 + P2 with gmssl's Jacobian formulas, covering the cases they do not."""
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    if p1[0] == p2[0]:
        if p1[1] != p2[1]:
            return None  # P + (−P)
        return _to_affine(_ENGINE._double_point(_hex(p1) + "1"))
    return _to_affine(_ENGINE._add_point(_hex(p1) + "1", _hex(p2)))


# Fixed-base comb: table[i][j] = j · 16^i · P (affine hex), so k·P costs at most 64 mixed
# additions through gmssl's ``_add_point`` instead of 256 doublings and ~128 additions.
# Building a table costs ~1000 additions (~40 ms), about four plain multiplications, so one is
# kept for G and, after a few uses, for each of the (few) public keys a ledger node verifies.
_WINDOW: Final = 4
_ROWS: Final = 256 // _WINDOW
_TABLE_AFTER_USES: Final = 3
CombTable = tuple[tuple[str, ...], ...]


def _build_comb(point: Point) -> CombTable:
    rows: list[tuple[str, ...]] = []
    base: Point | None = point
    for _ in range(_ROWS):
        assert base is not None  # P has prime order n > 16^64
        row = [""]
        acc: Point | None = None
        for _j in range(1, 1 << _WINDOW):
            acc = _add(acc, base)
            assert acc is not None
            row.append(_hex(acc))
        rows.append(tuple(row))
        base = _add(acc, base)  # 16 · base
    return tuple(rows)


@functools.cache
def _base_table() -> CombTable:
    return _build_comb(_G)


@functools.lru_cache(maxsize=64)
def _key_table(point: Point) -> CombTable:
    return _build_comb(point)


_uses: dict[Point, int] = {}


def _comb_mul(table: CombTable, k: int, point: Point) -> Point | None:
    k %= SM2_N
    if k == 0:
        return None
    acc: str | None = None
    for i in range(_ROWS):
        digit = (k >> (_WINDOW * i)) & ((1 << _WINDOW) - 1)
        if digit:
            entry = table[i][digit]
            acc = entry + "1" if acc is None else _ENGINE._add_point(acc, entry)
    result = _to_affine(acc)
    if result is None:
        # An intermediate sum hit a doubling or P + (−P) that the mixed-addition formula does
        # not handle (probability ~2^-250): fall back to plain double-and-add.
        return _mul_generic(k, point)
    return result


def _mul_base(k: int) -> Point | None:
    """Return k·G; ``None`` for the point at infinity."""
    return _comb_mul(_base_table(), k, _G)


def _mul_key(k: int, point: Point) -> Point | None:
    """Return k·P for a long-lived public key P, switching to a cached comb once P recurs."""
    uses = _uses.get(point, 0) + 1
    if uses < _TABLE_AFTER_USES:
        if len(_uses) >= 4096:
            _uses.clear()  # bound the memory spent on one-off keys
        _uses[point] = uses
        return _mul_generic(k, point)
    return _comb_mul(_key_table(point), k, point)


# --------------------------------------------------------------------------------------------
# SM2 keys
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SM2PublicKey:
    """An SM2 public key: an affine point on the curve, never the point at infinity.

    Construction raises :class:`InvalidKey` if (x, y) is not on the SM2 curve.
    """

    x: int
    y: int

    def __post_init__(self) -> None:
        if type(self.x) is not int or type(self.y) is not int:
            raise InvalidKey("SM2 public key coordinates must be integers")
        if not _on_curve(self.x, self.y):
            raise InvalidKey("SM2 public key point is not on the SM2 curve")

    @property
    def raw(self) -> bytes:
        """The 64-byte ``x || y`` form (big-endian, 32 bytes each) stored by the contract."""
        return self.x.to_bytes(32, "big") + self.y.to_bytes(32, "big")

    @property
    def uncompressed(self) -> bytes:
        """The 65-byte SEC1 uncompressed form ``04 || x || y``."""
        return b"\x04" + self.raw

    @classmethod
    def from_raw(cls, data: bytes) -> SM2PublicKey:
        """Return the key whose 64-byte ``x || y`` form is ``data``.

        Also accepts the 65-byte ``04 || x || y`` form. Raises :class:`InvalidKey` for any
        other length or a point not on the curve.
        """
        if len(data) == 65 and data[0] == 4:
            data = data[1:]
        if len(data) != 64:
            raise InvalidKey("SM2 raw public key must be 64 bytes x || y")
        return cls(int.from_bytes(data[:32], "big"), int.from_bytes(data[32:], "big"))


@dataclass(frozen=True, slots=True, repr=False)
class SM2PrivateKey:
    """An SM2 private key: the scalar d with 1 ≤ d ≤ n − 2 (GB/T 32918.1 excludes n − 1).

    Construction computes the public key once and raises :class:`InvalidKey` for a scalar
    out of range.
    """

    d: int
    _public: SM2PublicKey = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.d) is not int or not 1 <= self.d <= SM2_N - 2:
            raise InvalidKey("SM2 private scalar out of range [1, n-2]")
        point = _mul_base(self.d)
        assert point is not None  # d is in [1, n-1]
        object.__setattr__(self, "_public", SM2PublicKey(*point))

    def __repr__(self) -> str:
        return f"SM2PrivateKey(<secret>, public={self._public.raw.hex()})"

    def public_key(self) -> SM2PublicKey:
        """Return the matching public key d·G."""
        return self._public

    def to_bytes(self) -> bytes:
        """Return the 32-byte big-endian scalar."""
        return self.d.to_bytes(32, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> SM2PrivateKey:
        """Return the key with 32-byte big-endian scalar ``data``; :class:`InvalidKey` if bad."""
        if len(data) != 32:
            raise InvalidKey("SM2 private scalar must be 32 bytes")
        return cls(int.from_bytes(data, "big"))


def generate_private_key() -> SM2PrivateKey:
    """Return a new SM2 private key with d drawn uniformly from [1, n−2] by :mod:`secrets`."""
    return SM2PrivateKey(secrets.randbelow(SM2_N - 2) + 1)


# --------------------------------------------------------------------------------------------
# SM2 signatures
# --------------------------------------------------------------------------------------------

_CURVE_BYTES: Final = b"".join(v.to_bytes(32, "big") for v in (SM2_A, SM2_B, SM2_GX, SM2_GY))


@functools.lru_cache(maxsize=1024)
def _z(x: int, y: int, user_id: bytes) -> bytes:
    entl = len(user_id) * 8
    return sm3(
        entl.to_bytes(2, "big")
        + user_id
        + _CURVE_BYTES
        + x.to_bytes(32, "big")
        + y.to_bytes(32, "big")
    )


def z_a(public_key: SM2PublicKey, user_id: bytes = DEFAULT_USER_ID) -> bytes:
    """Return Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA) (cached per key and ID).

    Raises ``ValueError`` if ``user_id`` is 8192 bytes or longer (ENTL is 16 bits).
    """
    if len(user_id) >= 8192:
        raise ValueError("SM2 user ID too long")
    return _z(public_key.x, public_key.y, bytes(user_id))


def _digest(public_key: SM2PublicKey, message: bytes, user_id: bytes) -> int:
    return int.from_bytes(sm3(z_a(public_key, user_id) + message), "big")


def sign(private_key: SM2PrivateKey, message: bytes, user_id: bytes = DEFAULT_USER_ID) -> bytes:
    """Return a DER SM2 signature ``SEQUENCE { r, s }`` of ``message``.

    The signed value is SM3(Z_A || message); the nonce k comes from :mod:`secrets`.
    Raises ``ValueError`` only for an over-long ``user_id``.
    """
    e = _digest(private_key.public_key(), message, user_id)
    while True:
        rs = _sign_with_k(private_key.d, e, secrets.randbelow(SM2_N - 1) + 1)
        if rs is not None:
            return encode_signature(*rs)


def _sign_with_k(d: int, e: int, k: int) -> tuple[int, int] | None:
    """GB/T 32918.2 steps A4-A6 for a given nonce; ``None`` means "draw another k"."""
    point = _mul_base(k)
    assert point is not None  # k in [1, n-1]
    r = (e + point[0]) % SM2_N
    if r == 0 or r + k == SM2_N:
        return None
    s = (pow(1 + d, -1, SM2_N) * (k - r * d)) % SM2_N
    if s == 0:
        return None
    return r, s


def encode_signature(r: int, s: int) -> bytes:
    """Return the DER encoding ``SEQUENCE { INTEGER r, INTEGER s }``.

    Raises :class:`InvalidSignature` if r or s is outside [1, n−1].
    """
    if not (1 <= r < SM2_N and 1 <= s < SM2_N):
        raise InvalidSignature("r and s must lie in [1, n-1]")
    return _der_sequence(_der_integer(r), _der_integer(s))


def decode_signature(signature: bytes) -> tuple[int, int]:
    """Return (r, s) from a strict DER SM2 signature.

    Raises :class:`InvalidSignature` for non-DER input (trailing bytes, non-minimal lengths
    or integers, negative integers) or r, s outside [1, n−1].
    """
    try:
        reader = _DerReader(bytes(signature))
        seq = reader.read(_SEQUENCE)
        reader.end()
        inner = _DerReader(seq)
        r = inner.integer()
        s = inner.integer()
        inner.end()
    except _DerError as exc:
        raise InvalidSignature(f"malformed SM2 signature: {exc}") from None
    if not (1 <= r < SM2_N and 1 <= s < SM2_N):
        raise InvalidSignature("SM2 signature r or s outside [1, n-1]")
    return r, s


def verify(
    public_key: SM2PublicKey,
    message: bytes,
    signature: bytes,
    user_id: bytes = DEFAULT_USER_ID,
) -> None:
    """Check a DER SM2 signature of ``message`` by ``public_key``; return ``None`` if it holds.

    Raises :class:`InvalidSignature` if the signature is malformed or does not verify.
    """
    r, s = decode_signature(signature)
    e = _digest(public_key, message, user_id)
    t = (r + s) % SM2_N
    if t == 0:
        raise InvalidSignature("SM2 signature does not verify")
    point = _add(_mul_base(s), _mul_key(t, (public_key.x, public_key.y)))
    if point is None:
        raise InvalidSignature("SM2 signature does not verify")
    expected = (e + point[0]) % SM2_N
    if not hmac.compare_digest(expected.to_bytes(32, "big"), r.to_bytes(32, "big")):
        raise InvalidSignature("SM2 signature does not verify")


# --------------------------------------------------------------------------------------------
# SM2 public-key encryption (GB/T 32918.4), GM/T 0009 DER ciphertext
# --------------------------------------------------------------------------------------------


def _kdf(z: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 1
    while len(out) < length:
        out += sm3(z + counter.to_bytes(4, "big"))
        counter += 1
    return bytes(out[:length])


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def encrypt(public_key: SM2PublicKey, plaintext: bytes) -> bytes:
    """Return the SM2 encryption of ``plaintext`` to ``public_key``.

    The result is DER ``SEQUENCE { x INTEGER, y INTEGER, C3 OCTET STRING, C2 OCTET STRING }``
    (GM/T 0009, what ``openssl pkeyutl -encrypt`` writes). The ephemeral k comes from
    :mod:`secrets`. Raises :class:`CryptoError` for an empty plaintext (which SM2 cannot
    encrypt: its key stream would be empty, so the all-zero check never passes).
    """
    if not plaintext:
        raise CryptoError("SM2 cannot encrypt an empty message")
    msg = bytes(plaintext)
    while True:
        sealed = _encrypt_with_k(public_key, msg, secrets.randbelow(SM2_N - 1) + 1)
        if sealed is not None:
            return sealed


def _encrypt_with_k(public_key: SM2PublicKey, msg: bytes, k: int) -> bytes | None:
    """GB/T 32918.4 steps A2-A8 for a given k; ``None`` means "draw another k"."""
    c1 = _mul_base(k)
    shared = _mul_key(k, (public_key.x, public_key.y))
    assert c1 is not None and shared is not None  # k in [1, n-1], key of order n
    x2 = shared[0].to_bytes(32, "big")
    y2 = shared[1].to_bytes(32, "big")
    t = _kdf(x2 + y2, len(msg))
    if not any(t):
        return None
    c2 = _xor(msg, t)
    c3 = sm3(x2 + msg + y2)
    return _der_sequence(_der_integer(c1[0]), _der_integer(c1[1]), _der_octets(c3), _der_octets(c2))


def decrypt(private_key: SM2PrivateKey, ciphertext: bytes) -> bytes:
    """Return the plaintext of a DER SM2 ciphertext made for ``private_key``.

    Raises :class:`DecryptionFailed` if the ciphertext is malformed, C1 is not on the curve,
    or the C3 check fails (tampering or wrong key).
    """
    try:
        reader = _DerReader(bytes(ciphertext))
        seq = reader.read(_SEQUENCE)
        reader.end()
        inner = _DerReader(seq)
        x1 = inner.integer()
        y1 = inner.integer()
        c3 = inner.read(_OCTET_STRING)
        c2 = inner.read(_OCTET_STRING)
        inner.end()
    except _DerError as exc:
        raise DecryptionFailed(f"malformed SM2 ciphertext: {exc}") from None
    if len(c3) != 32 or not c2:
        raise DecryptionFailed("malformed SM2 ciphertext: bad C3 or empty C2")
    if not _on_curve(x1, y1):
        raise DecryptionFailed("SM2 ciphertext point C1 is not on the curve")
    shared = _mul_generic(private_key.d, (x1, y1))
    if shared is None:
        raise DecryptionFailed("SM2 decryption failed")
    x2 = shared[0].to_bytes(32, "big")
    y2 = shared[1].to_bytes(32, "big")
    t = _kdf(x2 + y2, len(c2))
    if not any(t):
        raise DecryptionFailed("SM2 decryption failed")
    msg = _xor(c2, t)
    if not hmac.compare_digest(sm3(x2 + msg + y2), c3):
        raise DecryptionFailed("SM2 decryption failed")
    return msg


# --------------------------------------------------------------------------------------------
# A tiny strict DER codec (only what keys, signatures and ciphertexts need)
# --------------------------------------------------------------------------------------------

_INTEGER: Final = 0x02
_BIT_STRING: Final = 0x03
_OCTET_STRING: Final = 0x04
_OID: Final = 0x06
_SEQUENCE: Final = 0x30
_CTX0: Final = 0xA0
_CTX1: Final = 0xA1

_OID_EC_PUBLIC_KEY: Final = bytes.fromhex("2a8648ce3d0201")  # 1.2.840.10045.2.1
_OID_SM2: Final = bytes.fromhex("2a811ccf5501822d")  # 1.2.156.10197.1.301


class _DerError(Exception):
    """Internal: malformed DER; callers translate it into a domain error."""


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


def _der_sequence(*items: bytes) -> bytes:
    return _der_tlv(_SEQUENCE, b"".join(items))


def _der_integer(value: int) -> bytes:
    if value < 0:
        raise ValueError("only non-negative integers are encoded")
    return _der_tlv(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _der_octets(data: bytes) -> bytes:
    return _der_tlv(_OCTET_STRING, data)


class _DerReader:
    """Reads consecutive DER TLVs from a buffer, rejecting anything that is not strict DER."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def end(self) -> None:
        if not self.at_end():
            raise _DerError("trailing bytes")

    def peek_tag(self) -> int | None:
        return None if self.at_end() else self._data[self._pos]

    def read(self, tag: int) -> bytes:
        data, pos = self._data, self._pos
        if pos + 2 > len(data):
            raise _DerError("truncated")
        if data[pos] != tag:
            raise _DerError(f"expected tag 0x{tag:02x}, found 0x{data[pos]:02x}")
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 4:
                raise _DerError("indefinite or oversized length")
            if pos + count > len(data):
                raise _DerError("truncated length")
            length = int.from_bytes(data[pos : pos + count], "big")
            if length < 0x80 or data[pos] == 0:
                raise _DerError("non-minimal length")
            pos += count
        if pos + length > len(data):
            raise _DerError("truncated value")
        self._pos = pos + length
        return data[pos : pos + length]

    def integer(self) -> int:
        body = self.read(_INTEGER)
        if not body:
            raise _DerError("empty integer")
        if body[0] & 0x80:
            raise _DerError("negative integer")
        if len(body) > 1 and body[0] == 0 and not body[1] & 0x80:
            raise _DerError("non-minimal integer")
        return int.from_bytes(body, "big")


# --------------------------------------------------------------------------------------------
# PEM
# --------------------------------------------------------------------------------------------

_ALGORITHM_ID: Final = _der_sequence(_der_tlv(_OID, _OID_EC_PUBLIC_KEY), _der_tlv(_OID, _OID_SM2))


def _pem_encode(label: str, der: bytes) -> bytes:
    b64 = binascii.b2a_base64(der, newline=False)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (
        f"-----BEGIN {label}-----\n".encode()
        + b"".join(line + b"\n" for line in lines)
        + f"-----END {label}-----\n".encode()
    )


def _pem_decode(pem: bytes, labels: tuple[str, ...]) -> tuple[str, bytes]:
    """Return (label, DER) of the first PEM block; text outside the block is ignored."""
    try:
        text = bytes(pem).decode("ascii")
    except UnicodeDecodeError:
        raise InvalidKey("PEM is not ASCII") from None
    start = text.find("-----BEGIN ")
    if start < 0:
        raise InvalidKey("no PEM BEGIN line")
    head_end = text.find("-----", start + 11)
    if head_end < 0:
        raise InvalidKey("unterminated PEM BEGIN line")
    label = text[start + 11 : head_end]
    if label not in labels:
        raise InvalidKey(f"unexpected PEM label {label!r}; expected one of {list(labels)}")
    footer = f"-----END {label}-----"
    stop = text.find(footer, head_end + 5)
    if stop < 0:
        raise InvalidKey(f"no PEM END line for {label!r}")
    body = text[head_end + 5 : stop]
    if ":" in body:
        raise InvalidKey("encrypted or annotated PEM is not supported")
    try:
        der = binascii.a2b_base64("".join(body.split()).encode(), strict_mode=True)
    except binascii.Error as exc:
        raise InvalidKey(f"bad base64 in PEM: {exc}") from None
    if not der:
        raise InvalidKey("empty PEM body")
    return label, der


def _point_from_bitstring(bits: bytes) -> SM2PublicKey:
    if len(bits) != 66 or bits[0] != 0:
        raise InvalidKey("SM2 public key must be an uncompressed point (04 || x || y)")
    if bits[1] != 4:
        raise InvalidKey("only uncompressed SM2 public points (04 || x || y) are supported")
    return SM2PublicKey.from_raw(bits[2:])


def private_key_to_pem(private_key: SM2PrivateKey) -> bytes:
    """Return ``private_key`` as PKCS#8 ``PRIVATE KEY`` PEM, exactly as OpenSSL 3 writes it."""
    ec_private_key = _der_sequence(
        _der_integer(1),
        _der_octets(private_key.to_bytes()),
        _der_tlv(_CTX1, _der_tlv(_BIT_STRING, b"\x00" + private_key.public_key().uncompressed)),
    )
    pkcs8 = _der_sequence(_der_integer(0), _ALGORITHM_ID, _der_octets(ec_private_key))
    return _pem_encode("PRIVATE KEY", pkcs8)


def _parse_ec_private_key(der: bytes, *, need_curve: bool) -> SM2PrivateKey:
    reader = _DerReader(der)
    inner = _DerReader(reader.read(_SEQUENCE))
    reader.end()
    if inner.integer() != 1:
        raise InvalidKey("ECPrivateKey version must be 1")
    scalar = inner.read(_OCTET_STRING)
    if not 1 <= len(scalar) <= 32:
        raise InvalidKey("SM2 private scalar must be at most 32 bytes")
    curve_seen = False
    if inner.peek_tag() == _CTX0:
        params = _DerReader(inner.read(_CTX0))
        if params.read(_OID) != _OID_SM2:
            raise InvalidKey("EC key is not on the SM2 curve")
        params.end()
        curve_seen = True
    if need_curve and not curve_seen:
        raise InvalidKey("SEC1 EC key lacks curve parameters")
    public_bits: bytes | None = None
    if inner.peek_tag() == _CTX1:
        wrapped = _DerReader(inner.read(_CTX1))
        public_bits = wrapped.read(_BIT_STRING)
        wrapped.end()
    inner.end()
    key = SM2PrivateKey(int.from_bytes(scalar, "big"))
    if public_bits is not None and _point_from_bitstring(public_bits) != key.public_key():
        raise InvalidKey("embedded SM2 public key does not match the private scalar")
    return key


def private_key_from_pem(pem: bytes) -> SM2PrivateKey:
    """Return the SM2 private key in ``pem``.

    Accepts PKCS#8 ``PRIVATE KEY`` (``openssl genpkey -algorithm SM2``) and SEC1
    ``EC PRIVATE KEY`` / ``SM2 PRIVATE KEY`` (``openssl ec``). Raises :class:`InvalidKey` for
    malformed PEM or DER, a curve other than SM2, a scalar out of range or an embedded public
    key that does not match.
    """
    label, der = _pem_decode(pem, ("PRIVATE KEY", "EC PRIVATE KEY", "SM2 PRIVATE KEY"))
    try:
        if label != "PRIVATE KEY":
            return _parse_ec_private_key(der, need_curve=True)
        reader = _DerReader(der)
        info = _DerReader(reader.read(_SEQUENCE))
        reader.end()
        if info.integer() != 0:
            raise InvalidKey("PKCS#8 version must be 0")
        if info.read(_SEQUENCE) != _ALGORITHM_ID[2:]:
            raise InvalidKey("PKCS#8 key is not id-ecPublicKey on the SM2 curve")
        inner = info.read(_OCTET_STRING)
        info.end()  # attributes ([0]) are not accepted
        return _parse_ec_private_key(inner, need_curve=False)
    except _DerError as exc:
        raise InvalidKey(f"malformed SM2 private key: {exc}") from None


def public_key_to_pem(public_key: SM2PublicKey) -> bytes:
    """Return ``public_key`` as SubjectPublicKeyInfo ``PUBLIC KEY`` PEM (as ``openssl pkey``)."""
    spki = _der_sequence(_ALGORITHM_ID, _der_tlv(_BIT_STRING, b"\x00" + public_key.uncompressed))
    return _pem_encode("PUBLIC KEY", spki)


def public_key_from_pem(pem: bytes) -> SM2PublicKey:
    """Return the SM2 public key in SubjectPublicKeyInfo ``PUBLIC KEY`` PEM.

    Raises :class:`InvalidKey` for malformed PEM or DER, another algorithm or curve, a
    compressed point, or a point not on the curve.
    """
    _, der = _pem_decode(pem, ("PUBLIC KEY",))
    try:
        reader = _DerReader(der)
        spki = _DerReader(reader.read(_SEQUENCE))
        reader.end()
        if spki.read(_SEQUENCE) != _ALGORITHM_ID[2:]:
            raise InvalidKey("public key is not id-ecPublicKey on the SM2 curve")
        bits = spki.read(_BIT_STRING)
        spki.end()
    except _DerError as exc:
        raise InvalidKey(f"malformed SM2 public key: {exc}") from None
    return _point_from_bitstring(bits)
