"""Copy a regulator's SQLite store into an empty PostgreSQL store
(``jointledger regulator-store copy``).

The source is opened as the node opens it (integrity check, schema upgrade, its writer lock
held for the whole copy, so no node writes it meanwhile); the target is migrated to the
current schema and must hold nothing yet. Every table is copied with PostgreSQL's ``COPY``
in ONE transaction: a copy that fails half-way leaves the target empty. The row counts of
every table are compared before the commit.

Records copied this way all fall in the partition of the day of the copy: the SQLite store
never recorded when it ingested a record (docs/storage.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import psycopg

from ledger_node.errors import LedgerError, StoreCorrupted
from ledger_node.regulator.pg_store import PostgresRegulatorStore, redact_url
from ledger_node.regulator.store import LOG_COLUMNS, RECORD_COLUMNS, SqliteRegulatorStore

__all__ = ["CopyRefused", "CopyReport", "copy_sqlite_to_postgres"]

PROGRESS_EVERY: Final = 100_000
"""Rows between two progress lines of a long table."""

_TABLES: Final[tuple[tuple[str, str], ...]] = (
    ("logs", LOG_COLUMNS),  # num (the identity) included
    ("records", RECORD_COLUMNS),
    ("checkpoints", "log_id, tree_size, root, timestamp, signature, tx_hash, block_number, "
                    "block_time"),
    ("faults", 'id, found_at, last_seen, platform, log_id, start, "end", kind, detail'),
    ("disclosures", "request_id, platform, commitment, case_id, requested_tx, requested_at, "
                    "response, opening, verified_at"),
    ("follow", "key, value"),
    ("cases", "case_id, case_key"),
    ("alert_numbers", "id, key, first_raised"),
    ("console_sessions", "digest, kind, address, role, name, expires_at"),
)
"""Each copied table and its columns, in an order that satisfies foreign keys."""
_IDENTITIES: Final = (("logs", "num"), ("faults", "id"), ("alert_numbers", "id"))


class CopyRefused(LedgerError):
    """The copy was not made: the target already holds a store's data, or the source is not
    a regulator store. Nothing was written."""


@dataclass(frozen=True)
class CopyReport:
    """What was copied: rows per table, and the regulator the store belongs to."""

    regulator: str
    rows: dict[str, int]


def _regulator_of(path: Path) -> str:
    """The regulator named in the SQLite store's ``meta`` (read-only)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'regulator'").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise CopyRefused(f"{path} is not a regulator store: {exc}") from None
    if row is None:
        raise CopyRefused(f"{path} is not a regulator store: it names no regulator")
    return str(row[0])


def copy_sqlite_to_postgres(source: Path, target_url: str, *,
                            progress: Callable[[str], None] = lambda line: None) -> CopyReport:
    """Copy the SQLite store at ``source`` into the empty PostgreSQL database at
    ``target_url``; return the rows copied per table.

    Raises :class:`CopyRefused` (a non-empty target, a source that is not a store),
    :class:`~ledger_node.errors.StoreLocked` (a node has the source open),
    :class:`~ledger_node.errors.StoreCorrupted` (a damaged source, or counts that differ
    after the copy: nothing committed) and :class:`~ledger_node.errors.StoreUnavailable`.
    """
    if not source.is_file():
        raise CopyRefused(f"no store at {source}")
    regulator = _regulator_of(source)
    lite = SqliteRegulatorStore(source, regulator=regulator)  # checks, upgrades, locks
    try:
        target = PostgresRegulatorStore(target_url, regulator=regulator)
        try:
            return _copy(source, target, regulator, progress)
        finally:
            target.close()
    finally:
        lite.close()


def _copy(source: Path, target: PostgresRegulatorStore, regulator: str,
          progress: Callable[[str], None]) -> CopyReport:
    day = datetime.now(UTC).date()
    target.ensure_partition(day)
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    rows: dict[str, int] = {}
    try:
        with psycopg.connect(target.url) as conn, conn.transaction():
            for table, _ in _TABLES:
                held = conn.execute(f"SELECT count(*) FROM {table}".encode()).fetchone()
                if held is not None and held[0]:
                    raise CopyRefused(f"{redact_url(target.url)} already holds a store "
                                      f"({table}: {held[0]} rows): copy only into an empty "
                                      "database")
            for table, columns in _TABLES:
                total = int(reader.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                progress(f"{table}: {total} rows")
                target_columns = columns + (", day" if table == "records" else "")
                done = 0
                with conn.cursor() as cur, cur.copy(
                        f"COPY {table} ({target_columns}) FROM STDIN".encode()) as copy:
                    for row in reader.execute(f"SELECT {columns} FROM {table}"):
                        copy.write_row(_pg_row(table, row, day))
                        done += 1
                        if done % PROGRESS_EVERY == 0:
                            progress(f"{table}: {done}/{total}")
                copied = conn.execute(f"SELECT count(*) FROM {table}".encode()).fetchone()
                if copied is None or int(copied[0]) != total:
                    raise StoreCorrupted(f"copy of {table}: {total} rows read, "
                                         f"{None if copied is None else copied[0]} in the "
                                         "target: nothing was committed")
                rows[table] = total
            for table, column in _IDENTITIES:
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                             f"coalesce(max({column}), 0) + 1, false) FROM {table}".encode())
    finally:
        reader.close()
    return CopyReport(regulator, rows)


def _pg_row(table: str, row: tuple[object, ...], day: object) -> tuple[object, ...]:
    """A SQLite row as PostgreSQL's columns take it (booleans, the records' day)."""
    if table != "records":
        return row
    values = list(row)
    for at in (15, 16):  # cross_border, cash: 0/1 in SQLite
        if values[at] is not None:
            values[at] = bool(values[at])
    return (*values, day)
