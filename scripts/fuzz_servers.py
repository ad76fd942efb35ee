"""Run the adversarial fuzz harness (tests/adversarial.py) against a fresh local consortium
for longer than the test command does: ``python scripts/fuzz_servers.py --seconds 600``.

Starts ``jointledger chain``, a platform node and the regulator node on 127.0.0.1 in a
temporary folder, sends rounds of hostile requests (a new seed each round) and prints what
it saw. Exits 1 if a server answered 5xx, died, stopped answering or changed its stored
state.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger_node.demo.localsite import LocalSite  # noqa: E402
from ledger_node.log.checkpoint import log_id_for  # noqa: E402
from tests.adversarial import Targets, run  # noqa: E402


def main() -> int:
    """Parse the options, run the harness, print the outcome; 0 when nothing fell or lied."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="how long to fuzz")
    parser.add_argument("--seed", type=int, default=0, help="the first round's seed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jl-fuzz-") as folder, \
            LocalSite(Path(folder)) as site:
        chain = site.start_chain()
        urls = site.start_nodes(["unionpay"], regulator="pboc")
        targets = Targets({"platform": urls["unionpay"], "regulator": urls["pboc"],
                           "chain": chain}, site,
                          {"platform": "unionpay", "regulator": "pboc", "chain": "chain"},
                          verify=site.client_tls.ssl_context())
        outcome = run(targets, seed=args.seed, seconds=args.seconds,
                      log_id=log_id_for("unionpay").hex(),
                      progress=lambda line: print(line, file=sys.stderr))
    print(json.dumps({"requests": outcome.sent, "server_errors": outcome.server_errors,
                      "dead": outcome.dead, "statuses": outcome.statuses}, indent=2))
    return 0 if not outcome.server_errors and not outcome.dead else 1


if __name__ == "__main__":
    raise SystemExit(main())
