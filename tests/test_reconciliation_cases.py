"""Reconciliation cases and rejections (issue 6): late arrivals within the grace period, a
key rotation inside the window, counterparty nodes serving leaves that do not reproduce the
anchored root, unknown counterparties, bad windows, malformed input, and the SDK's tagging.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ledger_node.chain.adapter import KeyPeriod, LedgerChain, Member, Role
from ledger_node.client.sdk import NodeClient, PlatformClient, SubmittedRecord, SummaryRange
from ledger_node.crypto.gmcrypto import generate_private_key
from ledger_node.demo.run import Party
from ledger_node.errors import (
    ApiError,
    InvalidLeaf,
    InvalidPeerKey,
    InvalidReconciliationInput,
    InvalidRecord,
    InvalidWindow,
    LogVerificationFailed,
    PairwiseKeyUnavailable,
    UnknownCounterparty,
)
from ledger_node.log.leaf import LeafSummary
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.auth import sign_request
from ledger_node.protocol.commitment import RecordOpening, new_salt
from ledger_node.protocol.keys_in_force import platform_member
from ledger_node.protocol.pairwise import CrossPlatform, Side, record_tags
from ledger_node.protocol.reconciliation import ReconciliationReport, Status, Window
from ledger_node.protocol.record import PaymentRecord
from ledger_node.reconcile.reconciler import VerifiedLog, reconcile
from tests.api_support import Consortium, make_consortium
from tests.reconciliation_support import (
    http_client,
    reader,
    sdk,
    start_platforms,
    verified_log,
)
from tests.regulator_support import PERSON_TO_MERCHANT, payment, start_node, wait_anchored

T = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
WINDOW = Window(T - timedelta(hours=1), T + timedelta(hours=1))


def _halves(n: int, amount: int, at: datetime = T, *, payee_amount: int | None = None
            ) -> tuple[PaymentRecord, PaymentRecord]:
    """A payment from a unionpay user to a wechatpay merchant: the two platforms' halves."""
    fields = {"clearing_ref": f"CR-CASE-{n:06d}"}
    mine = payment("unionpay", n, "110105198503142534", "91110000101107370X", amount, at,
                   **fields)
    theirs = payment("wechatpay", n, "110105198503142534", "91110000101107370X",
                     amount if payee_amount is None else payee_amount, at, **fields)
    return mine, theirs


UNIONPAY_HALF = CrossPlatform("wechatpay", Side.PAYER)
WECHATPAY_HALF = CrossPlatform("unionpay", Side.PAYEE)


def _submit(client: PlatformClient, node: PlatformNode, records: list[PaymentRecord],
            cross: CrossPlatform) -> list[SubmittedRecord]:
    submitted = client.submit_records(records, kinds=lambda r: PERSON_TO_MERCHANT,
                                      cross_platform=lambda r: cross)
    wait_anchored(node, node.size())
    return submitted


@dataclass
class Pair:
    consortium: Consortium
    nodes: dict[str, PlatformNode]
    clients: dict[str, PlatformClient]

    def run(self, name: str, submitted: list[SubmittedRecord], **options: Any
            ) -> ReconciliationReport:
        other = "wechatpay" if name == "unionpay" else "unionpay"
        party: Party = getattr(self.consortium, name)
        settings: dict[str, Any] = {
            "grace": 3600, "as_of": WINDOW.end + timedelta(hours=2),
            "own_keys": [party.sm2_key], "window": WINDOW,
            "records": [(s.receipt.index, s.prepared.opening) for s in submitted]} | options
        chain = self.consortium.chain
        return reconcile(chain, own=chain.member(party.account.address),
                         own_log=settings.pop("own_log", verified_log(self.consortium,
                                                                      self.nodes[name])),
                         counterparty=platform_member(chain, other),
                         counterparty_log=settings.pop("counterparty_log", verified_log(
                             self.consortium, self.nodes[other])),
                         **settings)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    consortium = make_consortium(LedgerChain.embedded())
    nodes = start_platforms(consortium, tmp_path_factory.mktemp("recon-cases"))
    try:
        clients = {name: sdk(consortium, getattr(consortium, name), node, nodes)
                   for name, node in nodes.items()}
        yield Pair(consortium, nodes, clients)
    finally:
        for node in nodes.values():
            node.stop()


