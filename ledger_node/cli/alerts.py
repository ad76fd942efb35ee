"""``jointledger alerts``: the AML alerts of the regulator's node (each with its lasting
id), or one alert with the records it rests on (``--id N``), as a table or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger_node.cli.regulator_common import (
    EXIT_OK,
    CommandRefused,
    Echo,
    RegulatorTarget,
    print_json,
    run_regulator_command,
    short,
    table,
    yuan,
)
from ledger_node.cli.trace import records_table
from ledger_node.client.sdk import RegulatorClient


def run_alerts(*, config: Path, url: str | None, alert_id: int | None = None,
               rule: str | None = None, as_json: bool = False, echo: Echo = print,
               warn: Echo | None = None) -> int:
    """List the alerts (of ``rule``), or show alert ``alert_id`` with its evidence."""
    def action(client: RegulatorClient, target: RegulatorTarget) -> int:
        if alert_id is not None:
            if alert_id < 1:
                raise CommandRefused(f"--id {alert_id}: alert ids start at 1 (try jointledger "
                                     f"alerts --config {target.config} to list them)")
            return _one(client.alert(alert_id))
        alerts = client.alerts(rule)
        if as_json:
            print_json({"count": len(alerts), "alerts": alerts}, echo)
            return EXIT_OK
        rows = [[a["id"], a["rule"], short(a["identity"]), a["direction"],
                 yuan(a["total_fen"]), str(a["window_start"])[:16].replace("T", " "),
                 ",".join(a["platforms"]), len(a["refs"])] for a in alerts]
        for line in table(["id", "rule", "identity key", "direction", "total CNY",
                           "from (UTC)", "platforms", "records"], rows, right=(0, 4, 7)):
            echo(line)
        echo(f"{len(alerts)} alert(s)" + (f" of rule {rule}" if rule else "")
             + ("; --id N shows one with its evidence" if alerts else ""))
        return EXIT_OK

    def _one(alert: dict[str, Any]) -> int:
        if as_json:
            print_json(alert, echo)
            return EXIT_OK
        echo(f"alert {alert['id']}: {alert['rule']}, {alert['direction']} "
             f"{yuan(alert['total_fen'])} CNY on {', '.join(alert['platforms'])}")
        echo(f"  identity key  {alert['identity']}")
        echo(f"  window        {alert['window_start']} .. {alert['window_end']}")
        echo(f"  detail        {alert['detail']}")
        for line in records_table(alert["evidence"]):
            echo(line)
        echo(f"{len(alert['evidence'])} record(s) of evidence; --json gives each with its "
             "proof bundle")
        return EXIT_OK

    kwargs: dict[str, Any] = {} if warn is None else {"warn": warn}
    return run_regulator_command("alerts", config, url, action, **kwargs)
