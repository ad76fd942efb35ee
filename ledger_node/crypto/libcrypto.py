"""A ctypes binding to the libcrypto (OpenSSL 3) that this Python's own ``hashlib`` uses.

Why: ``cryptography`` does not expose SM2, and the pure-Python curve arithmetic it replaces
branches on secret bits. OpenSSL 3's SM2 (EVP interface) multiplies secret scalars with a
Montgomery ladder and inverts them in constant time; this module reaches it without a new
package, through :mod:`ctypes`.

Which library: exactly the one ``_hashlib`` is linked against. The address of
``OpenSSL_version_num`` as ``_hashlib`` resolves it is handed to ``dladdr``, which names the
shared object that defines it; that object is opened (already loaded: the same instance, not
a second copy) and checked to resolve the symbol to the same address. Nothing else is
searched: no ``ctypes.util.find_library``, no other OpenSSL on the machine.

What is refused, with :class:`~ledger_node.errors.CryptoBackendUnavailable`: a ``_hashlib``
whose libcrypto cannot be located (statically linked builds), OpenSSL older than 3.0 (or
LibreSSL, whose version number reads as 2.x), and an OpenSSL without SM2 or SM3
(``no-sm2``/``no-sm3`` builds, FIPS-only providers).

Only this module calls into the library. Every call here follows three rules:

* every pointer argument and result is declared (``argtypes``/``restype``): nothing goes
  through ctypes' default ``int`` conversion, which truncates 64-bit pointers;
* every object allocated is freed on every path (``try``/``finally``), keys by
  :class:`NativeKey`'s finaliser;
* OpenSSL's per-thread error queue is left as found (``ERR_set_mark``/``ERR_pop_to_mark``
  around every operation): ``hashlib`` and ``ssl`` read the same queue, and an error left
  behind by a failed verification here must not surface in their next call.

ctypes releases the GIL during each foreign call, so threads signing or verifying at once
run in parallel. An ``EVP_PKEY`` is only read after it is built, which OpenSSL allows from
many threads at once (openssl-threads(7)); every ``EVP_PKEY_CTX``/``EVP_MD_CTX``/``BN_CTX``
is created and freed within one call, so no context is ever shared between threads.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from ctypes import POINTER, byref, c_char_p, c_int, c_size_t, c_uint, c_ulong, c_void_p
from dataclasses import dataclass
from typing import Any, Final

from ledger_node.errors import CryptoBackendUnavailable, CryptoError

MIN_VERSION: Final = 0x3000_0000
"""OpenSSL 3.0.0: the first with ``EVP_PKEY_CTX_set1_id`` as a function and SM2 as its own
key type in the default provider."""

NID_SM2: Final = 1172
"""OpenSSL's numeric id of the SM2 curve (``obj_mac.h``), stable since 1.1.1."""

_OSSL_PARAM_UNSIGNED_INTEGER: Final = 2
_OSSL_PARAM_UTF8_STRING: Final = 4
_OSSL_PARAM_OCTET_STRING: Final = 5
_OSSL_PARAM_UNMODIFIED: Final = ctypes.c_size_t(-1).value
_EVP_PKEY_PUBLIC_KEY: Final = 0x86  # OSSL_KEYMGMT_SELECT_PUBLIC_KEY | ALL_PARAMETERS
_EVP_PKEY_KEYPAIR: Final = 0x87  # ... | OSSL_KEYMGMT_SELECT_PRIVATE_KEY
_BN_FLG_CONSTTIME: Final = 0x04
_MAX_SIGNATURE_DER: Final = 72  # SEQUENCE { INTEGER(33), INTEGER(33) }


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", c_char_p),
        ("dli_fbase", c_void_p),
        ("dli_sname", c_char_p),
        ("dli_saddr", c_void_p),
    ]


class _OsslParam(ctypes.Structure):
    """``OSSL_PARAM`` (openssl/core.h): key, type, data, size, return size."""

    _fields_ = [
        ("key", c_char_p),
        ("data_type", c_uint),
        ("data", c_void_p),
        ("data_size", c_size_t),
        ("return_size", c_size_t),
    ]


_P = c_void_p
_SIZE_P = POINTER(c_size_t)