# ---------------------------------------------------------------------- grace period


def test_a_late_arrival_within_the_grace_period_is_not_missing(pair: Pair) -> None:
    mine, theirs = _halves(1, 52_800, T)
    submitted = _submit(pair.clients["unionpay"], pair.nodes["unionpay"], [mine], UNIONPAY_HALF)
    grace = timedelta(minutes=30)
    within = pair.run("unionpay", submitted, grace=grace, as_of=T + grace - timedelta(seconds=1))
    assert [i.status for i in within.items] == [Status.PENDING]
    assert within.clean  # pending is not a finding
    after = pair.run("unionpay", submitted, grace=grace, as_of=T + grace)
    assert [i.status for i in after.items] == [Status.MISSING] and not after.clean
    _submit(pair.clients["wechatpay"], pair.nodes["wechatpay"], [theirs], WECHATPAY_HALF)
    late = pair.run("unionpay", submitted, grace=grace, as_of=T + grace)
    assert [i.status for i in late.items] == [Status.MATCHED] and late.clean


def test_a_zero_grace_period_reports_at_once(pair: Pair) -> None:
    mine, _ = _halves(2, 10_000, T + timedelta(minutes=5))
    submitted = _submit(pair.clients["unionpay"], pair.nodes["unionpay"], [mine], UNIONPAY_HALF)
    report = pair.run("unionpay", submitted, grace=0, as_of=T + timedelta(minutes=5))
    assert [i.status for i in report.items] == [Status.MISSING]


def test_records_outside_the_window_or_not_cross_platform_are_only_counted(pair: Pair) -> None:
    early, _ = _halves(3, 10_000, WINDOW.start - timedelta(microseconds=1))
    local = payment("unionpay", 4, "110105198503142534", "91110000101107370X", 5_000, T)
    untagged_half, _ = _halves(5, 7_000, T)
    client = pair.clients["unionpay"]
    submitted = _submit(client, pair.nodes["unionpay"], [early], UNIONPAY_HALF)
    submitted += client.submit_records([local], kinds=lambda r: PERSON_TO_MERCHANT)
    untagged = client.submit_records([dataclasses.replace(untagged_half, local_tx_id="un-5")],
                                     kinds=lambda r: PERSON_TO_MERCHANT)
    wait_anchored(pair.nodes["unionpay"], pair.nodes["unionpay"].size())
    report = pair.run("unionpay", submitted + untagged)
    assert report.items == []
    assert report.skipped.to_json() == {"outside_window": 1, "unanchored": 0,
                                        "not_cross_platform": 1, "untagged": 1,
                                        "other_counterparty": 0}


# ---------------------------------------------------------------------- rotation


def _rotate(consortium: Consortium, party: Party) -> Party:
    new_key = generate_private_key()
    proposal, _ = consortium.chain.propose_rotate_key(party.account.address,
                                                      new_key.public_key().raw)
    consortium.as_party(consortium.unionpay).approve(proposal)
    assert consortium.chain.member(party.account.address).public_key == new_key.public_key().raw
    return dataclasses.replace(party, sm2_key=new_key)


