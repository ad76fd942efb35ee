"""A node's availability while its chain does not answer: ``GET /v1/health`` answers from the
background chain probe instead of waiting on the chain, and intake from signers the node
already knows goes on with their cached membership while it is read again.

The first tests drive :class:`ChainWatch` and :class:`StaleWhileRevalidateMembers` with
probe and lookup functions that block on events the test holds (ordering, not timing); the
last runs two real nodes over a pausable proxy in front of anvil, with a 2 s RPC timeout
(each JSON-RPC request sent 4 times: a call that gets no answer fails after about 10 s).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ledger_node.chain.adapter import LedgerChain, Member, Role
from ledger_node.chain.member_cache import StaleWhileRevalidateMembers
from ledger_node.demo.run import Party
from ledger_node.errors import ChainError
from ledger_node.http_settings import Settings
from ledger_node.platform.chain_watch import ChainProbe, ChainWatch, _Outcome, judge
from ledger_node.platform.node import NodeConfig, PlatformNode
from tests.api_support import Consortium, submission
from tests.test_external_chain import (
    PausableProxy,
    assert_chain_matches_store,
    deploy_on,
    fully_anchored,
    new_leaves,
    wait_for,
)

SAFETY_S = 45.0  # only so that a regression fails instead of hanging; never a speed goal
OUTAGE_RPC_TIMEOUT_S = 2.0


# ------------------------------------------------------------------ the chain watch


class GatedProbe:
    """A probe that answers at once, fails, or blocks until released, as the test says."""

    def __init__(self) -> None:
        self.mode = "answer"
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> ChainProbe:
        if self.mode == "fail":
            raise ChainError("JSON-RPC eth_blockNumber failed after 4 attempts")
        if self.mode == "block":
            self.entered.set()
            self.release.wait()
        return ChainProbe(chain_id=31337, block_number=7, latest_anchored_size=3)


def test_watch_reports_each_probe_and_its_failure() -> None:
    probe = GatedProbe()
    watch = ChainWatch(probe, interval=60.0, max_age=120.0)
    watch.start()
    try:
        first = watch.status(wait=SAFETY_S)
        assert first.probes in (1, 2) and first.failures == 0
        assert first.reachable and first.probe == ChainProbe(31337, 7, 3) and first.error is None
        assert first.checked_at is not None and first.last_answered_at == first.checked_at
        probe.mode = "fail"
        failed = watch.status(wait=SAFETY_S)  # a fresh probe, not the one a minute old
        assert not failed.reachable and failed.probe is None
        assert failed.error == "ChainError: JSON-RPC eth_blockNumber failed after 4 attempts"
        # the start probe may or may not have served the first request, so count from it
        assert (failed.probes, failed.failures) == (first.probes + 1, 1)
        assert failed.last_answered_at == first.checked_at
        probe.mode = "answer"
        again = watch.status(wait=SAFETY_S)
        assert again.reachable and (again.probes, again.failures) == (first.probes + 2, 1)
    finally:
        watch.stop()


def test_status_does_not_wait_behind_a_probe_the_chain_holds() -> None:
    probe = GatedProbe()
    watch = ChainWatch(probe, interval=60.0, max_age=120.0)
    watch.start()
    safety = threading.Timer(SAFETY_S, probe.release.set)
    try:
        before = watch.status(wait=SAFETY_S)
        assert before.reachable
        probe.mode = "block"
        safety.start()
        watch.status(wait=0.01)  # asks for a probe, which the chain now holds
        assert probe.entered.wait(SAFETY_S)
        answered = watch.status(wait=1.0)  # as health does: 1 s after that probe started
        assert not probe.release.is_set(), "status waited for the probe the chain held"
        assert answered.probes == before.probes and answered.reachable  # latest, still young
        probe.mode = "answer"
        probe.release.set()
        assert watch.status(wait=SAFETY_S).probes > before.probes
    finally:
        probe.release.set()
        safety.cancel()
        watch.stop()


def test_a_status_older_than_the_max_age_counts_as_no_answer() -> None:
    answered = _Outcome(finished=100.0, finished_wall=1_795_770_000.0,
                        probe=ChainProbe(1, 2, None), error=None)
    young = judge(answered, now=110.0, max_age=15.0, last_answered_at=1_795_770_000.0,
                  probes=4, failures=0)
    assert young.reachable and young.age_s == 10.0 and young.error is None
    old = judge(answered, now=116.5, max_age=15.0, last_answered_at=1_795_770_000.0,
                probes=4, failures=0)
    assert not old.reachable and old.probe is None and old.age_s == 16.5
    assert old.error == "the chain has not answered for 16.5 s (a probe is still waiting for it)"
    assert old.checked_at == 1_795_770_000.0
    never = judge(None, now=1.0, max_age=15.0, last_answered_at=None, probes=0, failures=0)
    assert not never.reachable and never.error == "the chain has not been probed yet"
    with pytest.raises(ValueError, match="probe interval < max age"):
        ChainWatch(GatedProbe(), interval=15.0, max_age=15.0)


def test_a_watch_not_started_probes_in_the_caller() -> None:
    watch = ChainWatch(GatedProbe(), interval=1.0, max_age=5.0)
    assert watch.snapshot().error == "the chain has not been probed yet"
    assert watch.status(wait=1.0).reachable


# ------------------------------------------------------------------ the membership cache


def member(active: bool = True) -> Member:
    return Member("0x" + "11" * 20, Role.PLATFORM, "unionpay", b"\x01" * 64, active)


class GatedLookup:
    """A chain's membership records that can fail, or block until released."""

    def __init__(self) -> None:
        self.record = member()
        self.mode = "answer"
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, address: str) -> Member:
        self.calls += 1
        if self.mode == "fail":
            raise ChainError("the chain does not answer")
        if self.mode == "block":
            self.entered.set()
            self.release.wait()
        return self.record


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(lookup: Callable[[str], Member], clock: Clock, **kwargs: Any
          ) -> StaleWhileRevalidateMembers:
    settings: dict[str, Any] = {"ttl": 1.0, "stale_limit": 60.0, "refresh_wait": 0.05}
    return StaleWhileRevalidateMembers(lookup, clock=clock, **(settings | kwargs))