# name: (restype, argtypes). Only what the SM2 backend needs.
_PROTOTYPES: Final[dict[str, tuple[Any, list[Any]]]] = {
    "OpenSSL_version_num": (c_ulong, []),
    "OpenSSL_version": (c_char_p, [c_int]),
    "ERR_set_mark": (c_int, []),
    "ERR_pop_to_mark": (c_int, []),
    "ERR_peek_last_error": (c_ulong, []),
    "ERR_error_string_n": (None, [c_ulong, c_char_p, c_size_t]),
    # keys
    "EVP_PKEY_CTX_new_from_name": (_P, [_P, c_char_p, c_char_p]),
    "EVP_PKEY_CTX_new": (_P, [_P, _P]),
    "EVP_PKEY_CTX_free": (None, [_P]),
    "EVP_PKEY_fromdata_init": (c_int, [_P]),
    "EVP_PKEY_fromdata": (c_int, [_P, POINTER(_P), c_int, _P]),
    "EVP_PKEY_is_a": (c_int, [_P, c_char_p]),
    "EVP_PKEY_free": (None, [_P]),
    # signatures
    "EVP_MD_fetch": (_P, [_P, c_char_p, c_char_p]),
    "EVP_MD_free": (None, [_P]),
    "EVP_MD_CTX_new": (_P, []),
    "EVP_MD_CTX_free": (None, [_P]),
    "EVP_MD_CTX_set_pkey_ctx": (None, [_P, _P]),
    "EVP_PKEY_CTX_set1_id": (c_int, [_P, c_char_p, c_int]),
    "EVP_DigestSignInit": (c_int, [_P, _P, _P, _P, _P]),
    "EVP_DigestSign": (c_int, [_P, c_char_p, _SIZE_P, c_char_p, c_size_t]),
    "EVP_DigestVerifyInit": (c_int, [_P, _P, _P, _P, _P]),
    "EVP_DigestVerify": (c_int, [_P, c_char_p, c_size_t, c_char_p, c_size_t]),
    "EVP_PKEY_sign_init": (c_int, [_P]),
    "EVP_PKEY_sign": (c_int, [_P, c_char_p, _SIZE_P, c_char_p, c_size_t]),
    "EVP_PKEY_verify_init": (c_int, [_P]),
    "EVP_PKEY_verify": (c_int, [_P, c_char_p, c_size_t, c_char_p, c_size_t]),
    # encryption
    "EVP_PKEY_encrypt_init": (c_int, [_P]),
    "EVP_PKEY_encrypt": (c_int, [_P, c_char_p, _SIZE_P, c_char_p, c_size_t]),
    "EVP_PKEY_decrypt_init": (c_int, [_P]),
    "EVP_PKEY_decrypt": (c_int, [_P, c_char_p, _SIZE_P, c_char_p, c_size_t]),
    # EC point multiplication (public keys from scalars, pairwise key agreement)
    "EC_GROUP_new_by_curve_name": (_P, [c_int]),
    "EC_GROUP_free": (None, [_P]),
    "EC_POINT_new": (_P, [_P]),
    "EC_POINT_clear_free": (None, [_P]),
    "EC_POINT_mul": (c_int, [_P, _P, _P, _P, _P, _P]),
    "EC_POINT_set_affine_coordinates": (c_int, [_P, _P, _P, _P, _P]),
    "EC_POINT_get_affine_coordinates": (c_int, [_P, _P, _P, _P, _P]),
    "EC_POINT_is_at_infinity": (c_int, [_P, _P]),
    "BN_CTX_new": (_P, []),
    "BN_CTX_free": (None, [_P]),
    "BN_new": (_P, []),
    "BN_secure_new": (_P, []),
    "BN_bin2bn": (_P, [c_char_p, c_int, _P]),
    "BN_bn2binpad": (c_int, [_P, _P, c_int]),
    "BN_set_flags": (None, [_P, c_int]),
    "BN_free": (None, [_P]),
    "BN_clear_free": (None, [_P]),
}