def test_a_key_rotation_inside_the_window(tmp_path: Path) -> None:
    """Governance rotates wechatpay's key mid-window. Payments before it are tagged under
    the old pairwise key, after it under the new one, and one payment's halves straddle the
    rotation (unionpay tagged it before, wechatpay after): everything matches, from both
    sides, as long as wechatpay keeps its retired private key."""
    consortium = make_consortium(LedgerChain.embedded())
    union, wechat = consortium.unionpay, consortium.wechatpay
    nodes = {"unionpay": start_node(consortium, union, tmp_path / "u.db"),
             "wechatpay": start_node(consortium, wechat, tmp_path / "w.db",
                                     member_cache_ttl=0.0)}
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        window = Window(now - timedelta(hours=1), now + timedelta(hours=1))
        before = [_halves(10 + n, 1_000 + n, now - timedelta(minutes=30)) for n in range(3)]
        straddle = _halves(20, 4_444, now - timedelta(minutes=20))
        after = [_halves(30 + n, 2_000 + n, now) for n in range(3)]
        u_client = sdk(consortium, union, nodes["unionpay"])
        w_client = sdk(consortium, wechat, nodes["wechatpay"])
        u_sub = _submit(u_client, nodes["unionpay"], [m for m, _ in before] + [straddle[0]],
                        UNIONPAY_HALF)
        w_sub = _submit(w_client, nodes["wechatpay"], [t for _, t in before], WECHATPAY_HALF)
        old_pair = u_client.pairwise_key("wechatpay")
        wechat_new = _rotate(consortium, wechat)
        w_client = sdk(consortium, wechat_new, nodes["wechatpay"])
        assert u_client.pairwise_key("wechatpay").secret != old_pair.secret  # read afresh
        assert w_client.pairwise_key("unionpay").secret == u_client.pairwise_key(
            "wechatpay").secret
        u_sub += _submit(u_client, nodes["unionpay"], [m for m, _ in after], UNIONPAY_HALF)
        w_sub += _submit(w_client, nodes["wechatpay"], [straddle[1]] + [t for _, t in after],
                         WECHATPAY_HALF)
        periods = consortium.chain.key_history(platform_member(consortium.chain, "wechatpay"))
        assert [p.public_key for p in periods] == [wechat.sm2_key.public_key().raw,
                                                  wechat_new.sm2_key.public_key().raw]
        chain = consortium.chain
        reports = {}
        for name, party, keys, submitted, other in (
                ("unionpay", union, [union.sm2_key], u_sub, "wechatpay"),
                ("wechatpay", wechat_new, [wechat_new.sm2_key, wechat.sm2_key], w_sub,
                 "unionpay")):
            reports[name] = reconcile(
                chain, own=chain.member(party.account.address), own_keys=keys,
                own_log=verified_log(consortium, nodes[name]),
                counterparty=platform_member(chain, other),
                counterparty_log=verified_log(consortium, nodes[other]),
                records=[(s.receipt.index, s.prepared.opening) for s in submitted],
                window=window, grace=600, as_of=window.end + timedelta(hours=1))
        for name, report in reports.items():
            assert {i.status for i in report.items} == {Status.MATCHED}, name
            assert len(report.items) == 7 and len(report.key_ids) == 2
            assert report.skipped.other_counterparty == 0
        used = {i.outcome.key_id for i in reports["unionpay"].items}
        assert used == set(reports["unionpay"].key_ids)  # both keys were needed
        with pytest.raises(PairwiseKeyUnavailable, match="retired key"):
            reconcile(chain, own=chain.member(wechat.account.address),
                      own_keys=[wechat_new.sm2_key],
                      own_log=verified_log(consortium, nodes["wechatpay"]),
                      counterparty=platform_member(chain, "unionpay"),
                      counterparty_log=verified_log(consortium, nodes["unionpay"]),
                      records=[], window=window, grace=600)
        # A window wholly after the rotation needs only the new key.
        later = Window(datetime.now(UTC) + timedelta(hours=1), datetime.now(UTC)
                       + timedelta(hours=2))
        report = reconcile(chain, own=chain.member(wechat.account.address),
                           own_keys=[wechat_new.sm2_key],
                           own_log=verified_log(consortium, nodes["wechatpay"]),
                           counterparty=platform_member(chain, "unionpay"),
                           counterparty_log=verified_log(consortium, nodes["unionpay"]),
                           records=[], window=later, grace=600)
        assert len(report.key_ids) == 1
    finally:
        for node in nodes.values():
            node.stop()


