"""``jointledger regulator-store copy --from STORE.db --to postgresql://...``: a regulator's
SQLite store copied into an empty PostgreSQL database
(:mod:`ledger_node.regulator.store_copy`), with progress on stderr.

Exit status 0 when copied and the counts agree, 1 when the copy was refused or failed
(nothing is committed then), 2 for a ``--to`` that is not a PostgreSQL URL.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ledger_node.errors import StoreCorrupted, StoreLocked, StoreUnavailable
from ledger_node.regulator.pg_store import is_postgres_url, redact_url
from ledger_node.regulator.store_copy import CopyRefused, copy_sqlite_to_postgres

_PREFIX = "jointledger regulator-store copy"


def run_copy(source: Path, target: str) -> int:
    """Copy ``source`` to ``target``; print what was copied; return the exit status."""
    if not is_postgres_url(target):
        print(f"{_PREFIX}: --to must be a postgresql:// URL, got {redact_url(target)!r}",
              file=sys.stderr)
        return 2
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"{_PREFIX}: {line}", file=sys.stderr, flush=True)

    try:
        report = copy_sqlite_to_postgres(source, target, progress=progress)
    except (CopyRefused, StoreLocked, StoreCorrupted, StoreUnavailable) as exc:
        print(f"{_PREFIX}: {exc}", file=sys.stderr)
        return 1
    total = sum(report.rows.values())
    print(f"copied regulator {report.regulator}'s store {source} to {redact_url(target)}: "
          f"{total} rows ({', '.join(f'{t} {n}' for t, n in report.rows.items())}) in "
          f"{time.monotonic() - started:.1f} s; every table's count agrees")
    return 0
