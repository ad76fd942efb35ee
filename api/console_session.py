"""Console sessions of the regulator node: one-time login tokens and session ids, in memory.

A regulator member proves who it is with an SM2-signed ``POST /v1/console/sessions`` and
gets a **login token** (32 random bytes, URL-safe base64) valid once, for
:data:`TOKEN_TTL_S` seconds. The console page exchanges it for a **session id** (another 32
random bytes) that the browser keeps in an HttpOnly cookie for :data:`SESSION_TTL_S`
seconds. Only SHA-256 digests of tokens and session ids are kept, so the table itself
holds nothing a browser could present. Both tables are bounded: when full, the oldest
entry goes. Nothing is written to disk; a restart logs everyone out.

A session says only which member logged in; whether that member may still see the
regulator's data is decided at every request against the chain's membership (see
:mod:`api.routes.console`).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ledger_node.errors import Unauthenticated
from ledger_node.protocol.auth import AuthenticatedMember

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


class ConsoleSessions:
    """The login tokens and sessions of one app (thread-safe)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        token_ttl_s: float = TOKEN_TTL_S,
        session_ttl_s: float = SESSION_TTL_S,
        max_tokens: int = MAX_TOKENS,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        """Empty tables; lifetimes measured by ``clock`` (seconds)."""
        if min(max_tokens, max_sessions) < 1 or min(token_ttl_s, session_ttl_s) <= 0:
            raise ValueError("console session limits must be positive")
        self._clock = clock
        self.token_ttl_s = token_ttl_s
        self.session_ttl_s = session_ttl_s
        self._max_tokens = max_tokens
        self._max_sessions = max_sessions
        self._lock = threading.Lock()
        self._tokens: OrderedDict[bytes, ConsoleSession] = OrderedDict()
        self._sessions: OrderedDict[bytes, ConsoleSession] = OrderedDict()

    def issue_token(self, member: AuthenticatedMember) -> str:
        """A fresh single-use login token for ``member``."""
        token = secrets.token_urlsafe(SECRET_BYTES)
        with self._lock:
            self._expire(self._tokens)
            while len(self._tokens) >= self._max_tokens:
                self._tokens.popitem(last=False)
            self._tokens[_digest(token)] = ConsoleSession(member,
                                                          self._clock() + self.token_ttl_s)
        return token

    def exchange(self, token: str) -> tuple[str, ConsoleSession]:
        """Spend ``token``; return a new session id and its session.

        Raises :class:`Unauthenticated` for a token that was never issued, was already
        used, or has expired (the detail does not say which: all three look alike).
        """
        with self._lock:
            issued = self._tokens.pop(_digest(token), None)
            now = self._clock()
            if issued is None or issued.expires_at <= now:
                raise Unauthenticated("the login token is unknown, used or expired: run "
                                      "jointledger console-login again")
            session_id = secrets.token_urlsafe(SECRET_BYTES)
            session = ConsoleSession(issued.member, now + self.session_ttl_s)
            self._expire(self._sessions)
            while len(self._sessions) >= self._max_sessions:
                self._sessions.popitem(last=False)
            self._sessions[_digest(session_id)] = session
        return session_id, session

    def session(self, session_id: str) -> ConsoleSession | None:
        """The live session of ``session_id``, or ``None`` (unknown, ended or expired)."""
        key = _digest(session_id)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if session.expires_at <= self._clock():
                del self._sessions[key]
                return None
            return session

    def end(self, session_id: str) -> bool:
        """End a session (logout); return whether there was one."""
        with self._lock:
            return self._sessions.pop(_digest(session_id), None) is not None

    def counts(self) -> tuple[int, int]:
        """How many tokens and sessions are held (expired ones included until swept)."""
        with self._lock:
            return len(self._tokens), len(self._sessions)

    def _expire(self, table: OrderedDict[bytes, ConsoleSession]) -> None:
        """Drop expired entries from the front (entries are in expiry order)."""
        now = self._clock()
        while table:
            key, entry = next(iter(table.items()))
            if entry.expires_at > now:
                break
            del table[key]
