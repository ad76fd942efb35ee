"""``jointledger disclose request|status|collect``: the regulator's disclosure workflow on
its node (docs/regulator.md, "Disclosures").

``request`` has the node log on chain a request that the platform holding a commitment
open it for a case; ``status`` lists the requests made and whether each was collected;
``collect`` fetches the platform's sealed answer, which the node checks against the digest
on chain and the commitment, and keeps. The opening names the payer and payee, so it is
only printed with ``--json`` or written (mode 0600) with ``--out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

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
    write_private,
    yuan,
)
from ledger_node.client.sdk import RegulatorClient
from ledger_node.errors import ApiError

DISCLOSE_ACTIONS: Final = ("request", "status", "collect")
"""The regulator's ``disclose`` actions; anything else with ``--field`` is a receipts file."""
EXIT_PENDING: Final = 3
"""``collect``: the platform has not answered on chain yet (try again later)."""


def run_disclose(action_name: str, *, config: Path, url: str | None,
                 commitment: str | None = None, case_id: str | None = None,
                 request_id: int | None = None, wait: float = 0.0, out: Path | None = None,
                 as_json: bool = False, echo: Echo = print, warn: Echo | None = None) -> int:
    """Run ``request``, ``status`` or ``collect``; return the exit status (``collect``:
    :data:`EXIT_PENDING` while the request is not fulfilled)."""
    def request(client: RegulatorClient, target: RegulatorTarget) -> int:
        if commitment is None or case_id is None:
            raise CommandRefused("disclose request needs --commitment HEX and --case-id HEX")
        made = client.request_disclosure(hex_bytes(commitment, "--commitment"),
                                         hex_bytes(case_id, "--case-id"))
        if as_json:
            print_json(made, echo)
            return EXIT_OK
        echo(f"disclosure request {made['request_id']} logged on chain: {made['platform']} "
             f"is asked to open commitment {made['commitment']} for case {made['case_id']} "
             f"(transaction {made['tx_hash']})")
        echo(f"collect the answer with: jointledger disclose collect --config {target.config} "
             f"--id {made['request_id']}")
        return EXIT_OK

    def status(client: RegulatorClient, target: RegulatorTarget) -> int:
        found = client.requested_disclosures()
        if request_id is not None:
            found = [d for d in found if d["request_id"] == request_id]
            if not found:
                raise CommandRefused(f"this regulator made no disclosure request {request_id} "
                                     f"(try jointledger disclose status --config "
                                     f"{target.config} to list them)", 1)
        if as_json:
            print_json({"disclosures": found}, echo)
            return EXIT_OK
        rows = [[d["request_id"], d["platform"], short(d["commitment"]), short(d["case_id"]),
                 "collected" if d["collected"] else "not collected", short(d["tx_hash"], 14)]
                for d in found]
        for line in table(["id", "platform", "commitment", "case id", "state",
                           "transaction"], rows, right=(0,)):
            echo(line)
        echo(f"{len(found)} disclosure request(s)")
        return EXIT_OK

    def collect(client: RegulatorClient, target: RegulatorTarget) -> int:
        if request_id is None:
            raise CommandRefused("disclose collect needs --id N (jointledger disclose status "
                                 "lists the requests)")
        try:
            answer = client.collect_disclosure(request_id, wait=wait)
        except ApiError as exc:
            if exc.status != 404:
                raise
            raise CommandRefused(
                f"the node at {target.url} answered 404: {exc.detail}; try jointledger "
                f"disclose status --config {target.config} to list the requests", 1) from None
        if answer is None:
            raise CommandRefused(
                f"disclosure request {request_id} is not fulfilled on chain yet (the platform "
                "has not answered); expected the platform to answer through its node: try "
                "again later, or wait with --wait SECONDS", EXIT_PENDING)
        if out is not None:
            write_private(out, answer)
        if as_json:
            print_json(answer, echo)
            return EXIT_OK
        record = answer["opening"]["record"]
        echo(f"disclosure request {request_id} collected and verified: {answer['ref']}")
        for line in table(["local tx id", "time", "amount CNY", "channel"], [[
                record.get("local_tx_id", ""), str(record.get("time", ""))[:19],
                yuan(record.get("amount_fen")), record.get("channel", "")]], right=(2,)):
            echo(line)
        mismatches = answer["escrow_mismatches"]
        echo("the escrow agrees with the opening" if not mismatches else
             f"the escrow contradicts the opening in {', '.join(mismatches)} (recorded as an "
             "escrow-mismatch fault; the opening is the truth)")
        echo(f"the opening (names payer and payee) was written to {out}" if out is not None
             else "the opening names payer and payee: --out FILE writes it (mode 0600), "
                  "--json prints it")
        return EXIT_OK

    actions = {"request": request, "status": status, "collect": collect}
    kwargs: dict[str, Any] = {} if warn is None else {"warn": warn}
    return run_regulator_command(f"disclose {action_name}", config, url,
                                 actions[action_name], **kwargs)
