"""``jointledger submit | proof | checkpoints``: a platform's command-line client of its node.

``submit`` reads payment records from JSONL or CSV, validates every one before sending
anything, commits them locally (the salts never leave this process), seals each record's
AML escrow for the regulator whose key is registered on chain, and submits signed batches
through the SDK with a progress bar; the receipts, with each record's opening, go to a
private (0600) JSONL file the platform keeps for later disclosures.

A records file may state each record's party kinds in the optional ``payer_kind`` /
``payee_kind`` fields (JSONL keys or CSV columns, ``person`` or ``institution``). They go
into the escrow only, not the record or its commitment; when absent the kind is read from
the identity number (:func:`~ledger_node.protocol.escrow.classify_identity`).

A record that is one half of a cross-platform payment says so in the optional
``counterparty`` (the other platform's member name) and ``side`` (``payer`` if this
platform holds the payer's account, ``payee`` otherwise) fields; its leaf then carries the
reconciliation tags under the key shared with that platform (docs/reconciliation.md). Like
the kinds, they are not committed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from ledger_node.chain.adapter import Deployment, LedgerChain, Member
from ledger_node.client.sdk import (
    Counterparties,
    NodeClient,
    PartyKinds,
    PlatformClient,
    RegulatorKey,
    registered_platform,
    registered_regulator_key,
)
from ledger_node.crypto.gmcrypto import SM2PublicKey
from ledger_node.crypto.keyfiles import load_member_keys
from ledger_node.errors import InvalidIdentity, InvalidRecord, UnknownRegulator
from ledger_node.jsonlimits import JsonTextRefused, parse_json_text
from ledger_node.protocol.aml import PartyKind
from ledger_node.protocol.escrow import classify_identity, key_fingerprint
from ledger_node.protocol.pairwise import CrossPlatform, Side
from ledger_node.protocol.record import FIELD_NAMES, PaymentRecord
from ledger_node.tls import NO_CLIENT_TLS, ClientTls

Echo = Callable[[str], None]
KIND_FIELDS: Final = ("payer_kind", "payee_kind")
"""Optional records-file fields giving the party kinds; escrowed, never committed."""
CROSS_FIELDS: Final = ("counterparty", "side")
"""Optional records-file fields marking one half of a cross-platform payment; never committed."""
_SIDES: Final = {side.value: side for side in Side}
_KIND_VALUES: Final = {kind.value: kind for kind in PartyKind}


class RecordFileError(ValueError):
    """A records file cannot be used; the message names the line and the problem."""


@dataclass(frozen=True)
class RecordLine:
    """A record of a records file, its line number and the party kinds the file states."""

    line: int
    record: PaymentRecord
    payer_kind: PartyKind | None = None
    payee_kind: PartyKind | None = None
    cross: CrossPlatform | None = None


def read_record_lines(path: Path, file_format: str | None = None) -> list[RecordLine]:
    """Read and validate every record of a JSONL or CSV file (by suffix unless given).

    The file is read as users save it: UTF-8 with or without a byte order mark (Excel's
    "CSV UTF-8" writes one), LF or CRLF line ends, and for CSV a ``,`` or ``;`` separator
    (whichever the header line holds more of: a spreadsheet set to a locale with decimal
    commas writes ``;``). Anything else, GBK above all, is refused naming the line of the
    first byte that is not UTF-8.

    The optional :data:`KIND_FIELDS` and :data:`CROSS_FIELDS` are taken out of each row
    before the record is parsed (JSON ``null`` or an empty CSV cell: not given). Every row
    is checked before this returns, so nothing of a bad file is ever submitted: raises
    :class:`RecordFileError` naming the line (and field) of **every** bad row (the first
    :data:`MAX_REPORTED_ROWS` of them).
    """
    kind = file_format or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecordFileError(f"cannot read {path}: {exc.strerror}; expected the records file "
                              "(.jsonl or .csv). Try: check the path") from None
    text = _utf8_text(path, raw)
    rows = list(_csv_rows(path, text) if kind == "csv" else _jsonl_rows(text))
    if rows and isinstance(rows[0][1], dict) and {"commitment", "opening"} <= rows[0][1].keys():
        raise RecordFileError(
            f"{path} is a receipts file (line {rows[0][0]} holds a commitment and an opening), "
            "not records; expected the records file (JSON lines or CSV of record fields). "
            "Try: the records file the receipts were written for; receipts go to reconcile "
            "--records and disclose --field")
    lines = []
    problems: list[str] = []
    for line, row in rows:
        if isinstance(row, _BadRow):
            problems.append(f"{path}:{line}: {row.reason}")
            continue
        try:
            lines.append(_record_line(path, line, row))
        except RecordFileError as exc:
            problems.append(str(exc))
    _refuse_bad_rows(path, problems)
    if not lines:
        raise RecordFileError(f"{path} holds no records (expected one record per line after "
                              "the CSV header, or one JSON object per line)")
    return lines


MAX_REPORTED_ROWS: Final = 50
"""How many bad rows a refusal lists (the count names them all)."""


@dataclass(frozen=True)
class _BadRow:
    """A row that could not even be made into fields (not JSON, a cell that is no number)."""

    reason: str


def _record_line(path: Path, line: int, row: object) -> RecordLine:
    """One row's record, party kinds and cross-platform mark; :class:`RecordFileError`
    naming the line when any is bad."""
    kinds: dict[str, PartyKind | None] = {}
    cross: CrossPlatform | None = None
    if isinstance(row, dict):
        row = dict(row)
        for name in KIND_FIELDS:
            kinds[name] = _party_kind(path, line, name, row.pop(name, None))
        cross = _cross(path, line, row.pop("counterparty", None), row.pop("side", None))
    try:
        record = PaymentRecord.from_json(row)
    except InvalidRecord as exc:
        raise RecordFileError(f"{path}:{line}: {exc}") from None
    if cross is not None and not record.clearing_ref:
        raise RecordFileError(f"{path}:{line}: counterparty is given but clearing_ref is "
                              "empty: the reconciliation tags are made from it")
    return RecordLine(line, record, **kinds, cross=cross)


def _line_number(problem: str) -> int:
    """The line a ``PATH:LINE: reason`` problem names (for listing them in file order)."""
    head = problem.split(": ", 1)[0]
    number = head.rsplit(":", 1)[-1]
    return int(number) if number.isdigit() else 0


def _refuse_bad_rows(path: Path, problems: list[str]) -> None:
    """Raise one :class:`RecordFileError` listing ``problems`` (one per bad row), if any."""
    if not problems:
        return
    if len(problems) == 1:
        raise RecordFileError(problems[0])
    shown = "\n".join(f"  {problem}" for problem in problems[:MAX_REPORTED_ROWS])
    more = len(problems) - MAX_REPORTED_ROWS
    tail = f"\n  ... and {more} more" if more > 0 else ""
    raise RecordFileError(f"{path} has {len(problems)} bad rows:\n{shown}{tail}\n"
                          "fix them and submit the file again")


def _utf8_text(path: Path, raw: bytes) -> str:
    """``raw`` decoded as UTF-8, a leading byte order mark dropped; a clear refusal else."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        found = raw[exc.start:exc.start + 2].hex(" ")
        raise RecordFileError(
            f"{path} is not UTF-8 text: line {line} holds the bytes {found}, which UTF-8 "
            "does not allow (a file saved as GBK/GB18030, as Excel and WPS do by default on "
            "Chinese systems, looks like this); save it as UTF-8 (Excel: 'CSV UTF-8') or "
            f"convert it: iconv -f GBK -t UTF-8 {path} > utf8-{path.name}") from None


