"""Chain membership records for intake, served stale while they are read again, so that a
chain that stops answering does not hold submissions from signers the node already knows.

:class:`StaleWhileRevalidateMembers` keeps each record ``ttl`` seconds. An older one is read
again in a background thread (one read at a time per address); the caller waits for that
read at most ``refresh_wait`` seconds, and only when the previous read of the address
answered (so a removal or key rotation takes effect at once while the chain answers
promptly), then uses the record it has. A record older than ``stale_limit``, or none at all
(a signer's first submission), is read in the caller's thread, which gets the chain's error
if it does not answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from ledger_node.chain.adapter import Member

__all__ = ["StaleWhileRevalidateMembers"]

_logger = logging.getLogger(__name__)
_MAX_ENTRIES: Final = 10_000  # members are few; this only bounds lookups of junk addresses


@dataclass
class _Read:
    """One read of an address from the chain, in flight or done."""

    started: float
    done: threading.Event = field(default_factory=threading.Event)
    member: Member | None = None
    error: BaseException | None = None


class StaleWhileRevalidateMembers:
    """Membership records by address, each read again after ``ttl`` seconds (thread-safe)."""

    def __init__(self, lookup: Callable[[str], Member], *, ttl: float, stale_limit: float,
                 refresh_wait: float, clock: Callable[[], float] = time.monotonic) -> None:
        """Read records with ``lookup`` (raising on a chain failure). Raises ``ValueError``
        for a negative ``ttl``, ``stale_limit`` or ``refresh_wait``."""
        if min(ttl, stale_limit, refresh_wait) < 0:
            raise ValueError("member_cache_ttl, member_stale_limit and member_refresh_wait "
                             "must not be negative")
        self._lookup = lookup
        self._ttl = ttl
        self._stale_limit = stale_limit
        self._refresh_wait = refresh_wait
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Member]] = {}  # address -> (read started, record)
        self._reads: dict[str, _Read] = {}  # the read in flight per address
        self._last_failed: set[str] = set()  # addresses whose latest read failed
        self.failed_reads = 0  # reads that failed (a background one keeps the stale record)

    def get(self, address: str, *, ttl: float | None = None) -> Member:
        """The record of ``address`` (``ttl``: this caller's own, instead of the cache's);
        raises what ``lookup`` raised only when there is no record younger than
        ``stale_limit`` to fall back on."""
        key = address.lower()
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < (self._ttl if ttl is None else ttl):
                return entry[1]
            usable = entry is not None and now - entry[0] < self._stale_limit
            read = self._reads.get(key)
            start = read is None
            if read is None:
                read = self._reads[key] = _Read(now)
            wait = 0.0
            if usable and key not in self._last_failed:
                wait = max(0.0, read.started + self._refresh_wait - now)
        if not usable:
            if start:
                self._read(key, address, read)
            read.done.wait()
            if read.member is None:
                assert read.error is not None
                raise read.error
            return read.member
        if start:
            threading.Thread(target=self._read, args=(key, address, read),
                             name="jointledger-member-refresh", daemon=True).start()
        if wait > 0 and read.done.wait(wait) and read.member is not None:
            return read.member
        assert entry is not None
        return entry[1]

    def _read(self, key: str, address: str, read: _Read) -> None:
        """Read ``address`` from the chain and keep the record; errors are left on ``read``."""
        try:
            read.member = self._lookup(address)
        except Exception as exc:  # the caller waiting on it re-raises; a background one logs
            read.error = exc
        with self._lock:
            if self._reads.get(key) is read:
                del self._reads[key]
            if read.member is not None:
                if len(self._entries) >= _MAX_ENTRIES:
                    self._entries.clear()
                self._entries[key] = (read.started, read.member)
                self._last_failed.discard(key)
            else:
                self._last_failed.add(key)
                self.failed_reads += 1
        if read.error is not None:
            _logger.warning("membership of %s not read from the chain: %s: %s", address,
                            type(read.error).__name__, read.error)
        read.done.set()
