"""Member authentication with each member's own SM2 key (no shared secret on the server).

Two mechanisms, both checked against the membership the chain holds:

- **Batch submissions** carry the platform's SM2 signature over
  ``batch_digest(log_id, leaves)``; :func:`authenticate_batch` checks it and returns the
  :class:`BatchEvidence` the node stores (non-repudiation); a node that verifies the
  signature itself, with the digest it computes once, checks only the signer's right with
  :func:`authorize_batch_signer`. A replayed batch is harmless because intake is
  idempotent per leaf.
- **Other member-only requests** carry four headers, ``X-JL-Member`` (chain address),
  ``X-JL-Timestamp`` (Unix milliseconds), ``X-JL-Nonce`` (random) and ``X-JL-Signature``
  (hex DER SM2 over :func:`request_payload`). :class:`RequestAuthenticator` rejects clock
  skew beyond a window, nonces already seen within it, unknown, removed and mis-roled members.

Membership is read through a lookup function: the caller's one cache of the chain's records
(:class:`~ledger_node.chain.member_cache.StaleWhileRevalidateMembers`, a few seconds), so a
removal on chain takes effect quickly.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ledger_node.chain.adapter import Member, Role
from ledger_node.crypto import gmcrypto
from ledger_node.crypto.encoding import encode_parts
from ledger_node.crypto.hashes import sm3
from ledger_node.errors import Forbidden, InvalidKey, InvalidSignature, Unauthenticated
from ledger_node.log.leaf import Leaf, batch_digest

HEADER_MEMBER: Final = "X-JL-Member"
HEADER_TIMESTAMP: Final = "X-JL-Timestamp"
HEADER_NONCE: Final = "X-JL-Nonce"
HEADER_SIGNATURE: Final = "X-JL-Signature"
AUTH_HEADERS: Final = (HEADER_MEMBER, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)

DEFAULT_SKEW_MS: Final = 30_000
DEFAULT_NONCE_CAPACITY: Final = 100_000

_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_NONCE: Final = re.compile(r"[A-Za-z0-9_-]{16,128}")
_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2}){1,256}")


MemberLookup = Callable[[str], Member]
"""Returns the chain's record of an address (role NONE and inactive when never admitted)."""


def regulator_node_audience(name: str) -> bytes:
    """The audience of requests signed for the regulator node ``name`` (as a platform
    node's log id is for its node): ``SM3(tag("regulator-node") ‖ lp(name))``, so a request
    signed for one node cannot be replayed to another. Here, below the SDK and the node,
    so both compute it the same way."""
    return sm3(encode_parts("regulator-node", name.encode("utf-8")))


def request_payload(
    method: str,
    target: str,
    member: str,
    timestamp_ms: int,
    nonce: str,
    body: bytes,
    audience: bytes,
) -> bytes:
    """Return the canonical bytes a member signs for one HTTP request.

    ``encode_parts("http-request", METHOD, path+query, member, timestamp, nonce, SM3(body),
    audience)`` with the method upper-cased, the member address lower-cased and the
    timestamp in decimal. ``audience`` is the log id of the node the request is for, so a
    request signed for one member's node cannot be replayed to another's.
    """
    return encode_parts(
        "http-request",
        method.upper().encode("ascii"),
        target.encode("utf-8"),
        member.lower().encode("ascii"),
        str(timestamp_ms).encode("ascii"),
        nonce.encode("ascii"),
        sm3(body),
        audience,
    )


