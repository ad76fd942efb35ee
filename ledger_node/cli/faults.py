"""``jointledger faults``: what the regulator's node refused from the platform nodes
(altered, withheld or unreadable data; docs/regulator.md, "Faults"), as a table or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger_node.cli.regulator_common import (
    EXIT_OK,
    Echo,
    RegulatorTarget,
    print_json,
    run_regulator_command,
    short,
    table,
)
from ledger_node.client.sdk import RegulatorClient


def run_faults(*, config: Path, url: str | None, as_json: bool = False, echo: Echo = print,
               warn: Echo | None = None) -> int:
    """Print every fault the node recorded; return the exit status (0 even when there are
    faults: listing them worked)."""
    def action(client: RegulatorClient, target: RegulatorTarget) -> int:
        faults = client.faults()
        if as_json:
            print_json({"faults": faults}, echo)
            return EXIT_OK
        rows = [[f["id"], f["kind"], f["platform"], short(f["log_id"], 8),
                 f"[{f['start']}, {f['end']})", str(f["last_seen"])[:19].replace("T", " "),
                 f["detail"]] for f in faults]
        for line in table(["id", "kind", "platform", "log", "leaves", "last seen (UTC)",
                           "detail"], rows, right=(0,)):
            echo(line)
        echo(f"{len(faults)} fault(s) on {target.url}")
        return EXIT_OK

    kwargs: dict[str, Any] = {} if warn is None else {"warn": warn}
    return run_regulator_command("faults", config, url, action, **kwargs)