def test_key_periods() -> None:
    period = KeyPeriod(b"k", 100, 200)
    at = datetime.fromtimestamp
    assert period.overlaps(at(150, UTC), at(160, UTC))
    assert period.overlaps(at(0, UTC), at(100, UTC))
    assert not period.overlaps(at(200, UTC), at(300, UTC))
    assert not period.overlaps(at(0, UTC), at(99, UTC))
    assert KeyPeriod(b"k", None, None).overlaps(at(0, UTC), at(1, UTC))


# ---------------------------------------------------------------------- counterparty nodes


class Tampering:
    """A counterparty node that changes what it serves."""

    def __init__(self, honest: NodeClient, change: str) -> None:
        self.honest = honest
        self.change = change

    def summaries(self, log_id: bytes, start: int, end: int) -> SummaryRange:
        served = self.honest.summaries(log_id, start, end)
        items = list(served.summaries)
        if self.change == "flip-amount-tag":
            first = next(i for i, s in enumerate(items) if s.amount_tag is not None)
            tag = items[first].amount_tag
            assert tag is not None
            items[first] = dataclasses.replace(items[first], amount_tag=bytes([tag[0] ^ 1])
                                               + tag[1:])
        elif self.change == "drop-tags":
            items = [LeafSummary(s.commitment, s.escrow_digest) for s in items]
        elif self.change == "withhold":
            items = items[:-1]
        elif self.change == "reorder":
            items = items[::-1]
        elif self.change == "other-platform":
            return dataclasses.replace(served, platform="unionpay")
        elif self.change == "hash":
            return dataclasses.replace(served, hash_name="sha256")
        elif self.change == "bogus-hash":
            return dataclasses.replace(served, hash_name="md5")
        elif self.change == "416":
            raise ApiError(416, "range-not-satisfiable", "Leaves beyond the end", "size 0")
        elif self.change == "down":
            raise httpx.ConnectError("connection refused")
        return dataclasses.replace(served, summaries=items)


@pytest.fixture(scope="module")
def tagged_day(pair: Pair) -> list[SubmittedRecord]:
    """A few matched payments, so that both logs hold tagged, anchored leaves."""
    halves = [_halves(100 + n, 3_000 + n, T + timedelta(minutes=n)) for n in range(4)]
    _submit(pair.clients["wechatpay"], pair.nodes["wechatpay"], [t for _, t in halves],
            WECHATPAY_HALF)
    return _submit(pair.clients["unionpay"], pair.nodes["unionpay"], [m for m, _ in halves],
                   UNIONPAY_HALF)


@pytest.mark.parametrize(("change", "kind"), [
    ("flip-amount-tag", "root-mismatch"),
    ("drop-tags", "root-mismatch"),
    ("reorder", "root-mismatch"),
    ("hash", "root-mismatch"),
    ("bogus-hash", "wrong-log"),
    ("withhold", "withheld"),
    ("other-platform", "wrong-log"),
    ("416", "withheld"),
    ("down", "unreachable"),
])
def test_a_counterparty_log_that_does_not_match_the_chain_is_refused(
        pair: Pair, tagged_day: list[SubmittedRecord], change: str, kind: str) -> None:
    consortium, wechat = pair.consortium, pair.nodes["wechatpay"]
    log = VerifiedLog(consortium.chain, platform_member(consortium.chain, "wechatpay"),
                      wechat.log_id, Tampering(reader(wechat), change))
    with pytest.raises(LogVerificationFailed) as caught:
        pair.run("unionpay", tagged_day, counterparty_log=log)
    assert caught.value.kind == kind and caught.value.platform == "wechatpay"
    with pytest.raises(LogVerificationFailed, match="an earlier sync failed"):
        log.sync()  # a refused log stays refused


def test_the_honest_counterparty_log_passes(pair: Pair, tagged_day: list[SubmittedRecord]
                                            ) -> None:
    report = pair.run("unionpay", tagged_day, counterparty_log=VerifiedLog(
        pair.consortium.chain, platform_member(pair.consortium.chain, "wechatpay"),
        pair.nodes["wechatpay"].log_id, Tampering(reader(pair.nodes["wechatpay"]), "none")))
    assert {i.status for i in report.items} == {Status.MATCHED} and len(report.items) == 4


