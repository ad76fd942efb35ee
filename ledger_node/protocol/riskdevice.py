"""Risk-device list primitives: fingerprints, reason codes, list-key rings and entries.

Pure logic, no chain (the synced list is :mod:`ledger_node.protocol.risklist`; docs/risklist.md):

- a device **fingerprint** is ``KIND:VALUE`` in a normal form (:func:`normalise_fingerprint`);
- an **entry** is ``HMAC-SM3(epoch key, tag("risk-device") || length || fingerprint)``, 32
  bytes, so only holders of the list key can tell which device an entry lists;
- the **key ring** of epoch e holds the random 32-byte keys of epochs 1..e; a regulator
  SM2-encrypts it to each key holder, bound to the chain, the contract and the epoch.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from ledger_node.crypto import gmcrypto
from ledger_node.crypto.encoding import domain_tag, length_prefixed
from ledger_node.errors import (
    DecryptionFailed,
    InvalidFingerprint,
    InvalidListKey,
    UnknownRiskReason,
)

LIST_KEY_SIZE: Final = 32
ENTRY_SIZE: Final = 32
MAX_FINGERPRINT_CHARS: Final = 160
"""Longest accepted fingerprint text, surrounding whitespace included."""

ENTRY_TAG: Final = domain_tag("risk-device")
_RING_TAG: Final = domain_tag("risk-list-keys")
_SM3_BLOCK: Final = 64


class RiskReason(IntEnum):
    """Why a device is listed; the codes are the contract's (1..6, 0 is not a code)."""

    FRAUD = 1
    """Used in fraud: telecom or online scams, fake merchants (电信网络诈骗)."""
    ACCOUNT_TAKEOVER = 2
    """Used to take over other people's accounts (盗号)."""
    MONEY_MULE = 3
    """Moves money for others: mule accounts, score-running (跑分, 资金过渡)."""
    GAMBLING = 4
    """Used for illegal gambling payments (涉赌)."""
    DEVICE_FARM = 5
    """A device farm, emulator or tampered device (群控, 模拟器, 改机)."""
    STOLEN_DEVICE = 6
    """Reported stolen or lost (被盗设备)."""

    @property
    def label(self) -> str:
        """The code's name as used in JSON and on the command line, e.g. ``money_mule``."""
        return self.name.lower()


_REASON_NAMES: Final = ", ".join(f"{r.value} {r.label}" for r in RiskReason)


def parse_reason(value: object) -> RiskReason:
    """The reason for a code (``3``), a name (``"money_mule"``, ``"MONEY-MULE"``) or a
    :class:`RiskReason`; :class:`UnknownRiskReason` for anything else (0, 7, booleans)."""
    if isinstance(value, RiskReason):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return RiskReason(value)
        except ValueError:
            raise UnknownRiskReason(value, _REASON_NAMES) from None
    if isinstance(value, str):
        name = value.strip().upper().replace("-", "_")
        if name.isascii() and name.isdigit() and int(name) in RiskReason._value2member_map_:
            return RiskReason(int(name))
        if name in RiskReason.__members__:
            return RiskReason[name]
    raise UnknownRiskReason(value, _REASON_NAMES)


# ---------------------------------------------------------------------- fingerprints

_DIGITS_15: Final = re.compile(r"[0-9]{15}")
_HEX_14: Final = re.compile(r"[0-9a-f]{14}")
_HEX_1_16: Final = re.compile(r"[0-9a-f]{1,16}")
_UUID: Final = re.compile(r"([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?"
                          r"([0-9a-f]{12})")
_OAID: Final = re.compile(r"[0-9a-f-]{1,64}")
_DEVICE_ID: Final = re.compile(r"[\x21-\x7e]{1,128}")
_PLACEHOLDER: Final = re.compile(r"[0-]*")
_IMEI_SEPARATORS: Final = str.maketrans("", "", " -/")


def _imei(value: str) -> str:
    digits = value.translate(_IMEI_SEPARATORS)
    if not _DIGITS_15.fullmatch(digits):
        raise InvalidFingerprint("an imei is 15 digits (spaces, '-' and '/' are ignored)")
    return digits


def _meid(value: str) -> str:
    digits = value.replace(" ", "").replace("-", "")
    if not _HEX_14.fullmatch(digits):
        raise InvalidFingerprint("a meid is 14 hex digits")
    return digits


