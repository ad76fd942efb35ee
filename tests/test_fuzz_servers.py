"""A bounded pass of the adversarial harness (tests/adversarial.py) against real processes: a
platform node, the regulator node and ``jointledger chain``. No 5xx, every process alive and
answering, the stored state unchanged. ``scripts/fuzz_servers.py`` runs longer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger_node.demo.localsite import LocalSite
from ledger_node.log.checkpoint import log_id_for
from tests.adversarial import Targets, cases, run

pytestmark = pytest.mark.slow

SECONDS = 25.0


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Targets]:
    root: Path = tmp_path_factory.mktemp("fuzz-site")
    with LocalSite(root) as site:
        chain = site.start_chain()
        urls = site.start_nodes(["unionpay"], regulator="pboc")
        yield Targets({"platform": urls["unionpay"], "regulator": urls["pboc"], "chain": chain},
                      site, {"platform": "unionpay", "regulator": "pboc", "chain": "chain"},
                      verify=site.client_tls.ssl_context())


def test_every_family_is_generated() -> None:
    families = {case.family.split(":")[0] for case in cases(0, "00" * 32)}
    assert families == {"encoding", "numbers", "structure", "paths", "headers"}
    servers = {case.server for case in cases(0, "00" * 32)}
    assert servers == {"platform", "regulator", "chain"}


def test_no_input_makes_a_server_fall_or_lie(targets: Targets) -> None:
    outcome = run(targets, seed=1, seconds=SECONDS, log_id=log_id_for("unionpay").hex())
    print(f"adversarial fuzz: {outcome.sent} requests in {SECONDS:.0f} s; "
          f"families {sorted(outcome.statuses)}")
    assert outcome.dead == []
    assert outcome.server_errors == []
    assert outcome.sent > 200