def test_a_known_member_is_served_while_the_chain_holds_its_refresh() -> None:
    lookup, clock = GatedLookup(), Clock()
    members = cache(lookup, clock)
    address = member().address
    assert members.get(address).active and lookup.calls == 1
    clock.now += 0.5
    assert members.get(address).active and lookup.calls == 1  # within the TTL: no read
    lookup.mode, lookup.record = "block", member(active=False)  # removed, chain stuck
    clock.now += 1.0
    try:
        assert members.get(address).active  # stale, while the chain holds the refresh
        assert lookup.entered.is_set() and not lookup.release.is_set()
        assert members.get(address).active and lookup.calls == 2  # one refresh at a time
    finally:
        lookup.release.set()
    wait_for("the refresh to land", lambda: not members.get(address).active)
    assert lookup.calls == 2 and members.failed_reads == 0


def test_a_removal_takes_effect_at_once_while_the_chain_answers() -> None:
    lookup, clock = GatedLookup(), Clock()
    members = cache(lookup, clock, ttl=0.0, refresh_wait=SAFETY_S)
    address = member().address
    assert members.get(address).active
    lookup.record = member(active=False)
    assert not members.get(address).active  # the caller waited for the prompt answer
    cached = cache(lookup, clock, ttl=60.0, refresh_wait=SAFETY_S)
    lookup.record = member()
    assert cached.get(address).active
    lookup.record = member(active=False)
    assert cached.get(address).active  # within the cache's TTL
    assert not cached.get(address, ttl=0.0).active  # a caller keeping records itself


def test_missing_or_too_old_records_wait_for_the_chain_and_fail_with_it() -> None:
    lookup, clock = GatedLookup(), Clock()
    members = cache(lookup, clock)
    address = member().address
    lookup.mode = "fail"
    with pytest.raises(ChainError, match="does not answer"):
        members.get(address)  # a first-time signer: nothing to fall back on
    lookup.mode = "answer"
    assert members.get(address).active
    lookup.mode = "fail"
    clock.now += 30.0
    assert members.get(address).active  # stale but within the limit
    wait_for("the failed refresh", lambda: members.failed_reads == 2)
    clock.now += 31.0
    with pytest.raises(ChainError, match="does not answer"):
        members.get(address)  # past the stale limit
    assert members.failed_reads == 3
    with pytest.raises(ValueError, match="must not be negative"):
        cache(lookup, clock, refresh_wait=-1.0)


# ------------------------------------------------------------------ two nodes, anvil paused


def node_of(party: Party, url: str, consortium: Consortium, store: Path,
            **config: Any) -> PlatformNode:
    chain = LedgerChain.from_rpc(url, request_timeout=OUTAGE_RPC_TIMEOUT_S, receipt_timeout=5.0)
    bound = chain.with_account(party.account).attach(consortium.deployment)
    settings: dict[str, Any] = {"seal_interval": 0.05, "chain_status_max_age": 120.0} | config
    node = PlatformNode(NodeConfig(platform=party.name, store_path=store, **settings), bound,
                        party.sm2_key)
    node.start()
    return node