def _libcrypto_of_hashlib() -> str:
    """Return the path of the shared libcrypto that ``_hashlib`` is linked against.

    Raises :class:`CryptoBackendUnavailable` if ``_hashlib`` is missing, does not reach an
    ``OpenSSL_version_num`` symbol, or the symbol's defining object cannot be named.
    """
    try:
        import _hashlib
    except ImportError as exc:
        raise CryptoBackendUnavailable(f"Python has no _hashlib module: {exc}") from None
    try:
        # dlopen of an already loaded object returns it; dlsym through its handle searches
        # _hashlib and then its dependencies, in load order: the libcrypto it binds to.
        symbol = ctypes.CDLL(_hashlib.__file__).OpenSSL_version_num
        libc = ctypes.CDLL(None)
        dladdr = libc.dladdr
    except (AttributeError, OSError) as exc:
        raise CryptoBackendUnavailable(
            f"cannot find the libcrypto linked by {_hashlib.__file__}: {exc}"
        ) from None
    dladdr.argtypes = [c_void_p, POINTER(_DlInfo)]
    dladdr.restype = c_int
    info = _DlInfo()
    address = ctypes.cast(symbol, c_void_p).value
    if not dladdr(address, byref(info)) or not info.dli_fname:
        raise CryptoBackendUnavailable("dladdr cannot name the library of OpenSSL_version_num")
    path = str(info.dli_fname.decode(sys.getfilesystemencoding()))
    if path == _hashlib.__file__:
        raise CryptoBackendUnavailable(
            f"{path} has OpenSSL linked in statically: no shared libcrypto to bind"
        )
    return path


@dataclass(frozen=True)
class Library:
    """The bound libcrypto: its path, version number and text, and its typed functions."""

    path: str
    version_number: int
    version_text: str
    cdll: ctypes.CDLL
    sm2_group: int  # EC_GROUP* of the SM2 curve, for point multiplication; never freed
    sm3: int  # EVP_MD* fetched once; never freed

    @property
    def version(self) -> str:
        """``"3.0.19"``: the release, from ``OpenSSL_version(OPENSSL_VERSION_STRING)``."""
        return self.version_text

    def error_text(self) -> str:
        """The most recent OpenSSL error of this thread as text ('' if none)."""
        code = self.cdll.ERR_peek_last_error()
        if not code:
            return ""
        buffer = ctypes.create_string_buffer(256)
        self.cdll.ERR_error_string_n(code, buffer, len(buffer))
        return str(buffer.value.decode("ascii", "replace"))


def version_refusal(number: int, text: str) -> str | None:
    """Why a libcrypto reporting ``OpenSSL_version_num()`` = ``number`` and
    ``OpenSSL_version(OPENSSL_VERSION)`` = ``text`` cannot serve, or ``None`` if it can.

    OpenSSL 1.1.1 had SM2, but only through ``EVP_PKEY_set_alias_type`` and a ctrl-based
    distinguishing ID, and it is out of support; LibreSSL reports 2.0.0 and has no SM2.
    """
    if not text.startswith("OpenSSL "):
        return f"{text!r} is not OpenSSL; SM2 through EVP needs OpenSSL 3.0 or later"
    if number < MIN_VERSION:
        return f"{text!r} (0x{number:08x}) is older than 3.0; SM2 through EVP needs 3.0 or later"
    return None


def _bind(path: str) -> Library:
    try:
        cdll = ctypes.CDLL(path)
    except OSError as exc:
        raise CryptoBackendUnavailable(f"cannot open {path}: {exc}") from None
    version_num = cdll.OpenSSL_version_num
    version_num.restype, version_num.argtypes = c_ulong, []
    number = int(version_num())
    version_fn = cdll.OpenSSL_version
    version_fn.restype, version_fn.argtypes = c_char_p, [c_int]
    full = (version_fn(0) or b"?").decode("ascii", "replace")
    refusal = version_refusal(number, full)
    if refusal:
        raise CryptoBackendUnavailable(f"{path}: {refusal}")
    for name, (restype, argtypes) in _PROTOTYPES.items():
        try:
            function = getattr(cdll, name)
        except AttributeError:
            raise CryptoBackendUnavailable(f"{full} at {path} lacks {name}") from None
        function.restype = restype
        function.argtypes = argtypes
    # OPENSSL_VERSION_STRING (6) is "3.0.19" without the "OpenSSL " prefix and date.
    short = (version_fn(6) or b"").decode("ascii", "replace") or full.split()[1]
    cdll.ERR_set_mark()
    try:
        sm3 = cdll.EVP_MD_fetch(None, b"SM3", None)
        group = cdll.EC_GROUP_new_by_curve_name(NID_SM2)
        probe = cdll.EVP_PKEY_CTX_new_from_name(None, b"SM2", None)
        cdll.EVP_PKEY_CTX_free(probe)
    finally:
        cdll.ERR_pop_to_mark()
    if not sm3 or not group or not probe:
        missing = ", ".join(
            what for what, ok in (("SM3", sm3), ("the SM2 curve", group), ("SM2 keys", probe))
            if not ok
        )
        raise CryptoBackendUnavailable(f"{full} at {path} has no {missing}")
    return Library(path, number, short, cdll, int(group), int(sm3))


