"""One SQLite read connection per thread, for a store that one writer connection updates.

Readers of a WAL database never block its writer, so each thread reads through its own
connection. A web server's worker threads come and go: the connections of threads that
ended are closed when a new reader opens, or each would keep its file descriptors until the
store closes. Both stores (the platform's and the regulator's) read this way.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class ThreadReaders:
    """Read connections to the SQLite file at ``path``, one per thread (thread-safe)."""

    def __init__(self, path: Path) -> None:
        """Open nothing yet: each thread's connection is opened by its first :meth:`get`."""
        self._path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[tuple[threading.Thread, sqlite3.Connection]] = []

    def get(self) -> sqlite3.Connection:
        """This thread's read connection (opened on first use, autocommit, 5 s busy wait)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA busy_timeout = 5000")
            self._local.db = db
            with self._lock:
                alive = []
                for thread, other in self._open:
                    if thread.is_alive():
                        alive.append((thread, other))
                    else:
                        other.close()
                alive.append((threading.current_thread(), db))
                self._open = alive
        return db

    def close(self) -> None:
        """Close every thread's connection; a later :meth:`get` of a thread that had one
        returns the closed connection, whose use raises ``sqlite3.ProgrammingError``."""
        with self._lock:
            for _, db in self._open:
                db.close()
            self._open.clear()
