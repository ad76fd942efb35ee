"""``jointledger casefile build|verify``: a case file from the regulator's node, and its
check against the chain.

``build`` asks the node (``POST /v1/cases``) for a self-contained
``jointledger/case-file/v1`` document on the given identity keys, the identities of the
given alerts, plain identities read from a file (hashed to their keys here, never sent)
and extra record references, with the case's collected disclosures; it is written with
mode 0600 (it holds decrypted payments). ``verify`` checks a case file as ``jointledger
verify`` does, with the chain and the regulator key named in the regulator's config
(docs/casefile.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger_node.chain.rpc_server import DEFAULT_CHAIN_URL
from ledger_node.cli.advice import unreachable_advice
from ledger_node.cli.regulator_common import (
    EXIT_OK,
    CommandRefused,
    Echo,
    RegulatorTarget,
    hex_bytes,
    print_json,
    run_regulator_command,
    table,
    write_private,
)
from ledger_node.client.sdk import RegulatorClient
from ledger_node.errors import InvalidIdentity
from ledger_node.protocol.escrow import identity_key


def identity_keys_from_file(path: Path) -> list[bytes]:
    """The identity key of each non-blank line of ``path`` (one identity per line)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandRefused(f"cannot read identities from {path}: {exc} (expected UTF-8 "
                             "text, one identity per line)") from None
    keys = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                keys.append(identity_key(line.strip()))
            except (InvalidIdentity, ValueError) as exc:
                raise CommandRefused(f"{path}:{number}: not an identity ({exc})") from None
    return keys


def run_casefile_build(*, config: Path, url: str | None, case_id: str, out: Path,
                       identity_keys: Sequence[str] = (), identity_file: Path | None = None,
                       alert_ids: Sequence[int] = (), refs: Sequence[str] = (),
                       as_json: bool = False, echo: Echo = print,
                       warn: Echo | None = None) -> int:
    """Build the case file and write it to ``out``; print what it holds."""
    def action(client: RegulatorClient, target: RegulatorTarget) -> int:
        case = hex_bytes(case_id, "--case-id")
        keys = [hex_bytes(key, "--identity-key") for key in identity_keys]
        if identity_file is not None:
            keys += identity_keys_from_file(identity_file)
        for alert_id in alert_ids:
            keys.append(bytes.fromhex(str(client.alert(alert_id)["identity"])))
        if not keys and not refs:
            raise CommandRefused("nothing to put in the case file: give --identity-key, "
                                 "--identity-file, --alert or --ref")
        unique = list(dict.fromkeys(keys))
        document = client.case_file(case, identities=unique, refs=refs)
        write_private(out, document)
        summary = {"out": str(out), "case_id": document.get("case_id", case.hex()),
                   "identities": len(document.get("identities", [])),
                   "alerts": len(document.get("alerts", [])),
                   "records": len(document.get("records", [])),
                   "disclosures": len(document.get("disclosures", []))}
        if as_json:
            print_json(summary, echo)
            return EXIT_OK
        for line in table(["identities", "alerts", "records", "disclosures"], [[
                summary["identities"], summary["alerts"], summary["records"],
                summary["disclosures"]]], right=(0, 1, 2, 3)):
            echo(line)
        echo(f"case file of case {summary['case_id']} written to {out} (mode 0600; it holds "
             f"decrypted payments); check it with: jointledger casefile verify {out} "
             f"--config {target.config}")
        return EXIT_OK

    kwargs: dict[str, Any] = {} if warn is None else {"warn": warn}
    return run_regulator_command("casefile build", config, url, action, **kwargs)


def run_casefile_verify(path: Path, *, config: Path, rpc_url: str | None = None,
                        as_json: bool = False, echo: Echo = print,
                        warn: Echo | None = None) -> int:
    """Verify the case file at ``path`` against the config's chain (or ``rpc_url``), with
    the config's SM2 key to open its disclosures; 0 valid, 1 not (or unreachable chain),
    2 unusable input. The regulator's node is not asked; the chain is reached with the
    config's ``[tls]`` (CA and client certificate), as the node itself reaches it."""
    from ledger_node.cli.verify import MALFORMED_ADVICE, run_verify_case_file
    from ledger_node.errors import ChainError, LedgerError

    def action(client: RegulatorClient, target: RegulatorTarget) -> int:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CommandRefused(f"cannot read the case file {path}: {exc}; expected the "
                                 "JSON document jointledger casefile build wrote. Try: "
                                 "the path given to casefile build --out") from None
        chain_url = rpc_url or target.rpc_url or DEFAULT_CHAIN_URL
        try:
            return run_verify_case_file(document, rpc_url=chain_url,
                                        deployment=target.deployment,
                                        regulator_keys=[target.sm2_key], as_json=as_json,
                                        echo=echo, tls=target.tls)
        except ChainError as exc:
            raise CommandRefused(unreachable_advice(
                "the chain", chain_url, str(exc),
                url_hint="correct [chain] rpc_url, or give --rpc-url"), 1) from None
        except (LedgerError, ValueError) as exc:
            raise CommandRefused(f"{path}: {exc}; {MALFORMED_ADVICE}") from None

    kwargs: dict[str, Any] = {} if warn is None else {"warn": warn}
    return run_regulator_command("casefile verify", config, None, action, **kwargs)
