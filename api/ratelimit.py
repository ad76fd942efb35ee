"""Per-member limits on the expensive signed endpoints: one token bucket per member.

Reading 10,000 leaves with their escrows, reconciling against another platform's log,
tracing an identity across every platform or building a case file each cost the node far
more than the request costs its sender. Each app keeps one :class:`TokenBuckets` (its
``member_rate_per_s`` and ``member_burst`` settings); the routes that cost that much depend
on :func:`limit_member` *after* authentication, so a bucket is only ever spent by the member
who signed (a forged ``X-JL-Member`` is refused 401 before it could drain another member's
bucket). One bucket per member covers all of an app's expensive routes together. Over the
limit the member gets 429 ``rate-limited`` with ``Retry-After``; the SDK waits and retries.

The table is bounded: members are chain members, but the table never holds more than
``max_members`` buckets (the least recently used goes; a full bucket is no loss).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from fastapi import FastAPI, Request

from api.errors import ProblemException
from ledger_node.http_settings import Settings
from ledger_node.protocol.auth import AuthenticatedMember

MAX_MEMBERS: Final = 10_000


class TokenBuckets:
    """Token buckets keyed by member address (thread-safe: sync dependencies run in threads).

    Each bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a second; a
    request takes one.
    """

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 max_members: int = MAX_MEMBERS) -> None:
        """Buckets of ``burst`` tokens refilled at ``rate`` per second, on ``clock``."""
        if rate <= 0 or burst < 1 or max_members < 1:
            raise ValueError("rate must be positive, burst and max_members at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max = max_members
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Take a token of ``key``'s bucket: 0.0 if there was one, else the seconds until
        there will be (nothing is taken then)."""
        key = key.lower()
        with self._lock:
            now = self._clock()
            tokens, stamp = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            return wait

    def __len__(self) -> int:
        """How many buckets are held."""
        with self._lock:
            return len(self._buckets)


def install_member_limits(app: FastAPI, settings: Settings) -> TokenBuckets:
    """Give ``app`` its member buckets (``app.state.member_limits``) with the rate and burst
    of ``settings``."""
    buckets = TokenBuckets(settings.member_rate_per_s, settings.member_burst)
    app.state.member_limits = buckets
    return buckets


def limit_member(request: Request, member: AuthenticatedMember) -> AuthenticatedMember:
    """``member``, if its bucket has a token; else raise 429 ``rate-limited``."""
    buckets: TokenBuckets = request.app.state.member_limits
    wait = buckets.take(member.address)
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        raise ProblemException(
            "rate-limited",
            f"{member.address} ({member.name}) may make {buckets.rate:g} such requests a "
            f"second ({buckets.burst} at once): retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
            extensions={"retry_after": retry_after})
    return member
