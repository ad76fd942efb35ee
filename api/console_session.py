"""Console sessions of the regulator node: one-time login tokens and session ids.

A regulator member proves who it is with an SM2-signed ``POST /v1/console/sessions`` and
gets a **login token** (32 random bytes, URL-safe base64) valid once, for
:data:`TOKEN_TTL_S` seconds. The console page exchanges it for a **session id** (another 32
random bytes) that the browser keeps in an HttpOnly cookie for :data:`SESSION_TTL_S`
seconds. Only SHA-256 digests of tokens and session ids are kept, so the table itself
holds nothing a browser could present. Both kinds are bounded: when full, the entry that
expires soonest goes.

The node's app keeps them in the regulator's store (its ``console_sessions`` table, either
backend), so every API process of one store shares them: a login made through one process
is found by the next request wherever it lands, and a restart logs nobody out. Lifetimes
are measured on the wall clock, which those processes share. :class:`MemoryConsoleTable`
is the same table in memory (a single process, e.g. tests).

A session says only which member logged in; whether that member may still see the
regulator's data is decided at every request against the chain's membership (see
:mod:`api.routes.console`).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ledger_node.chain.adapter import Role
from ledger_node.errors import Unauthenticated
from ledger_node.protocol.auth import AuthenticatedMember
from ledger_node.regulator.store import ConsoleEntry, ConsoleTable

TOKEN_TTL_S: Final = 60
SESSION_TTL_S: Final = 8 * 3600
MAX_TOKENS: Final = 1_000
MAX_SESSIONS: Final = 1_000
SECRET_BYTES: Final = 32


@dataclass(frozen=True)
class ConsoleSession:
    """Who logged in, and until when (on the store's clock)."""

    member: AuthenticatedMember
    expires_at: float


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


class MemoryConsoleTable:
    """A :class:`~ledger_node.regulator.store.ConsoleTable` in this process's memory."""

    def __init__(self) -> None:
        """An empty table."""
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, bytes], ConsoleEntry] = {}  # in insertion order

    def console_put(self, kind: str, digest: bytes, entry: ConsoleEntry, *, now: float,
                    limit: int) -> None:
        """See :meth:`~ledger_node.regulator.store.ConsoleTable.console_put`."""
        with self._lock:
            self._entries.pop((kind, digest), None)
            mine = sorted(((e.expires_at, seq, key) for seq, (key, e)
                           in enumerate(self._entries.items()) if key[0] == kind),
                          reverse=True)  # soonest-expiring (then oldest) last
            for position, (expires_at, _, key) in enumerate(mine):
                if expires_at <= now or position >= limit - 1:
                    del self._entries[key]
            self._entries[(kind, digest)] = entry

    def console_take(self, kind: str, digest: bytes) -> ConsoleEntry | None:
        """See :meth:`~ledger_node.regulator.store.ConsoleTable.console_take`."""
        with self._lock:
            return self._entries.pop((kind, digest), None)

    def console_get(self, kind: str, digest: bytes) -> ConsoleEntry | None:
        """See :meth:`~ledger_node.regulator.store.ConsoleTable.console_get`."""
        with self._lock:
            return self._entries.get((kind, digest))

    def console_counts(self) -> tuple[int, int]:
        """See :meth:`~ledger_node.regulator.store.ConsoleTable.console_counts`."""
        with self._lock:
            kinds = [kind for kind, _ in self._entries]
        return kinds.count(_TOKEN), kinds.count(_SESSION)


_TOKEN: Final = "token"
_SESSION: Final = "session"


def _entry(session: ConsoleSession) -> ConsoleEntry:
    member = session.member
    return ConsoleEntry(member.address, int(member.role), member.name, session.expires_at)


def _session(entry: ConsoleEntry) -> ConsoleSession:
    return ConsoleSession(AuthenticatedMember(entry.address, Role(entry.role), entry.name),
                          entry.expires_at)


class ConsoleSessions:
    """The login tokens and sessions of one app, kept in a :class:`ConsoleTable`
    (thread-safe, and process-safe over the regulator's store)."""

    def __init__(
        self,
        table: ConsoleTable | None = None,
        *,
        clock: Callable[[], float] = time.time,
        token_ttl_s: float = TOKEN_TTL_S,
        session_ttl_s: float = SESSION_TTL_S,
        max_tokens: int = MAX_TOKENS,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        """Tokens and sessions in ``table`` (by default a fresh :class:`MemoryConsoleTable`);
        lifetimes measured by ``clock`` (seconds; the wall clock, shared by processes)."""
        if min(max_tokens, max_sessions) < 1 or min(token_ttl_s, session_ttl_s) <= 0:
            raise ValueError("console session limits must be positive")
        self._table: ConsoleTable = table if table is not None else MemoryConsoleTable()
        self._clock = clock
        self.token_ttl_s = token_ttl_s
        self.session_ttl_s = session_ttl_s
        self._max_tokens = max_tokens
        self._max_sessions = max_sessions

    def issue_token(self, member: AuthenticatedMember) -> str:
        """A fresh single-use login token for ``member``."""
        token = secrets.token_urlsafe(SECRET_BYTES)
        now = self._clock()
        self._table.console_put(_TOKEN, _digest(token),
                                _entry(ConsoleSession(member, now + self.token_ttl_s)),
                                now=now, limit=self._max_tokens)
        return token

    def exchange(self, token: str) -> tuple[str, ConsoleSession]:
        """Spend ``token``; return a new session id and its session.

        Raises :class:`Unauthenticated` for a token that was never issued, was already
        used, or has expired (the detail does not say which: all three look alike).
        """
        issued = self._table.console_take(_TOKEN, _digest(token))
        now = self._clock()
        if issued is None or issued.expires_at <= now:
            raise Unauthenticated("the login token is unknown, used or expired: run "
                                  "jointledger console-login again")
        session_id = secrets.token_urlsafe(SECRET_BYTES)
        session = ConsoleSession(_session(issued).member, now + self.session_ttl_s)
        self._table.console_put(_SESSION, _digest(session_id), _entry(session), now=now,
                                limit=self._max_sessions)
        return session_id, session

    def session(self, session_id: str) -> ConsoleSession | None:
        """The live session of ``session_id``, or ``None`` (unknown, ended or expired)."""
        key = _digest(session_id)
        entry = self._table.console_get(_SESSION, key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._table.console_take(_SESSION, key)
            return None
        return _session(entry)

    def end(self, session_id: str) -> bool:
        """End a session (logout); return whether there was one."""
        return self._table.console_take(_SESSION, _digest(session_id)) is not None

    def counts(self) -> tuple[int, int]:
        """How many tokens and sessions are held (expired ones included until swept)."""
        return self._table.console_counts()
