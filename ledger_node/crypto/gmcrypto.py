"""Chinese national cryptography (国密) for the ledger: SM4-GCM, SM2 signatures and encryption, PEM.

* **SM2** (GB/T 32918) runs on OpenSSL 3 by default: the libcrypto this Python's ``hashlib``
  is linked against, reached through :mod:`ledger_node.crypto.libcrypto` (``cryptography``
  does not expose SM2). Signatures go through ``EVP_DigestSign``/``EVP_DigestVerify`` with
  SM3 and the distinguishing ID set explicitly, encryption through ``EVP_PKEY_encrypt``/
  ``decrypt``, and the two other uses of a private scalar (a key's public point, the
  pairwise key agreement d·P) through ``EC_POINT_mul``: OpenSSL's Montgomery ladder, so no
  private-key operation branches on secret bits in Python. The pure-Python ``gmssl``
  arithmetic (:mod:`ledger_node.crypto.sm2_gmssl`) remains as an explicit fallback
  (``JL_SM2_BACKEND=gmssl``, or automatic, with a :class:`NotConstantTimeWarning`, where the
  libcrypto has no SM2) and as the tests' independent cross-check. :func:`crypto_backends`
  says which runs (``jointledger --version``, ``/v1/health``).
* **SM4** (GB/T 32907) goes through OpenSSL via ``cryptography``: the AEAD for escrows is
  SM4-GCM, sealed as ``nonce(12) || ciphertext || tag(16)``.
* Signatures are DER ``SEQUENCE { r INTEGER, s INTEGER }`` over ``SM3(Z_A || M)`` with the
  default user ID ``1234567812345678``; ciphertexts are the GM/T 0009 DER form
  ``SEQUENCE { x INTEGER, y INTEGER, C3 OCTET STRING, C2 OCTET STRING }``. Both are what
  OpenSSL 3 reads and writes (``openssl pkeyutl``), whichever backend runs. Inputs are
  parsed strictly here before any backend sees them, so both accept and refuse alike.
* Keys serialise as PKCS#8 ``PRIVATE KEY`` and SubjectPublicKeyInfo ``PUBLIC KEY`` PEM, with
  ``id-ecPublicKey`` and the SM2 curve OID, byte-for-byte what ``openssl genpkey -algorithm SM2``
  and ``openssl pkey -pubout`` write. ``cryptography`` cannot load SM2 keys ("Curve
  1.2.156.10197.1.301 is not supported"), hence the small strict DER codec
  (:mod:`ledger_node.crypto.der`).

The module is pure: bytes in, bytes out, no I/O (binding the libcrypto once aside).
"""

from __future__ import annotations

import binascii
import functools
import os
import secrets
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ledger_node.crypto import der, libcrypto, sm2_gmssl
from ledger_node.crypto.libcrypto import NativeKey
from ledger_node.crypto.sm2_curve import (
    DEFAULT_USER_ID,
    MAX_USER_ID,
    SM2_A,
    SM2_B,
    SM2_GX,
    SM2_GY,
    SM2_N,
    SM2_P,
    Point,
    check_user_id,
    digest,
    on_curve,
    z,
)
from ledger_node.errors import (
    CryptoBackendUnavailable,
    CryptoError,
    DecryptionFailed,
    InvalidKey,
    InvalidSignature,
)

__all__ = [
    "BACKEND_ENV",
    "DEFAULT_USER_ID",
    "GCM_NONCE_SIZE",
    "GCM_TAG_SIZE",
    "MAX_USER_ID",
    "SM2_A",
    "SM2_B",
    "SM2_BACKENDS",
    "SM2_GX",
    "SM2_GY",
    "SM2_N",
    "SM2_P",
    "SM4_BLOCK_SIZE",
    "SM4_KEY_SIZE",
    "NotConstantTimeWarning",
    "Point",
    "SM2PrivateKey",
    "SM2PublicKey",
    "crypto_backends",
    "decode_signature",
    "decrypt",
    "encode_signature",
    "encrypt",
    "generate_private_key",
    "new_sm4_key",
    "private_key_from_pem",
    "private_key_to_pem",
    "public_key_from_pem",
    "public_key_to_pem",
    "set_sm2_backend",
    "shared_point",
    "sign",
    "sm2_backend",
    "sm2_backend_override",
    "sm4_ecb_encrypt_block",
    "sm4_gcm_decrypt",
    "sm4_gcm_encrypt",
    "verify",
    "z_a",
]

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
# SM2 backends: OpenSSL 3 (default) or gmssl-style Python (fallback, cross-check)
# --------------------------------------------------------------------------------------------