_lock = threading.Lock()
_library: Library | None = None
_failure: CryptoBackendUnavailable | None = None


def library() -> Library:
    """Return the bound libcrypto, binding it on first use (thread-safe, once per process).

    Raises :class:`CryptoBackendUnavailable` (every time, with the first reason) if it
    cannot be bound.
    """
    global _library, _failure
    if _library is not None:
        return _library
    with _lock:
        if _library is None:
            if _failure is not None:
                raise _failure
            try:
                _library = _bind(_libcrypto_of_hashlib())
            except CryptoBackendUnavailable as exc:
                _failure = exc
                raise
    return _library


@contextmanager
def _error_mark(lib: Library) -> Iterator[None]:
    """Leave the thread's OpenSSL error queue as it was found, whatever happens inside."""
    lib.cdll.ERR_set_mark()
    try:
        yield
    finally:
        lib.cdll.ERR_pop_to_mark()


# --------------------------------------------------------------------------------------------
# SM2 keys
# --------------------------------------------------------------------------------------------


class NativeKey:
    """An owned ``EVP_PKEY*`` of type SM2 (public, or key pair), freed with this object.

    Built once per key object by :func:`public_key` / :func:`key_pair` and kept by the
    caller, so that an operation costs no key set-up. Pickling and copying give ``None``
    (the owner rebuilds it on next use), never a second owner of the pointer.
    """

    __slots__ = ("_lib", "pointer", "has_private", "__weakref__")

    def __init__(self, lib: Library, pointer: int, *, has_private: bool) -> None:
        self._lib = lib
        self.pointer = pointer
        self.has_private = has_private

    def __del__(self) -> None:
        pointer, self.pointer = self.pointer, 0
        if pointer:
            self._lib.cdll.EVP_PKEY_free(pointer)

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (type(None), ())

    def __repr__(self) -> str:
        kind = "key pair" if self.has_private else "public key"
        return f"<NativeKey SM2 {kind}>"


def _from_data(lib: Library, uncompressed: bytes, scalar: int | None) -> NativeKey:
    """Build an SM2 ``EVP_PKEY`` with ``EVP_PKEY_fromdata`` (group, public point, scalar)."""
    params = (_OsslParam * 4)()
    group_name = ctypes.create_string_buffer(b"SM2")
    point = ctypes.create_string_buffer(uncompressed, len(uncompressed))
    params[0] = _OsslParam(b"group", _OSSL_PARAM_UTF8_STRING,
                           ctypes.cast(group_name, c_void_p), 3, _OSSL_PARAM_UNMODIFIED)
    params[1] = _OsslParam(b"pub", _OSSL_PARAM_OCTET_STRING,
                           ctypes.cast(point, c_void_p), len(uncompressed), _OSSL_PARAM_UNMODIFIED)
    secret: ctypes.Array[ctypes.c_char] | None = None
    selection = _EVP_PKEY_PUBLIC_KEY
    if scalar is not None:
        # OSSL_PARAM unsigned integers are in native byte order.
        secret = ctypes.create_string_buffer(scalar.to_bytes(32, sys.byteorder), 32)
        params[2] = _OsslParam(b"priv", _OSSL_PARAM_UNSIGNED_INTEGER,
                               ctypes.cast(secret, c_void_p), 32, _OSSL_PARAM_UNMODIFIED)
        selection = _EVP_PKEY_KEYPAIR
    pkey = c_void_p()
    cdll = lib.cdll
    with _error_mark(lib):
        ctx = cdll.EVP_PKEY_CTX_new_from_name(None, b"SM2", None)
        try:
            ok = (
                bool(ctx)
                and cdll.EVP_PKEY_fromdata_init(ctx) == 1
                and cdll.EVP_PKEY_fromdata(ctx, byref(pkey), selection, params) == 1
                and cdll.EVP_PKEY_is_a(pkey, b"SM2") == 1
            )
            reason = "" if ok else lib.error_text()
        finally:
            cdll.EVP_PKEY_CTX_free(ctx)
            if secret is not None:
                ctypes.memset(secret, 0, 32)
    if not ok:
        if pkey.value:
            cdll.EVP_PKEY_free(pkey)
        raise CryptoError(f"OpenSSL refused the SM2 key: {reason or 'no reason given'}")
    assert pkey.value is not None
    return NativeKey(lib, pkey.value, has_private=scalar is not None)


