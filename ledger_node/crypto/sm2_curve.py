"""The SM2 curve (GB/T 32918.5 recommended parameters) and Z_A, shared by both backends.

Public data only: the curve constants, the on-curve check for public points and the user
hash Z_A = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA) of GB/T 32918.2. Pure.
"""

from __future__ import annotations

import functools
from typing import Final

from ledger_node.crypto.hashes import sm3

SM2_P: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
SM2_A: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
SM2_B: Final = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
SM2_N: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
SM2_GX: Final = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
SM2_GY: Final = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

DEFAULT_USER_ID: Final = b"1234567812345678"
MAX_USER_ID: Final = 8191
"""The longest distinguishing ID in bytes: ENTL, its length in bits, is 16 bits."""

Point = tuple[int, int]
"""An affine point (x, y); the point at infinity is represented by ``None`` where allowed."""

G: Final[Point] = (SM2_GX, SM2_GY)


def on_curve(x: int, y: int) -> bool:
    """Whether (x, y), both reduced mod p, satisfies y² = x³ + ax + b."""
    return (
        0 <= x < SM2_P and 0 <= y < SM2_P and (y * y - (x * x * x + SM2_A * x + SM2_B)) % SM2_P == 0
    )


def check_user_id(user_id: bytes) -> None:
    """Raise ``ValueError`` if ``user_id`` is longer than :data:`MAX_USER_ID` bytes."""
    if len(user_id) > MAX_USER_ID:
        raise ValueError("SM2 user ID too long")


_CURVE_BYTES: Final = b"".join(v.to_bytes(32, "big") for v in (SM2_A, SM2_B, SM2_GX, SM2_GY))


@functools.lru_cache(maxsize=1024)
def z(x: int, y: int, user_id: bytes) -> bytes:
    """Return Z_A for the public point (x, y) and ``user_id`` (cached; checked length)."""
    entl = len(user_id) * 8
    return sm3(
        entl.to_bytes(2, "big")
        + user_id
        + _CURVE_BYTES
        + x.to_bytes(32, "big")
        + y.to_bytes(32, "big")
    )


def digest(x: int, y: int, message: bytes, user_id: bytes) -> int:
    """Return e = SM3(Z_A ‖ message) as an integer: the value SM2 signs."""
    return int.from_bytes(sm3(z(x, y, bytes(user_id)) + message), "big")