Sm2Backend = Literal["openssl", "gmssl"]
SM2_BACKENDS: Final[tuple[Sm2Backend, ...]] = ("openssl", "gmssl")
BACKEND_ENV: Final = "JL_SM2_BACKEND"
"""Environment variable choosing the SM2 backend: ``openssl`` (required: refuse to start
without it), ``gmssl`` (the pure-Python fallback) or ``auto``/unset (OpenSSL where it has
SM2, else gmssl with a :class:`NotConstantTimeWarning`)."""


class NotConstantTimeWarning(RuntimeWarning):
    """SM2 private-key operations run on the pure-Python gmssl arithmetic, which branches on
    secret bits: fine on a host of its own, not next to code an attacker controls."""


# GB/T 32918.5 / GM/T 0003.5 Annex A: the key, the message "message digest" and (r, s), with
# the default ID. Checked against the bound OpenSSL before it is used (known answer).
_KAT_D: Final = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
_KAT_PUBLIC: Final = (
    0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020,
    0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13,
)
_KAT_R: Final = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
_KAT_S: Final = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA


def _openssl_description() -> str:
    """Bind OpenSSL and check it on the GB/T 32918 Annex A vector; ``"openssl 3.0.19"``.

    Raises :class:`CryptoBackendUnavailable` if it cannot be bound or gives a wrong answer.
    """
    lib = libcrypto.library()
    public = b"\x04" + b"".join(v.to_bytes(32, "big") for v in _KAT_PUBLIC)
    signature = der.sequence(der.integer(_KAT_R), der.integer(_KAT_S))
    try:
        good = (
            libcrypto.multiply(_KAT_D) == _KAT_PUBLIC
            and libcrypto.verify(libcrypto.public_key(public), b"message digest", signature,
                                 DEFAULT_USER_ID)
        )
    except CryptoError as exc:
        raise CryptoBackendUnavailable(
            f"OpenSSL {lib.version} failed the SM2 check: {exc}"
        ) from None
    if not good:
        raise CryptoBackendUnavailable(
            f"OpenSSL {lib.version} at {lib.path} fails the GB/T 32918 Annex A SM2 vector"
        )
    return f"openssl {lib.version}"


_GMSSL_DESCRIPTION: Final = "gmssl (pure Python, not constant-time)"


@dataclass(frozen=True)
class _Choice:
    name: Sm2Backend
    description: str


_choice_lock = threading.Lock()
_choice: _Choice | None = None


def _choose(requested: str | None) -> _Choice:
    """Pick the backend for ``requested`` (the environment's value); see :data:`BACKEND_ENV`."""
    wanted = (requested or "auto").strip().lower()
    if wanted not in ("auto", *SM2_BACKENDS):
        raise CryptoBackendUnavailable(
            f"{BACKEND_ENV}={requested!r}: expected one of openssl, gmssl, auto"
        )
    if wanted == "gmssl":
        warnings.warn(f"{BACKEND_ENV}=gmssl: SM2 runs on pure-Python arithmetic that is not "
                      "constant-time", NotConstantTimeWarning, stacklevel=3)
        return _Choice("gmssl", _GMSSL_DESCRIPTION)
    try:
        return _Choice("openssl", _openssl_description())
    except CryptoBackendUnavailable as exc:
        if wanted == "openssl":
            raise
        warnings.warn(f"SM2 falls back to pure-Python gmssl arithmetic, which is not "
                      f"constant-time: {exc}", NotConstantTimeWarning, stacklevel=3)
        return _Choice("gmssl", _GMSSL_DESCRIPTION)


def _active() -> _Choice:
    global _choice
    choice = _choice
    if choice is None:
        with _choice_lock:
            if _choice is None:
                _choice = _choose(os.environ.get(BACKEND_ENV))
            choice = _choice
    return choice