def public_key(uncompressed: bytes) -> NativeKey:
    """Return an SM2 ``EVP_PKEY`` for the 65-byte point ``04 || x || y`` (already checked)."""
    return _from_data(library(), uncompressed, None)


def key_pair(scalar: int, uncompressed: bytes) -> NativeKey:
    """Return an SM2 ``EVP_PKEY`` holding the private ``scalar`` and its public point."""
    return _from_data(library(), uncompressed, scalar)


# --------------------------------------------------------------------------------------------
# SM2 signatures: EVP_DigestSign/Verify with SM3 and the distinguishing ID set explicitly
# --------------------------------------------------------------------------------------------


@contextmanager
def _digest_context(lib: Library, key: NativeKey, user_id: bytes) -> Iterator[int]:
    """Yield an ``EVP_MD_CTX*`` whose ``EVP_PKEY_CTX`` carries ``user_id`` (both freed after).

    ``EVP_MD_CTX_set_pkey_ctx`` leaves ownership of the ``EVP_PKEY_CTX`` with the caller,
    so it is freed here after the ``EVP_MD_CTX``.
    """
    cdll = lib.cdll
    mctx = cdll.EVP_MD_CTX_new()
    pctx = cdll.EVP_PKEY_CTX_new(key.pointer, None)
    try:
        if not mctx or not pctx or cdll.EVP_PKEY_CTX_set1_id(pctx, user_id, len(user_id)) != 1:
            raise CryptoError(f"OpenSSL SM2 context set-up failed: {lib.error_text()}")
        cdll.EVP_MD_CTX_set_pkey_ctx(mctx, pctx)
        yield int(mctx)
    finally:
        cdll.EVP_MD_CTX_free(mctx)
        cdll.EVP_PKEY_CTX_free(pctx)


def sign(key: NativeKey, message: bytes, user_id: bytes) -> bytes:
    """Return OpenSSL's DER SM2 signature of ``message`` (SM3, distinguishing ID ``user_id``).

    The nonce comes from OpenSSL's DRBG; k·G is a ladder multiplication and (1 + d)⁻¹ a
    constant-time inversion. Raises :class:`CryptoError` if OpenSSL fails.
    """
    if not key.has_private:
        raise CryptoError("signing needs a private key")
    lib = library()
    out = ctypes.create_string_buffer(_MAX_SIGNATURE_DER)
    size = c_size_t(len(out))
    with _error_mark(lib), _digest_context(lib, key, user_id) as mctx:
        ok = (
            lib.cdll.EVP_DigestSignInit(mctx, None, lib.sm3, None, key.pointer) == 1
            and lib.cdll.EVP_DigestSign(mctx, out, byref(size), message, len(message)) == 1
        )
        if not ok:
            raise CryptoError(f"OpenSSL SM2 signing failed: {lib.error_text()}")
    return out.raw[: size.value]


def verify(key: NativeKey, message: bytes, signature: bytes, user_id: bytes) -> bool:
    """Return whether ``signature`` (DER) is ``key``'s SM2 signature of ``message``.

    A malformed signature is just ``False`` here (OpenSSL re-encodes and compares, so only
    strict DER can verify); the caller raises :class:`InvalidSignature`.
    """
    lib = library()
    with _error_mark(lib), _digest_context(lib, key, user_id) as mctx:
        if lib.cdll.EVP_DigestVerifyInit(mctx, None, lib.sm3, None, key.pointer) != 1:
            raise CryptoError(f"OpenSSL SM2 verification set-up failed: {lib.error_text()}")
        return bool(
            lib.cdll.EVP_DigestVerify(mctx, signature, len(signature), message, len(message)) == 1
        )