def read_records(path: Path, file_format: str | None = None) -> list[PaymentRecord]:
    """The records of :func:`read_record_lines`, without their lines and kinds."""
    return [item.record for item in read_record_lines(path, file_format)]


def party_kinds(path: Path, lines: list[RecordLine]) -> list[PartyKinds]:
    """Each record's (payer, payee) kinds: as the file states them, else from the identity.

    Raises :class:`RecordFileError` naming the line and field of every record whose kind
    is not given and whose identity is neither a resident ID nor a credit code.
    """
    resolved = []
    problems = []
    for item in lines:
        pair = []
        for side, given in (("payer", item.payer_kind), ("payee", item.payee_kind)):
            if given is not None:
                pair.append(given)
                continue
            try:
                pair.append(classify_identity(getattr(item.record, f"{side}_identity")))
            except InvalidIdentity as exc:
                problems.append(
                    f"{path}:{item.line}: {side}_kind is not given and {side}_identity cannot "
                    f"be classified ({exc}): give {side}_kind (person or institution)")
                break
        else:
            resolved.append((pair[0], pair[1]))
    _refuse_bad_rows(path, problems)
    return resolved


def _cross(path: Path, line: int, counterparty: object, side: object) -> CrossPlatform | None:
    """The cross-platform hint of a row (``counterparty`` and ``side`` together or not)."""
    given = [v not in (None, "") for v in (counterparty, side)]
    if not any(given):
        return None
    if not all(given):
        missing = "side" if given[0] else "counterparty"
        raise RecordFileError(f"{path}:{line}: counterparty and side come together; "
                              f"{missing} is missing")
    if not isinstance(counterparty, str):
        raise RecordFileError(f"{path}:{line}: counterparty {counterparty!r} is not a "
                              "platform name")
    if not isinstance(side, str) or side not in _SIDES:
        raise RecordFileError(f"{path}:{line}: side {side!r} is not payer or payee")
    return CrossPlatform(counterparty, _SIDES[side])