def _native() -> bool:
    return _active().name == "openssl"


def sm2_backend() -> Sm2Backend:
    """Return the SM2 backend in use, ``"openssl"`` or ``"gmssl"``, choosing it on first call
    (see :data:`BACKEND_ENV`). Raises :class:`CryptoBackendUnavailable` when ``openssl`` is
    required but cannot be used, or the variable holds something else."""
    return _active().name


def crypto_backends() -> dict[str, str]:
    """What runs the primitives, as ``jointledger --version`` and ``/v1/health`` show it:
    ``{"sm2": "openssl 3.0.19"}`` or ``{"sm2": "gmssl (pure Python, not constant-time)"}``."""
    return {"sm2": _active().description}


def set_sm2_backend(name: Sm2Backend) -> Sm2Backend:
    """Switch the SM2 backend of this process and return the previous one (tests, benchmarks).

    Not for a running node (set :data:`BACKEND_ENV` instead): operations already running in
    other threads finish on the backend they started with. Raises
    :class:`CryptoBackendUnavailable` if ``openssl`` cannot be used, ``ValueError`` for an
    unknown name. Keys made under one backend work under the other.
    """
    global _choice
    if name not in SM2_BACKENDS:
        raise ValueError(f"unknown SM2 backend {name!r}; expected one of {SM2_BACKENDS}")
    previous = sm2_backend()
    description = _openssl_description() if name == "openssl" else _GMSSL_DESCRIPTION
    with _choice_lock:
        _choice = _Choice(name, description)
    return previous


@contextmanager
def sm2_backend_override(name: Sm2Backend) -> Iterator[None]:
    """Run the body with the SM2 backend ``name``, then restore the previous one (tests)."""
    previous = set_sm2_backend(name)
    try:
        yield
    finally:
        set_sm2_backend(previous)