def test_a_log_of_another_owner_is_refused(pair: Pair, tagged_day: list[SubmittedRecord]
                                           ) -> None:
    chain = pair.consortium.chain
    log = VerifiedLog(chain, platform_member(chain, "wechatpay"), pair.nodes["unionpay"].log_id,
                      reader(pair.nodes["unionpay"]))
    with pytest.raises(LogVerificationFailed) as caught:
        log.sync()
    assert caught.value.kind == "wrong-log"


def test_a_checkpoint_signed_by_no_registered_key_is_refused(
        pair: Pair, tagged_day: list[SubmittedRecord], monkeypatch: pytest.MonkeyPatch) -> None:
    stranger = generate_private_key().public_key().raw
    monkeypatch.setattr(LedgerChain, "key_history",
                        lambda chain, member: [KeyPeriod(stranger, None, None)])
    log = verified_log(pair.consortium, pair.nodes["wechatpay"])
    with pytest.raises(LogVerificationFailed) as caught:
        log.sync()
    assert caught.value.kind == "bad-checkpoint-signature"


def test_an_empty_log_has_nothing_anchored(tmp_path: Path) -> None:
    consortium = make_consortium(LedgerChain.embedded())
    node = start_node(consortium, consortium.wechatpay, tmp_path / "w.db")
    try:
        log = verified_log(consortium, node)
        assert log.sync() == 0 and log.anchored_size == 0 and log.tags == {}
    finally:
        node.stop()


def test_sync_reads_only_what_was_anchored_since(pair: Pair, tagged_day: list[SubmittedRecord]
                                                 ) -> None:
    log = verified_log(pair.consortium, pair.nodes["wechatpay"])
    first = log.sync()
    assert first == log.anchored_size > 0 and log.sync() == 0
    more = _halves(200, 9_999, T)[1]
    _submit(pair.clients["wechatpay"], pair.nodes["wechatpay"], [more], WECHATPAY_HALF)
    assert log.sync() == pair.nodes["wechatpay"].size() - first >= 1


# ---------------------------------------------------------------------- who and what


def test_unknown_counterparties_are_refused(pair: Pair) -> None:
    chain = pair.consortium.chain
    with pytest.raises(UnknownCounterparty, match="not registered"):
        platform_member(chain, "alipay")
    with pytest.raises(UnknownCounterparty, match="a regulator, not a platform"):
        platform_member(chain, "pboc")
    with pytest.raises(UnknownCounterparty, match="itself"):
        platform_member(chain, "unionpay", not_address=pair.consortium.unionpay.account.address)


def test_records_that_do_not_open_their_leaf_are_refused(
        pair: Pair, tagged_day: list[SubmittedRecord]) -> None:
    first, second = tagged_day[0], tagged_day[1]
    swapped = [(first.receipt.index, second.prepared.opening)]
    with pytest.raises(InvalidReconciliationInput, match="does not open"):
        pair.run("unionpay", [], records=swapped)
    salted = [(first.receipt.index, RecordOpening(first.prepared.record, new_salt()))]
    with pytest.raises(InvalidReconciliationInput, match="does not open"):
        pair.run("unionpay", [], records=salted)
    theirs = payment("wechatpay", 1, "a", "b", 100, T)
    with pytest.raises(InvalidReconciliationInput, match="not 'unionpay'"):
        pair.run("unionpay", [], records=[(0, RecordOpening(theirs, new_salt()))])


def test_bad_windows_and_grace_are_refused(pair: Pair) -> None:
    with pytest.raises(InvalidWindow):
        pair.run("unionpay", [], grace=-5)
    with pytest.raises(InvalidWindow):
        pair.run("unionpay", [], window=Window(T, T + timedelta(days=40)))


# ---------------------------------------------------------------------- the endpoint


def _post(pair: Pair, signer: Party | None, body: object, node: str = "unionpay"
          ) -> httpx.Response:
    target = pair.nodes[node]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if signer is not None:
        headers |= sign_request(signer.sm2_key, signer.account.address, "POST",
                                "/v1/reconciliation", content, audience=target.log_id)
    client = http_client(target, pair.nodes)
    return client.post("/v1/reconciliation", content=content, headers=headers)


