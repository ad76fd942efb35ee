"""``jointledger disclose RECEIPTS --field NAME`` (also spelled ``jointledger disclose-field
RECEIPTS --field NAME``): prove one field of a submitted record to a third party and nothing
else (docs/commitments.md, "single-field openings").

The platform's receipts file (what ``jointledger submit`` wrote: one JSON object a line with
the record's commitment, log, index and whole opening) holds every salt; this command picks
one receipt, checks that its opening still opens its commitment, and writes the
:class:`~ledger_node.protocol.commitment.FieldDisclosure` of one field: its value and field
salt, and the other fields' hashes. With the record's proof bundle (``jointledger proof``)
anyone checks it with ``jointledger verify BUNDLE --disclosure FILE``. It is a separate
job from the regulator's ``disclose request|status|collect``, which works on the
regulator's node; ``--field`` tells the two apart on the command line. Exit status: 0
written, 2 unusable input (file, selection, field).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

from ledger_node.cli.regulator_common import EXIT_OK, EXIT_UNUSABLE, CommandRefused, Echo
from ledger_node.errors import InvalidOpening, InvalidRecord
from ledger_node.protocol.commitment import RecordOpening, disclose_field, verify_opening
from ledger_node.protocol.record import FIELD_NAMES


def read_receipts(path: Path) -> list[dict[str, Any]]:
    """The receipts of ``path``: JSON lines as ``jointledger submit`` writes them, or one
    JSON object (a receipt on its own). Refuses files that are neither."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandRefused(f"cannot read receipts {path}: {exc}; expected the receipts file "
                             "jointledger submit wrote (UTF-8 JSON lines). Try: check the "
                             "path, RECORDS.receipts.jsonl by default") from None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        return [whole]
    receipts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            receipt = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CommandRefused(f"{path} line {number} is not JSON ({exc.msg}); expected the "
                                 "receipts file jointledger submit wrote. Try: "
                                 "RECORDS.receipts.jsonl, not the records file") from None
        if not isinstance(receipt, dict) or "opening" not in receipt or "commitment" not in \
                receipt:
            raise CommandRefused(f"{path} line {number} is not a receipt; expected an object "
                                 "with commitment and opening (jointledger submit's receipts). "
                                 "Try: RECORDS.receipts.jsonl as submit wrote it")
        receipts.append(receipt)
    if not receipts:
        raise CommandRefused(f"{path} holds no receipts")
    return receipts


def select_receipt(receipts: list[dict[str, Any]], path: Path, *, local_tx_id: str | None,
                   commitment: str | None) -> dict[str, Any]:
    """The one receipt chosen by ``local_tx_id`` or ``commitment`` (hex), or the only one."""
    if local_tx_id is None and commitment is None:
        if len(receipts) == 1:
            return receipts[0]
        raise CommandRefused(f"{path} holds {len(receipts)} receipts; choose one with "
                             "--tx LOCAL_TX_ID or --commitment HEX")
    wanted = None if commitment is None else commitment.lower().removeprefix("0x")
    found = [r for r in receipts
             if (local_tx_id is None or r.get("local_tx_id") == local_tx_id)
             and (wanted is None or str(r.get("commitment", "")).lower() == wanted)]
    if len(found) != 1:
        chosen = " and ".join(part for part in (
            f"local tx id {local_tx_id!r}" if local_tx_id is not None else "",
            f"commitment {wanted}" if wanted is not None else "") if part)
        raise CommandRefused(f"{len(found)} receipts in {path} have {chosen}; expected "
                             "exactly one (the local_tx_id and commitment keys of its lines)")
    return found[0]


FIELD_ALIASES: Final[dict[str, str]] = {"amount": "amount_fen"}
"""Short names users write for a field (the issue's ``--field amount``). Only exact aliases:
a guessed prefix could disclose a field the user did not mean."""


def field_name(given: str) -> str:
    """The record field ``given`` names (itself, or the field of an alias in
    :data:`FIELD_ALIASES`); else refuse, listing the names."""
    if given in FIELD_NAMES:
        return given
    if given in FIELD_ALIASES:
        return FIELD_ALIASES[given]
    close = [name for name in FIELD_NAMES if name.startswith(given)]
    suggestion = f" (did you mean {', '.join(close)}?)" if close else ""
    raise CommandRefused(f"{given!r} is not a record field{suggestion}; expected one of "
                         f"{', '.join(FIELD_NAMES)}")


def run_disclose_field(receipts_path: Path, *, field: str, out: Path | None = None,
                       local_tx_id: str | None = None, commitment: str | None = None,
                       command: str = "disclose-field", echo: Echo = print,
                       warn: Echo | None = None) -> int:
    """Write (``out``) or print the disclosure of ``field`` of one receipt's record; return
    the exit status. Refusals go to ``warn`` (default standard error) as one line, under
    ``command`` (``disclose-field``, or ``disclose`` for ``disclose RECEIPTS --field``)."""
    def report(text: str) -> None:
        (warn or (lambda line: print(line, file=sys.stderr)))(
            f"jointledger {command}: {text}")

    try:
        name = field_name(field)
        receipt = select_receipt(read_receipts(receipts_path), receipts_path,
                                 local_tx_id=local_tx_id, commitment=commitment)
        try:
            opening = RecordOpening.from_json(receipt["opening"])
            committed = bytes.fromhex(str(receipt["commitment"]))
            verify_opening(committed, opening)
        except (InvalidOpening, InvalidRecord, ValueError) as exc:
            raise CommandRefused(f"the receipt's opening does not open its commitment "
                                 f"{receipt.get('commitment')} ({exc}); expected the receipts "
                                 "file as jointledger submit wrote it. Try: the original "
                                 "receipts file (a changed receipt cannot be used)") from None
        disclosure = disclose_field(opening.record, opening.salt, name).to_json()
    except CommandRefused as exc:
        report(str(exc))
        return exc.exit_status
    text = json.dumps(disclosure, indent=2, ensure_ascii=False) + "\n"
    where = f"log {str(receipt.get('log_id', '?'))[:16]}…, leaf {receipt.get('index', '?')}"
    if out is None:
        echo(text.rstrip("\n"))
        return EXIT_OK
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        report(f"cannot write {out}: {exc.strerror}")
        return EXIT_UNUSABLE
    echo(f"disclosed {name} = {disclosure['value']!r} of record "
         f"{opening.record.local_tx_id!r} ({where}, commitment {receipt['commitment']}) "
         f"to {out}; every other field stays hidden")
    echo(f"anyone checks it with the record's proof bundle: jointledger verify BUNDLE "
         f"--rpc-url URL --disclosure {out}")
    return EXIT_OK