def sign_request(
    key: gmcrypto.SM2PrivateKey,
    member: str,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    audience: bytes,
    timestamp_ms: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Return the four authentication headers for a request signed with ``key``.

    ``target`` is the request's path plus ``?query`` exactly as sent; ``audience`` the log
    id of the node it is sent to. The timestamp defaults to now and the nonce to 16 random
    bytes (URL-safe base64).
    """
    stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    once = secrets.token_urlsafe(16) if nonce is None else nonce
    payload = request_payload(method, target, member, stamp, once, body, audience)
    return {
        HEADER_MEMBER: member,
        HEADER_TIMESTAMP: str(stamp),
        HEADER_NONCE: once,
        HEADER_SIGNATURE: gmcrypto.sign(key, payload).hex(),
    }


@dataclass(frozen=True)
class BatchEvidence:
    """Non-repudiation: the platform's SM2 signature over ``batch_digest(log_id, leaves)``."""

    signer: str  # chain address of the signing platform member
    digest: bytes  # batch_digest(log_id, leaves)
    signature: bytes  # DER SM2


def sign_batch(key: gmcrypto.SM2PrivateKey, log_id: bytes, leaves: Sequence[Leaf]) -> bytes:
    """Return the platform's DER SM2 signature over ``batch_digest(log_id, leaves)``."""
    return gmcrypto.sign(key, batch_digest(log_id, leaves))


class NonceCache:
    """Nonces seen within the skew window, bounded to ``capacity`` entries (thread-safe).

    When the cache is full of unexpired nonces the oldest is evicted and its timestamp
    becomes a low-water mark: requests stamped at or before it are refused, so an evicted
    nonce can never be replayed.
    """

    def __init__(self, capacity: int = DEFAULT_NONCE_CAPACITY) -> None:
        """An empty cache holding at most ``capacity`` nonces."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()  # -> expiry (ms)
        self._stamps: dict[tuple[str, str], int] = {}
        self._low_water_ms = -1

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def remember(self, member: str, nonce: str, timestamp_ms: int, expiry_ms: int,
                 now_ms: int) -> None:
        """Record ``nonce`` for ``member``; raise :class:`Unauthenticated` if it is a replay."""
        key = (member.lower(), nonce)
        with self._lock:
            while self._seen:  # expired entries first (insertion order ≈ expiry order)
                oldest, expiry = next(iter(self._seen.items()))
                if expiry > now_ms:
                    break
                del self._seen[oldest]
                self._stamps.pop(oldest, None)
            if key in self._seen:
                raise Unauthenticated(f"nonce {nonce!r} was already used: request replayed")
            if timestamp_ms <= self._low_water_ms:
                raise Unauthenticated(
                    "request timestamp is older than the replay cache can vouch for; "
                    "retry with a fresh timestamp and nonce"
                )
            while len(self._seen) >= self._capacity:
                evicted, _ = self._seen.popitem(last=False)
                self._low_water_ms = max(self._low_water_ms, self._stamps.pop(evicted, -1))
            self._seen[key] = expiry_ms
            self._stamps[key] = timestamp_ms


@dataclass(frozen=True)
class AuthenticatedMember:
    """Who made a request, as the chain knows them at the time of the request."""

    address: str
    role: Role
    name: str


class RequestAuthenticator:
    """Checks SM2-signed HTTP requests (the ``X-JL-*`` headers) against chain membership."""

    def __init__(
        self,
        lookup: MemberLookup,
        *,
        audience: bytes,
        skew_ms: int = DEFAULT_SKEW_MS,
        nonce_capacity: int = DEFAULT_NONCE_CAPACITY,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        """Authenticate against ``lookup``: the caller's membership cache
        (:class:`~ledger_node.chain.member_cache.StaleWhileRevalidateMembers`), which this
        class does not wrap in a second one.

        Only requests signed for ``audience`` (this node's log id) are accepted. Requests
        stamped more than ``skew_ms`` away from ``clock_ms()`` are refused; nonces are
        remembered for twice that window, at most ``nonce_capacity`` of them.
        """
        self._audience = audience
        self.member: MemberLookup = lookup
        """The chain's record of an address, through the caller's cache."""
        self.nonces = NonceCache(nonce_capacity)
        self._skew_ms = skew_ms
        self._clock_ms = clock_ms

    def authenticate(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        roles: Collection[Role] | None = None,
    ) -> AuthenticatedMember:
        """Return the active member who signed this request.

        ``headers`` is looked up case-insensitively by the caller's mapping (Starlette's is).
        Raises :class:`Unauthenticated` for missing or malformed headers, a timestamp outside
        the window, an unknown member, a signature that does not verify or a replayed nonce;
        :class:`Forbidden` for a removed member or one whose role is not in ``roles``.
        """
        missing = [name for name in AUTH_HEADERS if not headers.get(name)]
        if missing:
            raise Unauthenticated(f"missing authentication header(s): {', '.join(missing)}")
        member = headers[HEADER_MEMBER]
        stamp_text = headers[HEADER_TIMESTAMP]
        nonce = headers[HEADER_NONCE]
        signature_hex = headers[HEADER_SIGNATURE]
        if not _ADDRESS.fullmatch(member):
            raise Unauthenticated(f"{HEADER_MEMBER} must be a 0x-prefixed 20-byte address")
        if not stamp_text.isascii() or not stamp_text.isdigit() or len(stamp_text) > 15:
            raise Unauthenticated(f"{HEADER_TIMESTAMP} must be Unix time in milliseconds")
        if not _NONCE.fullmatch(nonce):
            raise Unauthenticated(f"{HEADER_NONCE} must be 16..128 characters of [A-Za-z0-9_-]")
        if not _HEX.fullmatch(signature_hex):
            raise Unauthenticated(f"{HEADER_SIGNATURE} must be a hex DER signature")
        stamp = int(stamp_text)
        now = self._clock_ms()
        if abs(now - stamp) > self._skew_ms:
            raise Unauthenticated(
                f"request timestamp is {abs(now - stamp)} ms from the server clock "
                f"(allowed: {self._skew_ms} ms)"
            )
        record = self.member(member)
        if record.role is Role.NONE:
            raise Unauthenticated(f"{member} is not a member of the consortium")
        try:
            public_key = gmcrypto.SM2PublicKey.from_raw(record.public_key)
            payload = request_payload(method, target, member, stamp, nonce, body, self._audience)
            gmcrypto.verify(public_key, payload, bytes.fromhex(signature_hex))
        except (InvalidSignature, InvalidKey):
            raise Unauthenticated(
                f"request signature does not verify with {member}'s SM2 key"
            ) from None
        self.nonces.remember(member, nonce, stamp, stamp + 2 * self._skew_ms, now)
        if not record.active:
            raise Forbidden(f"{member} has been removed from the consortium")
        if roles is not None and record.role not in roles:
            allowed = ", ".join(sorted(r.name.lower() for r in roles))
            raise Forbidden(
                f"{member} is a {record.role.name.lower()}; only {allowed} may call this"
            )
        return AuthenticatedMember(record.address, record.role, record.name)


def authorize_batch_signer(
    members: MemberLookup, *, platform_address: str, log_id: bytes, signer: str
) -> Member:
    """Check that ``signer`` may submit to ``log_id`` (the signature is left to the caller,
    which has the batch digest); return its chain record.

    Raises :class:`Unauthenticated` for an unknown signer; :class:`Forbidden` for a removed
    member, a member that is not a platform, or a platform other than the log's owner
    ``platform_address``.
    """
    record = members(signer)
    if record.role is Role.NONE:
        raise Unauthenticated(f"signer {signer} is not a member of the consortium")
    _check_batch_signer(record, platform_address=platform_address, log_id=log_id, signer=signer)
    return record


def authenticate_batch(
    members: MemberLookup,
    *,
    platform_address: str,
    log_id: bytes,
    leaves: Sequence[Leaf],
    signer: str,
    signature: bytes,
) -> BatchEvidence:
    """Check a submission's batch signature and the signer's right to submit to ``log_id``;
    return the evidence to store with the batch.

    Raises :class:`Unauthenticated` for an unknown signer or a signature that does not
    verify with the signer's registered key, and what :func:`authorize_batch_signer` raises.
    """
    record = members(signer)
    if record.role is Role.NONE:
        raise Unauthenticated(f"signer {signer} is not a member of the consortium")
    digest = batch_digest(log_id, leaves)
    _verify_batch_signature(record, digest, signature)
    _check_batch_signer(record, platform_address=platform_address, log_id=log_id, signer=signer)
    return BatchEvidence(signer=record.address, digest=digest, signature=signature)


def _check_batch_signer(record: Member, *, platform_address: str, log_id: bytes,
                        signer: str) -> None:
    if not record.active:
        raise Forbidden(f"signer {signer} has been removed from the consortium")
    if record.role is not Role.PLATFORM:
        raise Forbidden(f"signer {signer} is a {record.role.name.lower()}; only platforms submit")
    if record.address.lower() != platform_address.lower():
        raise Forbidden(
            f"signer {signer} ({record.name}) may submit only to its own log, "
            f"not to {log_id.hex()}"
        )


def _verify_batch_signature(record: Member, digest: bytes, signature: bytes) -> None:
    try:
        public_key = gmcrypto.SM2PublicKey.from_raw(record.public_key)
        gmcrypto.verify(public_key, digest, signature)
    except (InvalidSignature, InvalidKey):
        raise Unauthenticated(
            f"batch signature does not verify with {record.address}'s registered SM2 key"
        ) from None