def _body(**changes: Any) -> dict[str, Any]:
    tag = {"match_tag": "ab" * 32, "amount_tag": "cd" * 32}
    body: dict[str, Any] = {
        "counterparty": "wechatpay", "counterparty_url": "http://wechatpay",
        "window": {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()},
        "grace_s": 60, "expectations": [{"index": 0, "time": T.isoformat(), "tags": [tag]}],
    }
    return body | changes


def test_the_endpoint_answers_its_own_platform(pair: Pair, tagged_day: list[SubmittedRecord]
                                               ) -> None:
    answer = _post(pair, pair.consortium.unionpay, _body(as_of=(T + timedelta(hours=5))
                                                        .isoformat()))
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["counts"]["missing"] == 1 and document["items"][0]["bundle"] is not None
    assert document["counterparty_log"]["verified_size"] == pair.nodes["wechatpay"].size()


@pytest.mark.parametrize(("who", "status"), [(None, 401), ("wechatpay", 403), ("pboc", 403),
                                             ("auditor", 403)])
def test_only_the_platform_itself_may_reconcile_on_its_node(pair: Pair, who: str | None,
                                                            status: int) -> None:
    signer = None if who is None else getattr(pair.consortium, who)
    assert _post(pair, signer, _body()).status_code == status


@pytest.mark.parametrize(("changes", "slug"), [
    ({"counterparty": "alipay"}, "unknown-counterparty"),
    ({"counterparty": "unionpay"}, "unknown-counterparty"),
    ({"counterparty": "pboc"}, "unknown-counterparty"),
    ({"window": {"start": T.isoformat(), "end": T.isoformat()}}, "invalid-window"),
    ({"window": {"start": T.isoformat(), "end": (T + timedelta(days=60)).isoformat()}},
     "invalid-window"),
    ({"window": {"start": "2026-11-27T01:00:00", "end": T.isoformat()}}, "validation-error"),
    ({"expectations": [{"index": 0, "time": (T + timedelta(hours=3)).isoformat(),
                        "tags": [{"match_tag": "ab" * 32, "amount_tag": "cd" * 32}]}]},
     "invalid-reconciliation"),
    ({"expectations": [{"index": 0, "time": T.isoformat(), "tags": []}]}, "validation-error"),
    ({"expectations": [{"index": 0, "time": T.isoformat(),
                        "tags": [{"match_tag": "zz", "amount_tag": "cd" * 32}]}]},
     "validation-error"),
    ({"expectations": [{"index": -1, "time": T.isoformat(),
                        "tags": [{"match_tag": "ab" * 32, "amount_tag": "cd" * 32}]}]},
     "validation-error"),
    ({"grace_s": -1}, "validation-error"),
    ({"grace_s": 8 * 86_400}, "validation-error"),
    ({"counterparty_url": "file:///etc/passwd"}, "validation-error"),
    ({"extra": 1}, "validation-error"),
])
def test_endpoint_rejections(pair: Pair, changes: dict[str, Any], slug: str) -> None:
    answer = _post(pair, pair.consortium.unionpay, _body(**changes))
    assert answer.json()["type"].endswith(slug), answer.text
    assert answer.status_code == {"unknown-counterparty": 404}.get(slug, 422)


def test_endpoint_rejects_malformed_json_and_too_many_expectations(pair: Pair) -> None:
    assert _post(pair, pair.consortium.unionpay, b"{").status_code == 400
    many = [{"index": i, "time": T.isoformat(),
             "tags": [{"match_tag": "ab" * 32, "amount_tag": "cd" * 32}]} for i in range(10_001)]
    assert _post(pair, pair.consortium.unionpay, _body(expectations=many)).status_code == 422