def _party_kind(path: Path, line: int, name: str, value: object) -> PartyKind | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value in _KIND_VALUES:
        return _KIND_VALUES[value]
    raise RecordFileError(f"{path}:{line}: {name} {value!r} is not a party kind "
                          f"(person or institution)")


def _jsonl_rows(text: str) -> Iterator[tuple[int, object]]:
    """Each non-blank line's JSON value, or a :class:`_BadRow` saying why it is none."""
    for line, row in enumerate(text.splitlines(), start=1):
        if not row.strip():
            continue
        try:
            yield line, parse_json_text(row)
        except JsonTextRefused as refused:
            yield line, _BadRow(refused.reason)
        except json.JSONDecodeError as exc:
            yield line, _BadRow(f"not JSON: {exc.msg} at column {exc.colno}")


CSV_SEPARATORS: Final = (",", ";")
"""The cell separators a CSV header may use: ``,``, or ``;`` as spreadsheets write it in
locales whose decimal mark is a comma."""


def csv_separator(header: str) -> str:
    """The separator of a CSV file whose first line is ``header``: the one it holds more
    of (a comma on a tie: a one-column header)."""
    return max(CSV_SEPARATORS, key=header.count)


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, object]]:
    """Each CSV row after the header as a dict of JSON-typed cells (or a :class:`_BadRow`);
    a header naming an unknown column refuses the whole file."""
    reader = csv.DictReader(io.StringIO(text, newline=""),
                            delimiter=csv_separator(text.split("\n", 1)[0]))
    header = reader.fieldnames or []
    optional = (*KIND_FIELDS, *CROSS_FIELDS)
    unknown = [name for name in header if name not in (*FIELD_NAMES, *optional)]
    if unknown:
        raise RecordFileError(
            f"{path}:1: unknown column {unknown[0]!r} in the header; columns are "
            f"{', '.join(FIELD_NAMES)} and optionally {', '.join(optional)}: rename or "
            "remove it")
    for row in reader:
        problems = []
        cells: dict[str, object] = {}
        for name, value in row.items():
            if name is None:  # DictReader keeps the cells past the header's under None
                problems.append(f"{len(value)} cell(s) more than the header's "
                                f"{len(header)} columns (a separator inside a cell needs "
                                "the cell in double quotes)")
                continue
            try:
                cells[name] = _csv_value(name, value)
            except ValueError as exc:
                problems.append(str(exc))
        yield reader.line_num, _BadRow("; ".join(problems)) if problems else cells