def post(client: TestClient, node: PlatformNode, party: Party, count: int) -> Any:
    url = f"/v1/logs/{node.log_id.hex()}/leaves"
    return client.post(url, json=submission(party, node.log_id, new_leaves(count)))


@pytest.mark.anvil
@pytest.mark.slow
def test_health_and_known_signers_stay_available_while_the_rpc_does_not_answer(
    anvil_url: str, tmp_path: Path
) -> None:
    consortium = deploy_on(anvil_url)
    proxy = PausableProxy(int(anvil_url.rsplit(":", 1)[1]))
    # unionpay has submitted before the outage; wechatpay submits for the first time in it
    # (its watch probes only at start, so its first read does not queue behind probes).
    union = node_of(consortium.unionpay, proxy.url, consortium, tmp_path / "u.db",
                    member_cache_ttl=0.2, chain_probe_interval=0.5)
    wechat = node_of(consortium.wechatpay, proxy.url, consortium, tmp_path / "w.db",
                     chain_probe_interval=60.0)
    union_api = TestClient(create_app(union, Settings(membership_ttl_s=0.2)))
    wechat_api = TestClient(create_app(wechat, Settings()))
    try:
        assert post(union_api, union, consortium.unionpay, 3).status_code == 201
        wait_for("the first anchoring", lambda: fully_anchored(union))
        before = union_api.get("/v1/health").json()
        assert before["status"] == "ok" and before["chain"]["reachable"] is True
        assert before["chain"]["checked_at"] == before["chain"]["last_answered_at"]
        assert before["chain"]["age_s"] >= 0 and before["chain"]["latest_anchored_size"] == 3
        failures_before = union.chain_status().failures
        proxy.pause()

        first_time: dict[str, Any] = {}

        def first_submission() -> None:
            first_time["response"] = post(wechat_api, wechat, consortium.wechatpay, 2)
            first_time["paused"] = proxy.paused

        newcomer = threading.Thread(target=first_submission, daemon=True)
        newcomer.start()

        # (a) health answers from the latest probe (a failure) while the next one is held
        wait_for("a failed probe", lambda: union.chain_status().failures > failures_before,
                 timeout=SAFETY_S)
        probes = union.chain_status().probes
        during = union_api.get("/v1/health")
        assert proxy.paused and union.chain_status().probes == probes
        assert during.status_code == 503
        problem = during.json()
        assert problem["type"].endswith("/problems/chain-unavailable")
        chain = problem["health"]["chain"]
        assert chain["reachable"] is False and chain["error"].startswith("ChainError: ")
        assert "failed after 4 attempts" in chain["error"] and chain["error"] in problem["detail"]
        assert chain["checked_at"] > chain["last_answered_at"] >= before["chain"]["checked_at"]
        assert problem["health"]["status"] == "degraded"
        assert problem["health"]["store_size"] == 3

        # (b) a known signer's batch is acknowledged before the next chain call gives up
        # (the probe held now, or the membership refresh behind it): it waited for neither.
        failures_before = union.chain_status().failures
        acknowledged = post(union_api, union, consortium.unionpay, 4)
        assert acknowledged.status_code == 201, acknowledged.text
        assert proxy.paused and union.chain_status().failures == failures_before
        assert union.metrics()["member_read_failures"] == 0.0
        assert union.size() == 7

        # (c) a first-time signer gets the chain's failure as a 503 problem, in the outage
        newcomer.join(SAFETY_S)
        assert not newcomer.is_alive(), "the first-time signer's submission hangs"
        assert first_time["paused"]
        refused = first_time["response"]
        assert refused.status_code == 503, refused.text
        assert refused.json()["type"].endswith("/problems/chain-unavailable")
        assert wechat.size() == 0

        proxy.resume()
        wait_for("the outage's leaves anchored", lambda: fully_anchored(union))
        wait_for("health ok again",
                 lambda: union_api.get("/v1/health").json().get("status") == "ok")
        assert post(wechat_api, wechat, consortium.wechatpay, 2).status_code == 201
        assert union.latest_checkpoint() is not None
        assert_chain_matches_store(union, anvil_url)
    finally:
        union.stop()
        wechat.stop()
        proxy.close()


@pytest.mark.parametrize(("settings", "message"), [
    ({"chain_probe_interval": 20.0}, "chain_probe_interval < chain_status_max_age"),
    ({"chain_probe_interval": 0.0}, "chain_probe_interval < chain_status_max_age"),
    ({"member_refresh_wait": -1.0}, "must not be negative"),
])
def test_node_config_refuses_bad_watch_and_cache_settings(
        tmp_path: Path, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):  # before any node opens a store
        NodeConfig(platform="unionpay", store_path=tmp_path / "node.db", **settings)
