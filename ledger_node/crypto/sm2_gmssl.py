"""SM2 in pure Python on ``gmssl``'s point arithmetic: the fallback and the cross-check.

Two jobs only, since the default backend is OpenSSL's (:mod:`ledger_node.crypto.libcrypto`):

* the explicit fallback, ``JL_SM2_BACKEND=gmssl``, or automatic where the libcrypto that
  Python uses has no SM2 (with a :class:`~ledger_node.crypto.gmcrypto.NotConstantTimeWarning`);
* an independent implementation the tests hold OpenSSL against (vectors with fixed nonces,
  random round trips between the two backends in both directions).

**Not constant-time**: Python integers, gmssl's double-and-add and the comb below all branch
on and index by secret scalar bits. Fine for a signing service alone on its host; not for a
process that shares a machine with code an attacker controls.

gmssl has traps, avoided here: its ``CryptSM2`` constructor runs ``public_key.lstrip("04")``
(which eats any leading ``0``/``4`` hex digits of *x*), its nonces come from :mod:`random`,
its decryption never checks C3 and its verification skips range checks and mishandles
``P1 == P2``. So no key is ever handed to ``CryptSM2`` (one instance built from empty strings
is a point-arithmetic engine), every nonce comes from :mod:`secrets`, SM3 is OpenSSL's and the
GB/T 32918 steps (ranges, t ≠ 0, C3 compared in constant time, infinity) are done here.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from typing import Final

from gmssl.sm2 import CryptSM2

from ledger_node.crypto import der
from ledger_node.crypto.hashes import sm3
from ledger_node.crypto.sm2_curve import SM2_N, SM2_P, G, Point

# One gmssl object used purely as a point-arithmetic engine. It is built with empty key
# strings so that its constructor's ``lstrip("04")`` has nothing to corrupt; points are always
# passed explicitly as 128-hex-digit strings.
_ENGINE: Final = CryptSM2(private_key="", public_key="")



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
    return _build_comb(G)


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
    return _comb_mul(_base_table(), k, G)


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
# GB/T 32918 steps on top of the point arithmetic
# --------------------------------------------------------------------------------------------


def public_point(d: int) -> Point:
    """Return d·G for a private scalar d in [1, n−2] (comb; branches on d's bits)."""
    point = _mul_base(d)
    assert point is not None  # d in [1, n-1]
    return point


def shared_point(d: int, peer: Point) -> Point | None:
    """Return d·P (double-and-add; branches on d's bits), ``None`` for infinity."""
    return _mul_generic(d, peer)


def sign_digest(d: int, e: int) -> tuple[int, int]:
    """Return (r, s), GB/T 32918.2 steps A3-A6 with a nonce k from :mod:`secrets`."""
    while True:
        rs = _sign_with_k(d, e, secrets.randbelow(SM2_N - 1) + 1)
        if rs is not None:
            return rs


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


def verify_digest(public: Point, e: int, r: int, s: int) -> bool:
    """Whether (r, s), both already in [1, n−1], signs e for ``public`` (GB/T 32918.2 B5-B7)."""
    t = (r + s) % SM2_N
    if t == 0:
        return False
    point = _add(_mul_base(s), _mul_key(t, public))
    if point is None:
        return False
    expected = (e + point[0]) % SM2_N
    return hmac.compare_digest(expected.to_bytes(32, "big"), r.to_bytes(32, "big"))


def _kdf(z: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 1
    while len(out) < length:
        out += sm3(z + counter.to_bytes(4, "big"))
        counter += 1
    return bytes(out[:length])


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def encrypt(public: Point, msg: bytes) -> bytes:
    """Return the DER C1C3C2 SM2 encryption of a non-empty ``msg`` (k from :mod:`secrets`)."""
    while True:
        sealed = _encrypt_with_k(public, msg, secrets.randbelow(SM2_N - 1) + 1)
        if sealed is not None:
            return sealed


def _encrypt_with_k(public: Point, msg: bytes, k: int) -> bytes | None:
    """GB/T 32918.4 steps A2-A8 for a given k; ``None`` means "draw another k"."""
    c1 = _mul_base(k)
    shared = _mul_key(k, public)
    assert c1 is not None and shared is not None  # k in [1, n-1], key of order n
    x2 = shared[0].to_bytes(32, "big")
    y2 = shared[1].to_bytes(32, "big")
    t = _kdf(x2 + y2, len(msg))
    if not any(t):
        return None
    c2 = _xor(msg, t)
    c3 = sm3(x2 + msg + y2)
    return der.sequence(der.integer(c1[0]), der.integer(c1[1]), der.octets(c3), der.octets(c2))


def decrypt(d: int, c1: Point, c3: bytes, c2: bytes) -> bytes | None:
    """GB/T 32918.4 steps B3-B7 on a parsed ciphertext (C1 on the curve, C3 32 bytes, C2 not
    empty); ``None`` if it does not decrypt (C3 mismatch, compared in constant time)."""
    shared = _mul_generic(d, c1)
    if shared is None:
        return None
    x2 = shared[0].to_bytes(32, "big")
    y2 = shared[1].to_bytes(32, "big")
    t = _kdf(x2 + y2, len(c2))
    if not any(t):
        return None
    msg = _xor(c2, t)
    if not hmac.compare_digest(sm3(x2 + msg + y2), c3):
        return None
    return msg