def _android_id(value: str) -> str:
    if not _HEX_1_16.fullmatch(value):
        raise InvalidFingerprint("an android_id is 1 to 16 hex digits (a 64-bit number)")
    return value.rjust(16, "0")


def _idfv(value: str) -> str:
    match = _UUID.fullmatch(value)
    if match is None:
        raise InvalidFingerprint("an idfv is a UUID (8-4-4-4-12 hex digits)")
    return "-".join(match.groups())


def _oaid(value: str) -> str:
    if not _OAID.fullmatch(value):
        raise InvalidFingerprint("an oaid is 1 to 64 characters of hex digits and '-'")
    return value


def _device_id(value: str) -> str:
    if not _DEVICE_ID.fullmatch(value):
        raise InvalidFingerprint("a device_id is 1 to 128 printable ASCII characters, no spaces")
    return value


FINGERPRINT_KINDS: Final[dict[str, Callable[[str], str]]] = {
    "imei": _imei,
    "meid": _meid,
    "android_id": _android_id,
    "idfv": _idfv,
    "oaid": _oaid,
    "device_id": _device_id,
}
"""Accepted kinds and their value rules (each gets the trimmed, lower-cased value)."""

_KIND_NAMES: Final = ", ".join(FINGERPRINT_KINDS)


def normalise_fingerprint(text: object) -> str:
    """The normal form ``kind:value`` of a fingerprint such as ``" IMEI:4901 5420 3237 518"``.

    Surrounding whitespace is trimmed, everything is ASCII-lower-cased, IMEI/MEID separators
    dropped, android ids zero-padded to 16 digits, UUIDs hyphenated. Raises
    :class:`InvalidFingerprint` for non-strings, non-ASCII, too long text, a missing or
    unknown kind, a value breaking its kind's rule, and placeholders made only of zeros and
    hyphens (unavailable ids read as zeros; listing one would list every such device).
    """
    if not isinstance(text, str):
        raise InvalidFingerprint(f"must be a string, not {type(text).__name__}")
    if len(text) > MAX_FINGERPRINT_CHARS:
        raise InvalidFingerprint(f"longer than {MAX_FINGERPRINT_CHARS} characters")
    if not text.isascii():
        raise InvalidFingerprint("must be ASCII")
    kind, colon, value = text.lower().partition(":")
    kind, value = kind.strip(), value.strip()
    if not colon:
        raise InvalidFingerprint(f"must be KIND:VALUE with KIND one of {_KIND_NAMES}")
    rule = FINGERPRINT_KINDS.get(kind)
    if rule is None:
        raise InvalidFingerprint(f"unknown kind {kind[:20]!r}; expected one of {_KIND_NAMES}")
    normal = rule(value)
    if _PLACEHOLDER.fullmatch(normal):
        raise InvalidFingerprint(f"{kind} {normal!r} is a placeholder, not a device id")
    return f"{kind}:{normal}"


# ---------------------------------------------------------------------- entries


EntryFunction = Callable[[str], bytes]
"""Maps a *normalised* fingerprint to its 32-byte entry under one list key."""


def entry_input(normalised: str) -> bytes:
    """The HMAC input for a normalised fingerprint: the domain tag, then the length-prefixed
    fingerprint (``encode_parts("risk-device", fingerprint)``)."""
    return ENTRY_TAG + length_prefixed(normalised.encode("ascii"))


def entry_function(key: bytes) -> EntryFunction:
    """``HMAC-SM3(key, entry_input(fp))`` with the key and tag absorbed once (checks hash
    many fingerprints under few keys). Uses hashlib's OpenSSL SM3 contexts when available
    (fastest to copy), else ``cryptography``'s HMAC; tests check both against each other."""
    if len(key) != LIST_KEY_SIZE:
        raise InvalidListKey(f"a list key is {LIST_KEY_SIZE} bytes, not {len(key)}")
    try:
        inner = hashlib.new("sm3", bytes(b ^ 0x36 for b in key.ljust(_SM3_BLOCK, b"\0")))
        outer = hashlib.new("sm3", bytes(b ^ 0x5C for b in key.ljust(_SM3_BLOCK, b"\0")))
    except ValueError:  # this OpenSSL build offers no SM3 to hashlib
        return _entry_function_cryptography(key)
    inner.update(ENTRY_TAG)
    pack = struct.Struct(">I").pack

    def entry(normalised: str) -> bytes:
        data = normalised.encode("ascii")
        i = inner.copy()
        i.update(pack(len(data)))
        i.update(data)
        o = outer.copy()
        o.update(i.digest())
        return o.digest()

    return entry


