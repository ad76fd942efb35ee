"""The two SM2 backends against each other, and the OpenSSL one on its own terms.

* The binding reaches the libcrypto ``_hashlib`` uses, and refuses what it must.
* Cross-checks, both directions: sign with one backend and verify with the other, encrypt
  with one and decrypt with the other, the same public points and key-agreement points;
  GM/T vectors through OpenSSL; OpenSSL's output is in the project's strict DER form.
* No private-key operation runs Python curve arithmetic on the default backend: with every
  gmssl-style function made to raise, key generation, key loading, signing, decryption and
  the pairwise key agreement still work (and on the gmssl backend they do not: the control).
* Thread safety, the OpenSSL error queue, pickling, and no memory growth.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading
import warnings
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, cast

import pytest
from gmssl.sm2 import CryptSM2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger_node.crypto import der, libcrypto, sm2_gmssl
from ledger_node.crypto import gmcrypto as gm
from ledger_node.errors import CryptoBackendUnavailable, DecryptionFailed, InvalidSignature
from ledger_node.protocol.pairwise import pairwise_key

VECTORS = Path(__file__).parent / "vectors" / "crypto"
STANDARD: dict[str, Any] = json.loads((VECTORS / "standard.json").read_text())
N = gm.SM2_N
SOME = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.integers(min_value=1, max_value=N - 2)
messages = st.binary(max_size=300)
user_ids = st.one_of(st.just(gm.DEFAULT_USER_ID), st.binary(max_size=40))


def on(backend: str) -> AbstractContextManager[None]:
    """Run a block on one SM2 backend ("openssl" or "gmssl")."""
    return gm.sm2_backend_override(cast(gm.Sm2Backend, backend))


# ------------------------------------------------------------------------------------------
# The binding
# ------------------------------------------------------------------------------------------


def test_default_backend_is_openssl_3_with_sm2() -> None:
    assert gm.sm2_backend() == "openssl"
    lib = libcrypto.library()
    assert lib.version_number >= libcrypto.MIN_VERSION
    assert gm.crypto_backends() == {"sm2": f"openssl {lib.version}"}


def test_binds_the_libcrypto_hashlib_uses() -> None:
    import _hashlib

    lib = libcrypto.library()
    ours = ctypes.cast(lib.cdll.OpenSSL_version_num, ctypes.c_void_p).value
    theirs = ctypes.cast(ctypes.CDLL(_hashlib.__file__).OpenSSL_version_num, ctypes.c_void_p)
    assert ours == theirs.value  # the very same loaded object, not a second OpenSSL
    if Path("/proc/self/maps").exists():
        # Linux: binding loads exactly that file and no other libcrypto. Checked in a fresh
        # interpreter, since this one may hold other packages' own copies (psycopg-binary
        # ships one under another name for libpq, which a regulator test may have loaded).
        probe = (
            "from pathlib import Path\n"
            "import json, os\n"
            "from ledger_node.crypto import libcrypto\n"
            "lib = libcrypto.library()\n"
            "mapped = {l.split()[-1] for l in Path('/proc/self/maps').read_text().splitlines()"
            " if '/libcrypto' in l}\n"
            "print(json.dumps([sorted(os.path.realpath(p) for p in mapped),"
            " os.path.realpath(lib.path)]))\n")
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              check=True, timeout=120)
        mapped, path = json.loads(done.stdout)
        assert mapped == [path] and path == os.path.realpath(lib.path)


@pytest.mark.parametrize(("number", "text", "refused"), [
    (0x3000_0130, "OpenSSL 3.0.19 27 Jan 2026", False),
    (0x3050_0040, "OpenSSL 3.5.4 30 Sep 2025", False),
    (0x1010_114F, "OpenSSL 1.1.1t  7 Feb 2023", True),
    (0x2000_0000, "LibreSSL 3.8.2", True),
])
def test_version_refusals(number: int, text: str, refused: bool) -> None:
    assert (libcrypto.version_refusal(number, text) is not None) is refused


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert gm._choose(None).name == "openssl"
        assert gm._choose("auto").name == "openssl"
        assert gm._choose(" OpenSSL ").name == "openssl"
    assert not caught
    with pytest.warns(gm.NotConstantTimeWarning, match="not constant-time"):
        assert gm._choose("gmssl").name == "gmssl"
    with pytest.raises(CryptoBackendUnavailable, match="expected one of"):
        gm._choose("fast")

    def no_sm2() -> libcrypto.Library:
        raise CryptoBackendUnavailable("OpenSSL 3.0.2 at /x/libcrypto.so.3 has no SM2 keys")

    monkeypatch.setattr(libcrypto, "library", no_sm2)
    with pytest.warns(gm.NotConstantTimeWarning, match="has no SM2 keys"):
        assert gm._choose(None).description == "gmssl (pure Python, not constant-time)"
    with pytest.raises(CryptoBackendUnavailable, match="has no SM2 keys"):
        gm._choose("openssl")


def test_a_wrong_answer_from_openssl_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libcrypto, "verify", lambda *args: False)
    with pytest.raises(CryptoBackendUnavailable, match="Annex A"):
        gm._choose("openssl")
    with pytest.warns(gm.NotConstantTimeWarning):
        assert gm._choose("auto").name == "gmssl"


@pytest.mark.parametrize(("value", "shown"), [
    ("", "openssl 3."), ("openssl", "openssl 3."), ("gmssl", "gmssl (pure Python"),
])
def test_environment_selects_the_backend(value: str, shown: str) -> None:
    code = "from ledger_node.crypto import gmcrypto as g; print(g.crypto_backends()['sm2'])"
    env = {**os.environ, gm.BACKEND_ENV: value}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.startswith(shown)
    assert ("NotConstantTimeWarning" in result.stderr) is (value == "gmssl")


def test_environment_with_an_unknown_backend_fails_clearly() -> None:
    code = "from ledger_node.crypto import gmcrypto as g; g.generate_private_key()"
    env = {**os.environ, gm.BACKEND_ENV: "libsodium"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    assert "CryptoBackendUnavailable: JL_SM2_BACKEND='libsodium'" in result.stderr


# ------------------------------------------------------------------------------------------
# Cross-checks between the backends
# ------------------------------------------------------------------------------------------


@SOME
@given(d=scalars)
def test_public_points_agree(d: int) -> None:
    assert libcrypto.multiply(d) == sm2_gmssl.public_point(d)


@SOME
@given(d=scalars, e=scalars)
def test_key_agreement_points_agree(d: int, e: int) -> None:
    peer = sm2_gmssl.public_point(e)
    assert libcrypto.multiply(d, peer) == sm2_gmssl.shared_point(d, peer)
    own = gm.SM2PrivateKey(d)
    other = gm.SM2PrivateKey(e)
    with on("openssl"):
        native = gm.shared_point(own, other.public_key())
    with on("gmssl"):
        python = gm.shared_point(other, own.public_key())
    assert native == python  # d·(e·G) = e·(d·G), one side per backend


def test_edge_scalars() -> None:
    g = (gm.SM2_GX, gm.SM2_GY)
    for k in (1, 2, 15, 16, 255, 2**128, N - 2, N - 1):
        assert libcrypto.multiply(k) == sm2_gmssl._mul_generic(k, g)
        assert libcrypto.multiply(k, g) == sm2_gmssl._mul_generic(k, g)
    assert libcrypto.multiply(N - 1) == (gm.SM2_GX, gm.SM2_P - gm.SM2_GY)  # −G
    assert libcrypto.multiply(N) is None and libcrypto.multiply(0) is None  # infinity


@pytest.mark.parametrize(("signer", "verifier"), [("openssl", "gmssl"), ("gmssl", "openssl")])
@SOME
@given(d=scalars, message=messages, user_id=user_ids)
def test_signatures_cross_verify(signer: str, verifier: str, d: int, message: bytes,
                                 user_id: bytes) -> None:
    key = gm.SM2PrivateKey(d)
    with on(signer):
        signature = gm.sign(key, message, user_id)
    with on(verifier):
        gm.verify(key.public_key(), message, signature, user_id)
        with pytest.raises(InvalidSignature):
            gm.verify(key.public_key(), message + b"\x00", signature, user_id)
        with pytest.raises(InvalidSignature):
            gm.verify(key.public_key(), message, signature, user_id + b"\x00")


@pytest.mark.parametrize(("sender", "receiver"), [("openssl", "gmssl"), ("gmssl", "openssl")])
@SOME
@given(d=scalars, plaintext=st.binary(min_size=1, max_size=300))
def test_ciphertexts_cross_decrypt(sender: str, receiver: str, d: int, plaintext: bytes) -> None:
    key = gm.SM2PrivateKey(d)
    with on(sender):
        ciphertext = gm.encrypt(key.public_key(), plaintext)
    with on(receiver):
        assert gm.decrypt(key, ciphertext) == plaintext
        with pytest.raises(DecryptionFailed):
            gm.decrypt(key, ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]))


def test_longest_user_id_goes_the_prehashed_way() -> None:
    """OpenSSL's EVP_PKEY_CTX_set1_id refuses 8191 bytes; ENTL allows it: both backends do."""
    key = gm.generate_private_key()
    longest = b"u" * gm.MAX_USER_ID
    for signer, verifier in (("openssl", "gmssl"), ("gmssl", "openssl"), ("openssl", "openssl")):
        with on(signer):
            signature = gm.sign(key, b"m", longest)
        with on(verifier):
            gm.verify(key.public_key(), b"m", signature, longest)
            with pytest.raises(InvalidSignature):
                gm.verify(key.public_key(), b"m", signature, longest[:-1] + b"v")
    for backend in gm.SM2_BACKENDS:
        with on(backend), pytest.raises(ValueError):
            gm.sign(key, b"m", longest + b"u")
        with on(backend), pytest.raises(ValueError):
            gm.verify(key.public_key(), b"m", gm.sign(key, b"m"), longest + b"u")