def _csv_value(name: str, value: str | None) -> object:
    """CSV cells are text: give the integer and boolean fields their JSON types
    (``ValueError`` saying what was found and expected)."""
    if value is None:
        raise ValueError(f"missing cell for {name!r} (the row is shorter than the header)")
    if name == "amount_fen":
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"amount_fen {value!r} is not an integer (amounts are in fen, "
                             "1 yuan = 100 fen, with no separators)") from None
    if name == "cross_border":
        if value.lower() not in ("true", "false"):
            raise ValueError(f"cross_border {value!r} must be true or false")
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


def chain_regulator_key(deployment: Path, rpc_url: str, name: str | None = None,
                        tls: ClientTls = NO_CLIENT_TLS) -> Callable[[], SM2PublicKey]:
    """A function returning the regulator's SM2 key registered now on the chain.

    The chain at ``rpc_url`` is reached (with ``tls``), and bound to ``deployment``, at the
    first call
    (so a bad records file is reported before any connection); each call then reads the
    key again, so a governance rotation takes effect at the next chunk. Raises what
    :func:`~ledger_node.client.sdk.registered_regulator_key`, :meth:`LedgerChain.from_rpc` and
    :meth:`LedgerChain.attach` raise.
    """
    chain: LedgerChain | None = None

    def current() -> SM2PublicKey:
        nonlocal chain
        if chain is None:
            bound_to = Deployment.load(deployment)  # a local file: checked before connecting
            chain = LedgerChain.from_rpc(rpc_url, **tls.requests_options()).attach(bound_to)
        return registered_regulator_key(chain, name)

    return current


def chain_counterparties(deployment: Path, rpc_url: str,
                         tls: ClientTls = NO_CLIENT_TLS) -> Counterparties:
    """A function returning a platform member by name as registered now on the chain
    (reached at the first call, like :func:`chain_regulator_key`)."""
    chain: LedgerChain | None = None

    def lookup(name: str) -> Member:
        nonlocal chain
        if chain is None:
            chain = LedgerChain.from_rpc(rpc_url, **tls.requests_options()).attach(
                Deployment.load(deployment))
        return registered_platform(chain, name)

    return lookup


