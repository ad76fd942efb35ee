"""The regulator node resumes after a SIGKILL, on each store backend: real processes
(``jointledger chain``, ``serve`` for a platform and for the regulator), the regulator killed
after it verified part of the log while the platform goes on, then started again on the same
store. Every leaf ends up indexed exactly once, and a trace finds them all."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from ledger_node.client.sdk import PlatformClient
from ledger_node.demo.localsite import LocalSite
from ledger_node.demo.postgres_cluster import StoreLocations
from ledger_node.protocol.escrow import identity_key
from ledger_node.regulator.open_store import open_regulator_store
from tests.regulator_support import PERSON_TO_MERCHANT, payment


def _wait_verified(site: LocalSite, urls: dict[str, str], size: int) -> None:
    """Until unionpay anchored ``size`` leaves and the regulator verified them all."""
    verify = site.client_tls.ssl_context()
    deadline = time.monotonic() + 90
    while True:
        try:
            health = httpx.get(f"{urls['pboc']}/v1/health", verify=verify, timeout=5).json()
            node = httpx.get(f"{urls['unionpay']}/v1/health", verify=verify, timeout=5).json()
        except httpx.HTTPError:
            health, node = {}, {}
        anchored = (node.get("last_anchored") or {}).get("tree_size", 0)
        if anchored == size and health.get("logs") == 1 and health.get("behind") == 0:
            return
        assert time.monotonic() < deadline, (health, node)
        time.sleep(0.1)


def test_the_regulator_resumes_after_a_sigkill(tmp_path: Path,
                                               regulator_stores: StoreLocations) -> None:
    location = regulator_stores(tmp_path, "pboc-regulator.db")
    url = location if isinstance(location, str) else None
    with LocalSite(tmp_path, tls=False, regulator_store_url=url) as site:  # TLS: elsewhere
        site.start_chain()
        urls = site.start_nodes(["unionpay"], "pboc", seal_interval=0.05, follow_interval=0.1)
        keys, pboc = site.keys("unionpay"), site.keys("pboc")
        client = PlatformClient(urls["unionpay"], "unionpay", keys.address, keys.sm2_key,
                                regulator_key=pboc.sm2_key.public_key(), tls=site.client_tls)

        def submit(first: int, count: int) -> None:
            client.submit_records([payment("unionpay", n, "alice", f"s{n}", 100 + n)
                                   for n in range(first, first + count)],
                                  kinds=lambda record: PERSON_TO_MERCHANT)

        submit(0, 40)
        _wait_verified(site, urls, 40)
        site.kill_process("pboc")  # no shutdown: as in a crash
        submit(40, 60)  # the platform goes on while the regulator is down
        urls["pboc"] = site.start_regulator("pboc", follow_interval=0.1)
        _wait_verified(site, urls, 100)
        site.stop_process("pboc")
    store = open_regulator_store(location, regulator="pboc")
    try:
        (state,) = store.logs()
        assert state.verified_size == 100 == store.record_count()
        assert [r.index for r in store.records(state.log_id, 0, 200)] == list(range(100))
        assert len(store.records_of_identity(identity_key("alice"))) == 100
    finally:
        store.close()