def test_openssl_output_is_in_the_strict_der_form() -> None:
    key = gm.generate_private_key()
    with on("openssl"):
        for size in (1, 16, 127, 128, 200, 1000):
            ciphertext = gm.encrypt(key.public_key(), b"k" * size)
            reader = der.DerReader(ciphertext)
            inner = der.DerReader(reader.read(der.SEQUENCE))
            reader.end()
            x, y = inner.integer(), inner.integer()
            c3, c2 = inner.read(der.OCTET_STRING), inner.read(der.OCTET_STRING)
            inner.end()
            assert len(c3) == 32 and len(c2) == size
            rebuilt = der.sequence(der.integer(x), der.integer(y), der.octets(c3), der.octets(c2))
            assert rebuilt == ciphertext  # byte-compatible with the Python encoder
        for _ in range(50):
            signature = gm.sign(key, b"m")
            assert gm.encode_signature(*gm.decode_signature(signature)) == signature


def test_standard_vectors_through_openssl() -> None:
    sign_vector = STANDARD["sm2_sign"][0]
    d = int(sign_vector["private_key"], 16)
    public = gm.SM2PublicKey.from_raw(bytes.fromhex(sign_vector["public_key_raw"]))
    assert libcrypto.multiply(d) == (public.x, public.y)
    signature = gm.encode_signature(int(sign_vector["r"], 16), int(sign_vector["s"], 16))
    message = bytes.fromhex(sign_vector["message_hex"])
    native = libcrypto.public_key(public.uncompressed)
    assert libcrypto.verify(native, message, signature, bytes.fromhex(sign_vector["user_id_hex"]))
    e = bytes.fromhex(sign_vector["e"])
    assert libcrypto.verify_digest(native, e, signature)
    encrypt_vector = STANDARD["sm2_encrypt"][0]
    pair = libcrypto.key_pair(int(encrypt_vector["private_key"], 16), public.uncompressed)
    plaintext = libcrypto.decrypt(pair, bytes.fromhex(encrypt_vector["ciphertext"]))
    assert plaintext == bytes.fromhex(encrypt_vector["plaintext_hex"])


