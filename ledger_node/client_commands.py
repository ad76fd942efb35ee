"""``jointledger submit | proof | checkpoints``: a platform's command-line client of its node.

``submit`` reads payment records from JSONL or CSV, validates every one before sending
anything, commits them locally (the salts never leave this process) and submits signed
batches through the SDK with a progress bar; the receipts, with each record's opening,
go to a private (0600) JSONL file the platform keeps for later disclosures.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from ledger_node.errors import InvalidRecord
from ledger_node.keyfiles import load_member_keys
from ledger_node.record import FIELD_NAMES, PaymentRecord
from ledger_node.sdk import NodeClient, PlatformClient

Echo = Callable[[str], None]


class RecordFileError(ValueError):
    """A records file cannot be used; the message names the line and the problem."""


def read_records(path: Path, file_format: str | None = None) -> list[PaymentRecord]:
    """Read and validate every record of a JSONL or CSV file (by suffix unless given).

    Raises :class:`RecordFileError` naming the line (and field) of the first bad record.
    """
    kind = file_format or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(_csv_rows(handle) if kind == "csv" else _jsonl_rows(handle))
    except OSError as exc:
        raise RecordFileError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RecordFileError(f"{path} is not UTF-8 text") from None
    records = []
    for line, row in rows:
        try:
            records.append(PaymentRecord.from_json(row))
        except InvalidRecord as exc:
            raise RecordFileError(f"{path}:{line}: {exc}") from None
    if not records:
        raise RecordFileError(f"{path} holds no records")
    return records


def _jsonl_rows(handle: TextIO) -> Iterator[tuple[int, object]]:
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            yield line, json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordFileError(f"line {line}: not JSON: {exc.msg}") from None


def _csv_rows(handle: TextIO) -> Iterator[tuple[int, object]]:
    reader = csv.DictReader(handle)
    header = reader.fieldnames or []
    unknown = [name for name in header if name not in FIELD_NAMES]
    if unknown:
        raise RecordFileError(f"line 1: unknown column {unknown[0]!r}; "
                              f"columns are {', '.join(FIELD_NAMES)}")
    for row in reader:
        yield reader.line_num, {name: _csv_value(reader.line_num, name, value)
                                for name, value in row.items()}


def _csv_value(line: int, name: str, value: str | None) -> object:
    """CSV cells are text: give the integer and boolean fields their JSON types."""
    if value is None:
        raise RecordFileError(f"line {line}: missing cell for {name!r}")
    if name == "amount_fen":
        try:
            return int(value)
        except ValueError:
            raise RecordFileError(f"line {line}: amount_fen {value!r} is not an integer") from None
    if name == "cross_border":
        if value.lower() not in ("true", "false"):
            raise RecordFileError(f"line {line}: cross_border must be true or false")
        return value.lower() == "true"
    return value


def progress_bar(stream: TextIO = sys.stderr, width: int = 30) -> Callable[[int, int], None]:
    """Return a progress callback drawing ``[####....] done/total`` on ``stream``."""
    started = time.perf_counter()

    def draw(done: int, total: int) -> None:
        filled = width * done // total if total else width
        rate = done / max(time.perf_counter() - started, 1e-9)
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} leaves "
                     f"({rate:,.0f}/s)")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return draw


def run_submit(
    records_path: Path,
    *,
    url: str,
    platform: str,
    sm2_key: Path,
    account_key: Path,
    out: Path | None = None,
    chunk: int = 10_000,
    file_format: str | None = None,
    echo: Echo = print,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Submit every record of ``records_path``; write receipts and openings; return 0.

    Raises :class:`RecordFileError` before anything is sent if a record is invalid, and
    :class:`~ledger_node.errors.LedgerError` subclasses (``ApiError``, ``InvalidKey``) for
    failures talking to the node or loading keys.
    """
    records = read_records(records_path, file_format)
    keys = load_member_keys(sm2_key, account_key)
    out = out or records_path.with_name(records_path.name + ".receipts.jsonl")
    started = time.perf_counter()
    with PlatformClient(url, platform, keys.address, keys.sm2_key, chunk_size=chunk) as client:
        submitted = client.submit_records(records, progress=progress or progress_bar())
    elapsed = time.perf_counter() - started
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        for item in submitted:
            handle.write(json.dumps({
                "local_tx_id": item.prepared.record.local_tx_id,
                "index": item.receipt.index,
                "leaf_hash": item.receipt.leaf_hash.hex(),
                "duplicate": item.receipt.duplicate,
                "commitment": item.prepared.leaf.commitment.hex(),
                "opening": item.prepared.opening.to_json(),
            }, ensure_ascii=False) + "\n")
    duplicates = sum(1 for item in submitted if item.receipt.duplicate)
    echo(f"submitted {len(submitted):,} records to {platform} at {url} in {elapsed:.2f} s "
         f"({len(submitted) / max(elapsed, 1e-9):,.0f}/s): {len(submitted) - duplicates:,} new, "
         f"{duplicates:,} already in the log")
    echo(f"receipts and openings (keep them private): {out}")
    return 0


def run_proof(url: str, index: int, *, out: Path | None, wait: float, echo: Echo = print) -> int:
    """Fetch leaf ``index``'s proof bundle (waiting up to ``wait`` s while it is pending)."""
    with NodeClient(url) as client:
        document = client.bundle_json(index, wait=wait > 0, timeout=wait)
    text = json.dumps(document, indent=2)
    if out is None:
        echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        echo(f"proof bundle of leaf {index} written to {out}")
    return 0


def run_checkpoints(url: str, *, after: int, limit: int, echo: Echo = print) -> int:
    """Print the node's anchored checkpoints as a table."""
    with NodeClient(url) as client:
        checkpoints = client.checkpoints(after=after, limit=limit)
    echo(f"{'tree size':>12}  {'root':<20}  {'block':>7}  transaction")
    for item in checkpoints:
        echo(_checkpoint_row(item))
    echo(f"{len(checkpoints)} checkpoint(s)")
    return 0


def _checkpoint_row(item: dict[str, Any]) -> str:
    size = item.get("tree_size", "?")
    root = str(item.get("root", ""))[:16] + "…"
    return f"{size:>12}  {root:<20}  {item.get('block_number', '?'):>7}  {item.get('tx_hash', '')}"