@functools.lru_cache(maxsize=256)
def _native_public(x: int, y: int) -> NativeKey:
    """OpenSSL's ``EVP_PKEY`` for a public point, shared by equal key objects: nodes build a
    fresh :class:`SM2PublicKey` per request from the registered raw key."""
    return libcrypto.public_key(b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big"))


# --------------------------------------------------------------------------------------------
# SM2 keys
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SM2PublicKey:
    """An SM2 public key: an affine point on the curve, never the point at infinity.

    Construction raises :class:`InvalidKey` if (x, y) is not on the SM2 curve. OpenSSL's
    ``EVP_PKEY`` for it is built on first use and kept (also for equal keys made later).
    """

    x: int
    y: int
    _native: NativeKey | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if type(self.x) is not int or type(self.y) is not int:
            raise InvalidKey("SM2 public key coordinates must be integers")
        if not on_curve(self.x, self.y):
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

    def _evp(self) -> NativeKey:
        native = self._native
        if native is None:
            native = _native_public(self.x, self.y)
            object.__setattr__(self, "_native", native)
        return native


@dataclass(frozen=True, slots=True, repr=False)
class SM2PrivateKey:
    """An SM2 private key: the scalar d with 1 ≤ d ≤ n − 2 (GB/T 32918.1 excludes n − 1).

    Construction computes the public key d·G once (OpenSSL's ladder on the default backend)
    and raises :class:`InvalidKey` for a scalar out of range. OpenSSL's ``EVP_PKEY`` for the
    pair is built on first use and kept with the object, so signing costs no key set-up.
    """

    d: int
    _public: SM2PublicKey = field(init=False, compare=False)
    _native: NativeKey | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if type(self.d) is not int or not 1 <= self.d <= SM2_N - 2:
            raise InvalidKey("SM2 private scalar out of range [1, n-2]")
        object.__setattr__(self, "_public", SM2PublicKey(*_public_point(self.d)))

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

    def _evp(self) -> NativeKey:
        native = self._native
        if native is None:
            native = libcrypto.key_pair(self.d, self._public.uncompressed)
            object.__setattr__(self, "_native", native)
        return native


def _public_point(d: int) -> Point:
    if _native():
        point = libcrypto.multiply(d)
        assert point is not None  # d in [1, n-2]
        return point
    return sm2_gmssl.public_point(d)


def generate_private_key() -> SM2PrivateKey:
    """Return a new SM2 private key with d drawn uniformly from [1, n−2] by :mod:`secrets`."""
    return SM2PrivateKey(secrets.randbelow(SM2_N - 2) + 1)


def shared_point(private_key: SM2PrivateKey, peer: SM2PublicKey) -> Point | None:
    """Return d·P, the static-static key agreement point of ``private_key`` and ``peer``
    (both coordinates), or ``None`` for the point at infinity (impossible for valid keys).

    OpenSSL's ``EVP_PKEY_derive`` has no SM2 key exchange, and its ECDH would give x only;
    the pairwise keys (:mod:`ledger_node.protocol.pairwise`) hash x and y. So this is
    ``EC_POINT_mul``, the same constant-time ladder, on the default backend.
    """
    if _native():
        return libcrypto.multiply(private_key.d, (peer.x, peer.y))
    return sm2_gmssl.shared_point(private_key.d, (peer.x, peer.y))


# --------------------------------------------------------------------------------------------
# SM2 signatures
# --------------------------------------------------------------------------------------------


def z_a(public_key: SM2PublicKey, user_id: bytes = DEFAULT_USER_ID) -> bytes:
    """Return Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA) (cached per key and ID).

    Raises ``ValueError`` if ``user_id`` is 8192 bytes or longer (ENTL is 16 bits).
    """
    check_user_id(user_id)
    return z(public_key.x, public_key.y, bytes(user_id))


def _digest(public_key: SM2PublicKey, message: bytes, user_id: bytes) -> int:
    return digest(public_key.x, public_key.y, message, user_id)


# OpenSSL refuses IDs of 8191 bytes (its check is id_len >= UINT16_MAX / 8), which ENTL
# allows: for that one length the native backend signs and verifies SM3(Z_A || M), computed
# here, with EVP_PKEY_sign/verify, the same constant-time code without the digest step.
_OPENSSL_MAX_USER_ID: Final = 8190


def sign(private_key: SM2PrivateKey, message: bytes, user_id: bytes = DEFAULT_USER_ID) -> bytes:
    """Return a DER SM2 signature ``SEQUENCE { r, s }`` of ``message``.

    The signed value is SM3(Z_A || message). OpenSSL draws the nonce k from its DRBG (gmssl
    backend: :mod:`secrets`). Raises ``ValueError`` for an over-long ``user_id`` and
    :class:`CryptoError` only if OpenSSL fails.
    """
    check_user_id(user_id)
    message, user_id = bytes(message), bytes(user_id)
    if _native():
        if len(user_id) <= _OPENSSL_MAX_USER_ID:
            return libcrypto.sign(private_key._evp(), message, user_id)
        e = _digest(private_key.public_key(), message, user_id)
        return libcrypto.sign_digest(private_key._evp(), e.to_bytes(32, "big"))
    e = _digest(private_key.public_key(), message, user_id)
    return encode_signature(*sm2_gmssl.sign_digest(private_key.d, e))


def encode_signature(r: int, s: int) -> bytes:
    """Return the DER encoding ``SEQUENCE { INTEGER r, INTEGER s }``.

    Raises :class:`InvalidSignature` if r or s is outside [1, n−1].
    """
    if not (1 <= r < SM2_N and 1 <= s < SM2_N):
        raise InvalidSignature("r and s must lie in [1, n-1]")
    return der.sequence(der.integer(r), der.integer(s))


def decode_signature(signature: bytes) -> tuple[int, int]:
    """Return (r, s) from a strict DER SM2 signature.

    Raises :class:`InvalidSignature` for non-DER input (trailing bytes, non-minimal lengths
    or integers, negative integers) or r, s outside [1, n−1].
    """
    try:
        reader = der.DerReader(bytes(signature))
        seq = reader.read(der.SEQUENCE)
        reader.end()
        inner = der.DerReader(seq)
        r = inner.integer()
        s = inner.integer()
        inner.end()
    except der.DerError as exc:
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

    Raises :class:`InvalidSignature` if the signature is malformed (strict DER, checked here
    on both backends) or does not verify, ``ValueError`` for an over-long ``user_id``.
    """
    r, s = decode_signature(signature)
    check_user_id(user_id)
    message, user_id = bytes(message), bytes(user_id)
    if _native():
        if len(user_id) <= _OPENSSL_MAX_USER_ID:
            ok = libcrypto.verify(public_key._evp(), message, bytes(signature), user_id)
        else:
            e = _digest(public_key, message, user_id)
            ok = libcrypto.verify_digest(public_key._evp(), e.to_bytes(32, "big"),
                                         bytes(signature))
    else:
        ok = sm2_gmssl.verify_digest(
            (public_key.x, public_key.y), _digest(public_key, message, user_id), r, s
        )
    if not ok:
        raise InvalidSignature("SM2 signature does not verify")


# --------------------------------------------------------------------------------------------
# SM2 public-key encryption (GB/T 32918.4), GM/T 0009 DER ciphertext
# --------------------------------------------------------------------------------------------


def encrypt(public_key: SM2PublicKey, plaintext: bytes) -> bytes:
    """Return the SM2 encryption of ``plaintext`` to ``public_key``.

    The result is DER ``SEQUENCE { x INTEGER, y INTEGER, C3 OCTET STRING, C2 OCTET STRING }``
    (GM/T 0009, what ``openssl pkeyutl -encrypt`` writes), hash SM3. The ephemeral k comes
    from OpenSSL's DRBG (gmssl backend: :mod:`secrets`). Raises :class:`CryptoError` for an
    empty plaintext (which SM2 cannot encrypt: its key stream would be empty, so the
    all-zero check never passes).
    """
    if not plaintext:
        raise CryptoError("SM2 cannot encrypt an empty message")
    msg = bytes(plaintext)
    if _native():
        return libcrypto.encrypt(public_key._evp(), msg)
    return sm2_gmssl.encrypt((public_key.x, public_key.y), msg)


def decrypt(private_key: SM2PrivateKey, ciphertext: bytes) -> bytes:
    """Return the plaintext of a DER SM2 ciphertext made for ``private_key``.

    Raises :class:`DecryptionFailed` if the ciphertext is malformed (strict DER, checked
    here on both backends), C1 is not on the curve, or the C3 check fails (tampering or wrong
    key).
    """
    data = bytes(ciphertext)
    try:
        reader = der.DerReader(data)
        seq = reader.read(der.SEQUENCE)
        reader.end()
        inner = der.DerReader(seq)
        x1 = inner.integer()
        y1 = inner.integer()
        c3 = inner.read(der.OCTET_STRING)
        c2 = inner.read(der.OCTET_STRING)
        inner.end()
    except der.DerError as exc:
        raise DecryptionFailed(f"malformed SM2 ciphertext: {exc}") from None
    if len(c3) != 32 or not c2:
        raise DecryptionFailed("malformed SM2 ciphertext: bad C3 or empty C2")
    if not on_curve(x1, y1):
        raise DecryptionFailed("SM2 ciphertext point C1 is not on the curve")
    if _native():
        msg = libcrypto.decrypt(private_key._evp(), data)
        if msg is not None and len(msg) != len(c2):
            msg = None  # pragma: no cover - OpenSSL returns exactly len(C2) bytes
    else:
        msg = sm2_gmssl.decrypt(private_key.d, (x1, y1), c3, c2)
    if msg is None:
        raise DecryptionFailed("SM2 decryption failed")
    return msg


# --------------------------------------------------------------------------------------------
# PEM
# --------------------------------------------------------------------------------------------

_ALGORITHM_ID: Final = der.sequence(
    der.tlv(der.OID, der.OID_EC_PUBLIC_KEY), der.tlv(der.OID, der.OID_SM2)
)


def _pem_encode(label: str, encoded: bytes) -> bytes:
    b64 = binascii.b2a_base64(encoded, newline=False)
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
        decoded = binascii.a2b_base64("".join(body.split()).encode(), strict_mode=True)
    except binascii.Error as exc:
        raise InvalidKey(f"bad base64 in PEM: {exc}") from None
    if not decoded:
        raise InvalidKey("empty PEM body")
    return label, decoded


def _point_from_bitstring(bits: bytes) -> SM2PublicKey:
    if len(bits) != 66 or bits[0] != 0:
        raise InvalidKey("SM2 public key must be an uncompressed point (04 || x || y)")
    if bits[1] != 4:
        raise InvalidKey("only uncompressed SM2 public points (04 || x || y) are supported")
    return SM2PublicKey.from_raw(bits[2:])


def private_key_to_pem(private_key: SM2PrivateKey) -> bytes:
    """Return ``private_key`` as PKCS#8 ``PRIVATE KEY`` PEM, exactly as OpenSSL 3 writes it."""
    ec_private_key = der.sequence(
        der.integer(1),
        der.octets(private_key.to_bytes()),
        der.tlv(der.CTX1, der.tlv(der.BIT_STRING, b"\x00" + private_key.public_key().uncompressed)),
    )
    pkcs8 = der.sequence(der.integer(0), _ALGORITHM_ID, der.octets(ec_private_key))
    return _pem_encode("PRIVATE KEY", pkcs8)


def _parse_ec_private_key(encoded: bytes, *, need_curve: bool) -> SM2PrivateKey:
    reader = der.DerReader(encoded)
    inner = der.DerReader(reader.read(der.SEQUENCE))
    reader.end()
    if inner.integer() != 1:
        raise InvalidKey("ECPrivateKey version must be 1")
    scalar = inner.read(der.OCTET_STRING)
    if not 1 <= len(scalar) <= 32:
        raise InvalidKey("SM2 private scalar must be at most 32 bytes")
    curve_seen = False
    if inner.peek_tag() == der.CTX0:
        params = der.DerReader(inner.read(der.CTX0))
        if params.read(der.OID) != der.OID_SM2:
            raise InvalidKey("EC key is not on the SM2 curve")
        params.end()
        curve_seen = True
    if need_curve and not curve_seen:
        raise InvalidKey("SEC1 EC key lacks curve parameters")
    public_bits: bytes | None = None
    if inner.peek_tag() == der.CTX1:
        wrapped = der.DerReader(inner.read(der.CTX1))
        public_bits = wrapped.read(der.BIT_STRING)
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
    label, encoded = _pem_decode(pem, ("PRIVATE KEY", "EC PRIVATE KEY", "SM2 PRIVATE KEY"))
    try:
        if label != "PRIVATE KEY":
            return _parse_ec_private_key(encoded, need_curve=True)
        reader = der.DerReader(encoded)
        info = der.DerReader(reader.read(der.SEQUENCE))
        reader.end()
        if info.integer() != 0:
            raise InvalidKey("PKCS#8 version must be 0")
        if info.read(der.SEQUENCE) != _ALGORITHM_ID[2:]:
            raise InvalidKey("PKCS#8 key is not id-ecPublicKey on the SM2 curve")
        inner = info.read(der.OCTET_STRING)
        info.end()  # attributes ([0]) are not accepted
        return _parse_ec_private_key(inner, need_curve=False)
    except der.DerError as exc:
        raise InvalidKey(f"malformed SM2 private key: {exc}") from None


def public_key_to_pem(public_key: SM2PublicKey) -> bytes:
    """Return ``public_key`` as SubjectPublicKeyInfo ``PUBLIC KEY`` PEM (as ``openssl pkey``)."""
    spki = der.sequence(_ALGORITHM_ID, der.tlv(der.BIT_STRING, b"\x00" + public_key.uncompressed))
    return _pem_encode("PUBLIC KEY", spki)


def public_key_from_pem(pem: bytes) -> SM2PublicKey:
    """Return the SM2 public key in SubjectPublicKeyInfo ``PUBLIC KEY`` PEM.

    Raises :class:`InvalidKey` for malformed PEM or DER, another algorithm or curve, a
    compressed point, or a point not on the curve.
    """
    _, encoded = _pem_decode(pem, ("PUBLIC KEY",))
    try:
        reader = der.DerReader(encoded)
        spki = der.DerReader(reader.read(der.SEQUENCE))
        reader.end()
        if spki.read(der.SEQUENCE) != _ALGORITHM_ID[2:]:
            raise InvalidKey("public key is not id-ecPublicKey on the SM2 curve")
        bits = spki.read(der.BIT_STRING)
        spki.end()
    except der.DerError as exc:
        raise InvalidKey(f"malformed SM2 public key: {exc}") from None
    return _point_from_bitstring(bits)