def _entry_function_cryptography(key: bytes) -> EntryFunction:
    base = crypto_hmac.HMAC(key, hashes.SM3())
    base.update(ENTRY_TAG)

    def entry(normalised: str) -> bytes:
        context = base.copy()
        context.update(length_prefixed(normalised.encode("ascii")))
        return context.finalize()

    return entry


def risk_entry(key: bytes, fingerprint: str) -> bytes:
    """The entry of ``fingerprint`` (normalised first) under list key ``key``."""
    return entry_function(key)(normalise_fingerprint(fingerprint))


# ---------------------------------------------------------------------- key rings


@dataclass(frozen=True)
class ListKeyRing:
    """The list keys of epochs 1..``epoch`` (``keys[0]`` is epoch 1's)."""

    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if any(len(k) != LIST_KEY_SIZE for k in self.keys):
            raise InvalidListKey(f"every list key is {LIST_KEY_SIZE} bytes")

    def __repr__(self) -> str:  # never print keys
        return f"ListKeyRing(epoch={self.epoch})"

    @property
    def epoch(self) -> int:
        """The newest epoch this ring has the key of (0 for an empty ring)."""
        return len(self.keys)

    def key(self, epoch: int) -> bytes:
        """The key of ``epoch``; :class:`KeyError` outside 1..``self.epoch``."""
        if not 1 <= epoch <= self.epoch:
            raise KeyError(epoch)
        return self.keys[epoch - 1]

    def extended(self) -> ListKeyRing:
        """This ring plus a fresh random key for the next epoch."""
        return ListKeyRing((*self.keys, secrets.token_bytes(LIST_KEY_SIZE)))

    def extends(self, older: ListKeyRing) -> bool:
        """Whether this ring keeps every key of ``older`` unchanged."""
        return self.keys[: older.epoch] == older.keys


def _ring_header(chain_id: int, contract: str, epoch: int) -> bytes:
    return (_RING_TAG + length_prefixed(chain_id.to_bytes(8, "big"))
            + length_prefixed(bytes.fromhex(contract.removeprefix("0x")))
            + length_prefixed(epoch.to_bytes(4, "big")))


def ring_plaintext(ring: ListKeyRing, chain_id: int, contract: str) -> bytes:
    """What is SM2-encrypted: tag, chain id, contract address, epoch, then the keys."""
    return _ring_header(chain_id, contract, ring.epoch) + length_prefixed(b"".join(ring.keys))


def seal_ring(public_key: gmcrypto.SM2PublicKey, ring: ListKeyRing, chain_id: int,
              contract: str) -> bytes:
    """The DER SM2 ciphertext of ``ring`` for one key holder (stored with ``setListKeys``)."""
    if ring.epoch == 0:
        raise InvalidListKey("cannot seal an empty key ring")
    return gmcrypto.encrypt(public_key, ring_plaintext(ring, chain_id, contract))


def open_ring(private_keys: Sequence[gmcrypto.SM2PrivateKey], ciphertext: bytes, *,
              chain_id: int, contract: str, epoch: int) -> ListKeyRing:
    """Decrypt a ring delivered for ``epoch`` on this chain and contract with the first of
    ``private_keys`` that opens it (a member keeps retired keys to read old deliveries).

    Raises :class:`InvalidListKey` if none decrypts it or it is not a ring of ``epoch`` for
    this deployment.
    """
    for key in private_keys:
        try:
            plaintext = gmcrypto.decrypt(key, ciphertext)
        except DecryptionFailed:
            continue
        break
    else:
        raise InvalidListKey(f"the key ring of epoch {epoch} does not decrypt with this "
                             "member's SM2 key(s)")
    header = _ring_header(chain_id, contract, epoch)
    body = plaintext[len(header):]
    size = LIST_KEY_SIZE * epoch
    if not plaintext.startswith(header) or body[:4] != size.to_bytes(4, "big") \
            or len(body) != 4 + size:
        raise InvalidListKey(f"the delivered key ring is not a ring of epoch {epoch} for "
                             f"contract {contract} on chain {chain_id}")
    blob = body[4:]
    return ListKeyRing(tuple(blob[i:i + LIST_KEY_SIZE] for i in range(0, size, LIST_KEY_SIZE)))