def run_submit(
    records_path: Path,
    *,
    url: str,
    platform: str,
    sm2_key: Path,
    account_key: Path,
    regulator_key: RegulatorKey | None,
    counterparties: Counterparties | None = None,
    out: Path | None = None,
    chunk: int = 10_000,
    file_format: str | None = None,
    echo: Echo = print,
    warn: Echo = lambda text: print(text, file=sys.stderr),
    progress: Callable[[int, int], None] | None = None,
    tls: ClientTls = NO_CLIENT_TLS,
) -> int:
    """Submit every record of ``records_path``; write receipts and openings; return 0.

    With ``regulator_key`` (a key, or a function returning the key registered now, asked
    once per chunk: see :func:`chain_regulator_key`) each record's AML escrow is sealed for
    the regulator, with the party kinds the file states or else classified from the
    identity; ``None`` submits without escrows, after a warning. Records marked as halves of
    cross-platform payments are tagged for reconciliation with the counterparty's key from
    ``counterparties`` (required if any record is marked). Raises
    :class:`RecordFileError` before anything is sent if a record or a kind is invalid or
    cannot be told, :class:`~ledger_node.errors.UnknownRegulator` before anything is sent
    if no (or no single) regulator is registered, and other
    :class:`~ledger_node.errors.LedgerError` subclasses (``ApiError``, ``InvalidKey``,
    ``ChainError``) for failures talking to the node or chain or loading keys. An https
    node is reached with ``tls`` (CA bundle, client certificate).
    """
    lines = read_record_lines(records_path, file_format)
    records = [item.record for item in lines]
    kinds_of: dict[int, PartyKinds] = {}
    if regulator_key is not None:
        kinds_of = {id(item.record): pair
                    for item, pair in zip(lines, party_kinds(records_path, lines), strict=True)}
    crosses = {id(line.record): line.cross for line in lines if line.cross is not None}
    if crosses and counterparties is None:
        raise RecordFileError(f"{records_path}: records name a counterparty but no chain is "
                              "given to read its key from")
    _refuse_bad_rows(records_path, sorted([
        f"{records_path}:{marked.line}: counterparty {platform!r} is this platform itself "
        "(expected the other platform's member name)"
        for marked in lines if marked.cross is not None and marked.cross.counterparty == platform
    ] + [
        f"{records_path}:{item.line}: platform {item.record.platform!r} is not this config's "
        f"platform {platform!r} (expected {platform}'s own records; try the --config of "
        f"{item.record.platform}'s node)"
        for item in lines if item.record.platform != platform], key=_line_number))
    keys = load_member_keys(sm2_key, account_key)
    fingerprints: list[str] = []
    sealing_key: RegulatorKey | None = None
    if regulator_key is None:
        warn("jointledger submit: warning: submitting WITHOUT escrows (--no-escrow): the "
             "regulator cannot trace these records")
    else:
        sealing_key = _recording(regulator_key, fingerprints)
        try:
            sealing_key()
        except UnknownRegulator as exc:
            raise UnknownRegulator(f"{exc}; nothing was submitted (--no-escrow submits "
                                   f"without escrows, which the regulator cannot trace)"
                                   ) from None
    out = out or records_path.with_name(records_path.name + ".receipts.jsonl")
    started = time.perf_counter()
    with PlatformClient(url, platform, keys.address, keys.sm2_key, chunk_size=chunk,
                        regulator_key=sealing_key, tls=tls,
                        counterparties=counterparties if crosses else None) as client:
        for name in sorted({c.counterparty for c in crosses.values()}):
            client.pairwise_key(name)  # an unknown counterparty fails before anything is sent
        submitted = client.submit_records(
            records, progress=progress or progress_bar(),
            kinds=(lambda record: kinds_of[id(record)]) if sealing_key is not None else None,
            cross_platform=(lambda record: crosses.get(id(record))) if crosses else None,
        )
    elapsed = time.perf_counter() - started
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        for item in submitted:
            handle.write(json.dumps({
                "local_tx_id": item.prepared.record.local_tx_id,
                "log_id": item.log_id.hex(),
                "shard": item.shard,
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
    if crosses:
        echo(f"{len(crosses):,} halves of cross-platform payments tagged for reconciliation "
             f"with {', '.join(sorted({c.counterparty for c in crosses.values()}))}")
    if sealing_key is not None:
        used = sorted(set(fingerprints[1:]))  # the first lookup was the check before sending
        echo(f"AML escrows sealed for the regulator (key fingerprint{'s' * (len(used) > 1)} "
             f"{', '.join(used)})")
    echo(f"receipts and openings (keep them private): {out}")
    return 0


def _recording(regulator_key: RegulatorKey, fingerprints: list[str]
               ) -> Callable[[], SM2PublicKey]:
    """``regulator_key`` as a function that notes the fingerprint of each key it returns."""
    def current() -> SM2PublicKey:
        key = regulator_key if isinstance(regulator_key, SM2PublicKey) else regulator_key()
        fingerprints.append(key_fingerprint(key).hex())
        return key

    return current


def run_proof(url: str, index: int, *, out: Path | None, wait: float, echo: Echo = print,
              tls: ClientTls = NO_CLIENT_TLS) -> int:
    """Fetch leaf ``index``'s proof bundle (waiting up to ``wait`` s while it is pending)."""
    with NodeClient(url, tls=tls) as client:
        document = client.bundle_json(index, wait=wait > 0, timeout=wait)
    text = json.dumps(document, indent=2)
    if out is None:
        echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        echo(f"proof bundle of leaf {index} written to {out}")
    return 0


def run_checkpoints(url: str, *, after: int, limit: int, echo: Echo = print,
                    tls: ClientTls = NO_CLIENT_TLS) -> int:
    """Print the node's anchored checkpoints as a table."""
    with NodeClient(url, tls=tls) as client:
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