# ------------------------------------------------------------------------------------------
# No Python curve arithmetic for private-key operations on the default backend
# ------------------------------------------------------------------------------------------

PYTHON_CURVE_FUNCTIONS = (
    "_mul_base", "_mul_generic", "_mul_key", "_comb_mul", "_build_comb", "_add", "_to_affine",
    "public_point", "shared_point", "sign_digest", "_sign_with_k", "verify_digest", "encrypt",
    "_encrypt_with_k", "decrypt",
)
GMSSL_METHODS = ("_kg", "_add_point", "_double_point", "_convert_jacb_to_nor", "sign",
                 "verify", "encrypt", "decrypt")


class PythonCurveUsed(AssertionError):
    pass


@pytest.fixture
def python_curve_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every gmssl-style curve function, ours and gmssl's own, raise when called."""

    def forbidden(name: str) -> Any:
        def raiser(*args: object, **kwargs: object) -> None:
            raise PythonCurveUsed(f"Python curve arithmetic ran: {name}")
        return raiser

    for name in PYTHON_CURVE_FUNCTIONS:
        monkeypatch.setattr(sm2_gmssl, name, forbidden(f"sm2_gmssl.{name}"))
    for name in GMSSL_METHODS:
        monkeypatch.setattr(CryptSM2, name, forbidden(f"CryptSM2.{name}"))


