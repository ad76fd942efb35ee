"""A SQLite store's plumbing shared by the platform's and the regulator's store: one read
connection per thread, and the one writer's exclusive lock file.

Readers of a WAL database never block its writer, so each thread reads through its own
connection. A web server's worker threads come and go: the connections of threads that
ended are closed when a new reader opens, or each would keep its file descriptors until the
store closes. A store is opened for writing by one process at a time: its ``STORE.lock``
is locked exclusively (flock) and names the holder's process id.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from pathlib import Path
from typing import Final

from ledger_node.errors import StoreCorrupted, StoreLocked

LOCK_SUFFIX: Final = ".lock"
"""The writer's lock file beside a store: ``STORE.lock``."""


def take_writer_lock(path: Path, what: str) -> int:
    """Lock ``path``'s lock file for the one writer; return its descriptor (closing it drops
    the lock). ``what`` names the store in messages. Raises :class:`StoreLocked` naming the
    holder's process if another writer has it, :class:`StoreCorrupted` if it cannot open."""
    lock_path = path.with_name(path.name + LOCK_SUFFIX)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreCorrupted(f"cannot open {what} {path}: its lock file {lock_path}: "
                             f"{exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StoreLocked(
            f"{what} {path} is open for writing elsewhere (process {holder}, lock "
            f"{lock_path}): stop that node or tool first; one writer per store") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


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
