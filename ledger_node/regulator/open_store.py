"""The one place that picks the regulator store's backend from where it is.

A ``postgresql://`` (or ``postgres://``) URL opens
:class:`~ledger_node.regulator.pg_store.PostgresRegulatorStore`; anything else is a SQLite
file (:class:`~ledger_node.regulator.store.SqliteRegulatorStore`, the default).
"""

from __future__ import annotations

from pathlib import Path

from ledger_node.regulator.pg_store import PostgresRegulatorStore, is_postgres_url
from ledger_node.regulator.store import RegulatorStore, SqliteRegulatorStore

__all__ = ["open_regulator_store"]


def open_regulator_store(location: Path | str, *, regulator: str,
                         writer: bool = True) -> RegulatorStore:
    """Open (or create) the store at ``location`` for the regulator named ``regulator``.

    ``writer=False`` opens it for an API replica: a SQLite file is then opened without its
    writer lock and must exist (PostgreSQL has no such lock: every opener is alike).

    Raises what the backend's constructor raises: :class:`~ledger_node.errors.StoreCorrupted`
    for a store of another schema or regulator, :class:`~ledger_node.errors.StoreLocked` for
    a SQLite file another writer holds, :class:`~ledger_node.errors.StoreUnavailable` for a
    PostgreSQL server that does not answer.
    """
    if is_postgres_url(location):
        return PostgresRegulatorStore(str(location), regulator=regulator)
    return SqliteRegulatorStore(Path(location), regulator=regulator, writer=writer)