def sign_digest(key: NativeKey, e: bytes) -> bytes:
    """Return OpenSSL's DER SM2 signature of the 32-byte ``e`` = SM3(Z_A || M) computed by the
    caller (``EVP_PKEY_sign``: the same nonce, ladder and inversion as :func:`sign`).

    For distinguishing IDs that ``EVP_PKEY_CTX_set1_id`` refuses (OpenSSL 3.0 takes at most
    8190 bytes; GB/T 32918's 16-bit ENTL allows 8191). Raises :class:`CryptoError`.
    """
    if not key.has_private:
        raise CryptoError("signing needs a private key")
    lib = library()
    cdll = lib.cdll
    out = ctypes.create_string_buffer(_MAX_SIGNATURE_DER)
    size = c_size_t(len(out))
    with _error_mark(lib):
        ctx = cdll.EVP_PKEY_CTX_new(key.pointer, None)
        try:
            if not ctx or cdll.EVP_PKEY_sign_init(ctx) != 1 or cdll.EVP_PKEY_sign(
                ctx, out, byref(size), e, len(e)
            ) != 1:
                raise CryptoError(f"OpenSSL SM2 signing failed: {lib.error_text()}")
        finally:
            cdll.EVP_PKEY_CTX_free(ctx)
    return out.raw[: size.value]


def verify_digest(key: NativeKey, e: bytes, signature: bytes) -> bool:
    """Return whether ``signature`` (DER) signs the 32-byte ``e`` for ``key``
    (``EVP_PKEY_verify``; the counterpart of :func:`sign_digest`)."""
    lib = library()
    cdll = lib.cdll
    with _error_mark(lib):
        ctx = cdll.EVP_PKEY_CTX_new(key.pointer, None)
        try:
            if not ctx or cdll.EVP_PKEY_verify_init(ctx) != 1:
                raise CryptoError(f"OpenSSL SM2 verification set-up failed: {lib.error_text()}")
            return bool(cdll.EVP_PKEY_verify(ctx, signature, len(signature), e, len(e)) == 1)
        finally:
            cdll.EVP_PKEY_CTX_free(ctx)


# --------------------------------------------------------------------------------------------
# SM2 encryption: EVP_PKEY_encrypt/decrypt, DER C1C3C2 (GM/T 0009)
# --------------------------------------------------------------------------------------------


def _pkey_crypt(key: NativeKey, data: bytes, *, decrypting: bool) -> bytes | None:
    lib = library()
    cdll = lib.cdll
    init = cdll.EVP_PKEY_decrypt_init if decrypting else cdll.EVP_PKEY_encrypt_init
    run = cdll.EVP_PKEY_decrypt if decrypting else cdll.EVP_PKEY_encrypt
    with _error_mark(lib):
        ctx = cdll.EVP_PKEY_CTX_new(key.pointer, None)
        try:
            size = c_size_t(0)
            if not ctx or init(ctx) != 1 or run(ctx, None, byref(size), data, len(data)) != 1:
                if decrypting:
                    return None
                raise CryptoError(f"OpenSSL SM2 encryption set-up failed: {lib.error_text()}")
            out = ctypes.create_string_buffer(size.value)
            if run(ctx, out, byref(size), data, len(data)) != 1:
                if decrypting:
                    return None
                raise CryptoError(f"OpenSSL SM2 encryption failed: {lib.error_text()}")
            result = out.raw[: size.value]
            if decrypting:
                ctypes.memset(out, 0, len(out))
            return result
        finally:
            cdll.EVP_PKEY_CTX_free(ctx)


def encrypt(key: NativeKey, plaintext: bytes) -> bytes:
    """Return OpenSSL's SM2 encryption of ``plaintext`` to ``key``: DER C1C3C2, SM3.

    Raises :class:`CryptoError` if OpenSSL fails (it refuses an empty plaintext).
    """
    result = _pkey_crypt(key, plaintext, decrypting=False)
    assert result is not None
    return result