def test_endpoint_refuses_a_tampering_counterparty_and_recovers(
        pair: Pair, tagged_day: list[SubmittedRecord]) -> None:
    nodes = pair.nodes
    state: dict[str, str] = {"change": "flip-amount-tag"}
    app = create_app(nodes["unionpay"])
    app.state.summary_sources = lambda url: Tampering(reader(nodes["wechatpay"]), state["change"])
    client = httpx.Client(transport=TestClient(app)._transport, base_url="http://testserver")
    union = pair.consortium.unionpay
    content = json.dumps(_body()).encode()

    def post() -> httpx.Response:
        headers = {"content-type": "application/json"} | sign_request(
            union.sm2_key, union.account.address, "POST", "/v1/reconciliation", content,
            audience=nodes["unionpay"].log_id)
        return client.post("/v1/reconciliation", content=content, headers=headers)

    refused = post()
    assert refused.status_code == 502
    assert refused.json()["type"].endswith("counterparty-log-refused")
    assert "root-mismatch" in refused.json()["detail"]
    state["change"] = "none"
    assert post().status_code == 200  # the refused log was dropped, not kept refused


# ---------------------------------------------------------------------- the SDK's tags


def test_the_sdk_tags_a_cross_platform_record(pair: Pair) -> None:
    mine, _ = _halves(300, 1_234)
    client = pair.clients["unionpay"]
    prepared = client.prepare(mine, cross=UNIONPAY_HALF)
    key = client.pairwise_key("wechatpay")
    assert (prepared.leaf.match_tag, prepared.leaf.amount_tag) == record_tags(key, Side.PAYER,
                                                                              mine)
    plain = client.prepare(mine, salt=prepared.salt)
    assert plain.leaf.commitment == prepared.leaf.commitment  # commitments are unchanged
    assert plain.leaf.match_tag is None


def test_the_sdk_refuses_bad_cross_platform_hints(pair: Pair) -> None:
    mine, _ = _halves(301, 1_234)
    client = pair.clients["unionpay"]
    with pytest.raises(InvalidLeaf, match="not both"):
        client.prepare(mine, cross=UNIONPAY_HALF, match_tag=bytes(32), amount_tag=bytes(32))
    with pytest.raises(InvalidRecord) as caught:
        client.prepare(dataclasses.replace(mine, clearing_ref=""), cross=UNIONPAY_HALF)
    assert caught.value.field == "clearing_ref"
    for name, message in (("unionpay", "itself"), ("alipay", "alipay"), ("pboc", "pboc")):
        with pytest.raises(UnknownCounterparty, match=message):
            client.prepare(mine, cross=CrossPlatform(name, Side.PAYER))
    bare = sdk(pair.consortium, pair.consortium.unionpay, pair.nodes["unionpay"],
               counterparties=None)
    with pytest.raises(UnknownCounterparty, match="without counterparties"):
        bare.prepare(mine, cross=UNIONPAY_HALF)
    with pytest.raises(UnknownCounterparty, match="not a platform"):
        sdk(pair.consortium, pair.consortium.unionpay, pair.nodes["unionpay"],
            counterparties=lambda name: pair.consortium.chain.member(
                pair.consortium.pboc.account.address)).prepare(mine, cross=UNIONPAY_HALF)
    nothing_sent = pair.nodes["unionpay"].size()
    with pytest.raises(InvalidRecord):
        client.submit_records([mine, dataclasses.replace(mine, local_tx_id="x",
                                                         clearing_ref="")],
                              kinds=lambda r: PERSON_TO_MERCHANT,
                              cross_platform=lambda r: UNIONPAY_HALF)
    assert pair.nodes["unionpay"].size() == nothing_sent


def test_a_registered_key_off_the_curve_is_refused(pair: Pair) -> None:
    mine, _ = _halves(302, 1_234)
    wechat = pair.consortium.chain.member(pair.consortium.wechatpay.account.address)
    bogus = Member(wechat.address, Role.PLATFORM, "wechatpay", bytes(64))
    client = sdk(pair.consortium, pair.consortium.unionpay, pair.nodes["unionpay"],
                 counterparties=lambda name: bogus)
    with pytest.raises(InvalidPeerKey, match="point at infinity"):
        client.prepare(mine, cross=UNIONPAY_HALF)