def _every_sm2_operation() -> None:
    """Each operation that uses a private scalar, and the public ones for good measure."""
    key = gm.generate_private_key()  # public point d·G
    loaded = gm.private_key_from_pem(gm.private_key_to_pem(key))  # d·G again, on loading
    assert loaded == key
    signature = gm.sign(key, b"batch digest")
    gm.verify(key.public_key(), b"batch digest", signature)
    gm.sign(key, b"m", b"u" * gm.MAX_USER_ID)  # the pre-hashed path
    ciphertext = gm.encrypt(key.public_key(), b"sixteen byte key")
    assert gm.decrypt(key, ciphertext) == b"sixteen byte key"
    other = gm.SM2PrivateKey(12345)
    one = pairwise_key(key, "0x" + "11" * 20, "0x" + "22" * 20, other.public_key().raw)
    two = pairwise_key(other, "0x" + "22" * 20, "0x" + "11" * 20, key.public_key())
    assert one.secret == two.secret


def test_private_key_operations_never_run_python_curve_code(python_curve_raises: None) -> None:
    with on("openssl"):
        _every_sm2_operation()


def test_the_control_python_backend_does_hit_the_patched_functions(
    python_curve_raises: None,
) -> None:
    with on("gmssl"):
        with pytest.raises(PythonCurveUsed):
            gm.generate_private_key()
    key = gm.generate_private_key()  # on OpenSSL, then each private operation on gmssl
    ciphertext = gm.encrypt(key.public_key(), b"k")
    with on("gmssl"):
        for operation in (
            lambda: gm.sign(key, b"m"),
            lambda: gm.decrypt(key, ciphertext),
            lambda: gm.shared_point(key, gm.SM2PrivateKey(5).public_key()),
        ):
            with pytest.raises(PythonCurveUsed):
                operation()


# ------------------------------------------------------------------------------------------
# Threads, the error queue, copies, memory
# ------------------------------------------------------------------------------------------


def test_threads_share_keys_safely() -> None:
    key = gm.generate_private_key()
    public = gm.SM2PublicKey(key.public_key().x, key.public_key().y)  # no native key yet
    failures: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(40):
                message = bytes([seed, i])
                signature = gm.sign(key, message)
                gm.verify(public, message, signature)
                with pytest.raises(InvalidSignature):
                    gm.verify(public, message + b"!", signature)
                assert gm.decrypt(key, gm.encrypt(public, message)) == message
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_failures_leave_the_openssl_error_queue_empty() -> None:
    lib = libcrypto.library()
    peek = lib.cdll.ERR_peek_error
    peek.restype, peek.argtypes = ctypes.c_ulong, []
    key = gm.generate_private_key()
    signature = gm.sign(key, b"m")
    bad_signature = signature[:-1] + bytes([signature[-1] ^ 1])
    with pytest.raises(InvalidSignature):
        gm.verify(key.public_key(), b"m", bad_signature)
    with pytest.raises(InvalidSignature):
        gm.verify(key.public_key(), b"other", signature)
    ciphertext = gm.encrypt(key.public_key(), b"k")
    with pytest.raises(DecryptionFailed):
        gm.decrypt(key, ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]))
    assert libcrypto.decrypt(key._evp(), b"\x30\x00") is None
    assert peek() == 0
    assert hashlib.new("sm3", b"abc").hexdigest().startswith("66c7f0f4")


def test_keys_pickle_and_copy_without_their_native_handle() -> None:
    key = gm.generate_private_key()
    signature = gm.sign(key, b"m")  # builds and caches the EVP_PKEY
    gm.verify(key.public_key(), b"m", signature)
    for clone in (pickle.loads(pickle.dumps(key)), copy.deepcopy(key), copy.copy(key)):
        assert clone == key
        gm.verify(clone.public_key(), b"m", gm.sign(clone, b"m"))
    assert key._native is not None
    assert pickle.loads(pickle.dumps(key))._native is None
    assert "NativeKey" in repr(key._native) and f"{key.d:x}" not in repr(key)


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")  # pragma: no cover


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_no_memory_growth() -> None:
    """1,500 rounds of every operation. Measured here: ~60 KiB of growth as the code is;
    leaving out any one free adds from ~370 KiB (EVP_MD_CTX) to ~11 MiB (EVP_PKEY_CTX)."""

    def rounds(count: int) -> None:
        for _ in range(count):
            key = gm.generate_private_key()
            public = gm.SM2PublicKey(key.public_key().x, key.public_key().y)
            public._evp()
            signature = gm.sign(key, b"m")
            gm.verify(key.public_key(), b"m", signature)
            with pytest.raises(InvalidSignature):
                gm.verify(key.public_key(), b"n", signature)
            gm.decrypt(key, gm.encrypt(key.public_key(), b"k"))
            gm.shared_point(key, public)

    rounds(300)
    gc.collect()
    before = _rss_kib()
    rounds(1500)
    gc.collect()
    assert _rss_kib() - before < 256
