"""``jointledger trace``: every record of one identity, or the identities behind one
commitment, from the regulator's node, with proof bundles.

A real-name identity is personal data, so it is never taken from the command line by
default (another user of the machine sees a process's argv): ``--identity`` reads it from
a prompt on the terminal, or the first line of standard input; ``--identity-file F`` from
a file. ``--identity-arg VALUE`` takes it from argv, only when asked for, with a warning.
The identity travels to the node in a signed request's body, never in a URL.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from ledger_node.cli.regulator_common import (
    EXIT_OK,
    CommandRefused,
    Echo,
    RegulatorTarget,
    hex_bytes,
    print_json,
    run_regulator_command,
    short,
    table,
    yuan,
)
from ledger_node.client.sdk import RegulatorClient

ARGV_WARNING = ("jointledger trace: warning: the identity was given on the command line "
                "(--identity-arg), where other users of this machine can see it (ps); "
                "prefer --identity (prompt or standard input) or --identity-file")


def read_identity(*, prompt: bool, identity_file: Path | None, stdin: TextIO | None = None,
                  prompt_to: TextIO | None = None) -> str:
    """The identity: the first non-blank line of ``identity_file`` (``-``: standard input)
    or, with ``prompt``, of standard input after a prompt on ``prompt_to`` when it is a
    terminal. Raises :class:`CommandRefused` for an empty or unreadable source."""
    if identity_file is not None and str(identity_file) != "-":
        try:
            text = identity_file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandRefused(f"cannot read the identity from {identity_file}: {exc} "
                                 "(expected a UTF-8 text file, the identity on its first line)"
                                 ) from None
        where = str(identity_file)
    else:
        stdin = stdin or sys.stdin
        prompt_to = prompt_to or sys.stderr
        if prompt and stdin.isatty():
            prompt_to.write("identity to trace: ")
            prompt_to.flush()
        text = stdin.readline()
        where = "standard input"
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    raise CommandRefused(f"no identity in {where} (found only blank lines; expected the "
                         "identity number on the first line)")


def run_trace(*, config: Path, url: str | None, identity: str | None = None,
              identity_key: str | None = None, commitment: str | None = None,
              as_json: bool = False, echo: Echo = print, warn: Echo | None = None) -> int:
    """Trace one identity (or identity key) or one commitment; print the records as a table
    (or the node's JSON answer with ``as_json``); return the exit status."""
    def action(client: RegulatorClient, target: RegulatorTarget) -> int:
        if commitment is not None:
            answer = client.trace_commitment(hex_bytes(commitment, "--commitment"))
            heading = f"commitment {answer['commitment']}"
        elif identity_key is not None:
            answer = client.trace_identity(identity_key=hex_bytes(identity_key,
                                                                  "--identity-key"))
            heading = f"identity key {answer['identity_key']}"
        else:
            answer = client.trace_identity(identity)
            heading = f"identity key {answer['identity_key']}"
        if as_json:
            print_json(answer, echo)
            return EXIT_OK
        records = answer["records"]
        for line in records_table(records):
            echo(line)
        platforms = sorted({str(r["platform"]) for r in records})
        echo(f"{len(records)} record(s) of {heading}"
             + (f" on {', '.join(platforms)}" if platforms else "")
             + ("; --json gives each with its proof bundle" if records else ""))
        return EXIT_OK

    kwargs: dict[str, Any] = {} if warn is None else {"warn": warn}
    return run_regulator_command("trace", config, url, action, **kwargs)


def records_table(records: list[dict[str, Any]]) -> list[str]:
    """Indexed records (as the regulator node answers them) as a table: where each is and
    what its escrow says."""
    rows = []
    for record in records:
        payment = record.get("payment") or {}
        rows.append([
            str(payment.get("time", "(escrow unreadable)"))[:19].replace("T", " "),
            record["platform"], record["index"], yuan(payment.get("amount_fen")),
            short(payment.get("payer_key", "")), short(payment.get("payee_key", "")),
            payment.get("channel", ""), record["ref"].split("/")[1][:8] + "…/"
            + str(record["index"])])
    return table(["time (UTC)", "platform", "index", "amount CNY", "payer key", "payee key",
                  "channel", "log/index"], rows, right=(2, 3))
