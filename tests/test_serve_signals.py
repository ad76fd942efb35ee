"""``jointledger serve`` stops cleanly on SIGTERM: the node is drained and sealed (its last
leaves anchored) and the process exits 0, instead of dying when uvicorn re-raises the signal
after its own graceful shutdown."""

from __future__ import annotations

import random
from pathlib import Path

from ledger_node.client.sdk import PlatformClient
from ledger_node.demo.localsite import LocalSite
from ledger_node.demo.run import sample_records
from ledger_node.log.checkpoint import log_id_for


def test_sigterm_drains_and_seals_the_node(tmp_path: Path) -> None:
    with LocalSite(tmp_path) as site:
        site.start_chain()
        url = site.start_node("unionpay", seal_interval=600, seal_size=10_000)
        keys = site.keys("unionpay")
        with PlatformClient(url, "unionpay", keys.address, keys.sm2_key,
                            tls=site.client_tls) as client:
            client.submit_records(sample_records("unionpay", 5, random.Random(3)))
        chain = site.chain().attach(site.deployment)
        assert chain.latest_checkpoint(log_id_for("unionpay")) is None  # not sealed yet

        process = site._processes["unionpay"]
        process.terminate()  # SIGTERM
        assert process.wait(timeout=60) == 0
        latest = chain.latest_checkpoint(log_id_for("unionpay"))
        assert latest is not None and latest.tree_size == 5  # the stop sealed and anchored