def decrypt(key: NativeKey, ciphertext: bytes) -> bytes | None:
    """Return the plaintext of a DER C1C3C2 ``ciphertext``, or ``None`` if OpenSSL rejects it
    (malformed, C1 off the curve, C3 mismatch); the caller raises :class:`DecryptionFailed`.

    C1·d is a ladder multiplication and C3 is compared with ``CRYPTO_memcmp``.
    """
    if not key.has_private:
        raise CryptoError("decryption needs a private key")
    return _pkey_crypt(key, ciphertext, decrypting=True)


# --------------------------------------------------------------------------------------------
# Point multiplication on the SM2 curve (EC_POINT_mul: the constant-time ladder)
# --------------------------------------------------------------------------------------------


def multiply(scalar: int, point: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """Return ``scalar``·``point`` (``point`` ``None``: the generator G) in affine
    coordinates, or ``None`` for the point at infinity.

    ``EC_POINT_mul`` with a single scalar, either ``k·G`` or ``k·P``, always takes OpenSSL's
    Montgomery ladder (``ossl_ec_scalar_mul_ladder``), which is what it is for: key
    generation's public point and the pairwise key agreement's ``d·P``. The scalar's BIGNUM
    is flagged ``BN_FLG_CONSTTIME`` and cleared when freed. ``point`` must be on the curve
    (``EC_POINT_set_affine_coordinates`` checks again and raises :class:`CryptoError`).
    """
    lib = library()
    cdll = lib.cdll
    group = lib.sm2_group
    with _error_mark(lib):
        bn_ctx = cdll.BN_CTX_new()
        k = cdll.BN_secure_new()
        x = cdll.BN_new()
        y = cdll.BN_new()
        result = cdll.EC_POINT_new(group)
        base = cdll.EC_POINT_new(group) if point is not None else None
        secret = ctypes.create_string_buffer(scalar.to_bytes(32, "big"), 32)
        try:
            if not (bn_ctx and k and x and y and result and (point is None or base)):
                raise CryptoError(f"OpenSSL allocation failed: {lib.error_text()}")
            if not cdll.BN_bin2bn(secret, 32, k):
                raise CryptoError(f"OpenSSL BN_bin2bn failed: {lib.error_text()}")
            cdll.BN_set_flags(k, _BN_FLG_CONSTTIME)
            if point is None:
                ok = cdll.EC_POINT_mul(group, result, k, None, None, bn_ctx)
            else:
                for value, bn in ((point[0], x), (point[1], y)):
                    if not cdll.BN_bin2bn(value.to_bytes(32, "big"), 32, bn):
                        raise CryptoError(f"OpenSSL BN_bin2bn failed: {lib.error_text()}")
                if cdll.EC_POINT_set_affine_coordinates(group, base, x, y, bn_ctx) != 1:
                    raise CryptoError(f"point not accepted by OpenSSL: {lib.error_text()}")
                ok = cdll.EC_POINT_mul(group, result, None, base, k, bn_ctx)
            if ok != 1:
                raise CryptoError(f"OpenSSL EC_POINT_mul failed: {lib.error_text()}")
            if cdll.EC_POINT_is_at_infinity(group, result) == 1:
                return None
            if cdll.EC_POINT_get_affine_coordinates(group, result, x, y, bn_ctx) != 1:
                raise CryptoError(f"OpenSSL point conversion failed: {lib.error_text()}")
            coordinates = ctypes.create_string_buffer(64)
            if (
                cdll.BN_bn2binpad(x, coordinates, 32) != 32
                or cdll.BN_bn2binpad(y, ctypes.byref(coordinates, 32), 32) != 32
            ):
                raise CryptoError("OpenSSL BN_bn2binpad failed")
            raw = coordinates.raw
            return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        finally:
            ctypes.memset(secret, 0, 32)
            cdll.EC_POINT_clear_free(result)
            cdll.EC_POINT_clear_free(base)
            cdll.BN_clear_free(k)
            cdll.BN_clear_free(x)
            cdll.BN_clear_free(y)
            cdll.BN_CTX_free(bn_ctx)
