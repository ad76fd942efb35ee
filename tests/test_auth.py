"""SM2 member authentication: signed requests (headers, skew, replay, membership from the
chain) and batch signatures, directly and through the API's evidence endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ledger_node.chain.adapter import LedgerChain, Member, Role
from ledger_node.chain.member_cache import StaleWhileRevalidateMembers
from ledger_node.crypto import gmcrypto
from ledger_node.demo.run import Party, new_party
from ledger_node.errors import Forbidden, Unauthenticated
from ledger_node.http_settings import Settings
from ledger_node.log.checkpoint import log_id_for
from ledger_node.log.leaf import batch_digest
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.auth import (
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    NonceCache,
    RequestAuthenticator,
    authenticate_batch,
    authorize_batch_signer,
    sign_batch,
    sign_request,
)
from tests.api_support import Consortium, make_consortium, make_node, random_leaves, submission
from tests.test_api import assert_problem

NOW = 1_800_000_000_000


AUDIENCE = log_id_for("unionpay")  # the node the signed requests are addressed to


def authenticator(consortium: Consortium, now: int = NOW, **kwargs: int) -> RequestAuthenticator:
    return RequestAuthenticator(consortium.chain.member, audience=AUDIENCE,
                                clock_ms=lambda: now, **kwargs)


def headers(party: Party, method: str = "GET", target: str = "/v1/x", body: bytes = b"",
            **kwargs: object) -> dict[str, str]:
    return sign_request(party.sm2_key, party.account.address, method, target, body,
                        audience=kwargs.get("audience", AUDIENCE),  # type: ignore[arg-type]
                        timestamp_ms=kwargs.get("timestamp_ms", NOW),  # type: ignore[arg-type]
                        nonce=kwargs.get("nonce"))  # type: ignore[arg-type]


# ---------------------------------------------------------------------- signed requests


def test_a_request_signed_for_another_node_is_refused(consortium: Consortium) -> None:
    """The audience (the target node's log id) is signed: no replay to another member's node."""
    auth = authenticator(consortium)
    for_wechatpay = headers(consortium.pboc, audience=log_id_for("wechatpay"))
    with pytest.raises(Unauthenticated, match="does not verify"):
        auth.authenticate("GET", "/v1/x", for_wechatpay, b"")


def test_a_signed_request_authenticates_its_member(consortium: Consortium) -> None:
    auth = authenticator(consortium)
    member = auth.authenticate("POST", "/v1/x?a=1", headers(consortium.pboc, "POST",
                                                            "/v1/x?a=1", b"{}"), b"{}")
    assert member.address == consortium.pboc.account.address and member.role is Role.REGULATOR
    restricted = auth.authenticate("GET", "/v1/x", headers(consortium.unionpay), b"",
                                   roles={Role.PLATFORM})
    assert restricted.name == "unionpay"


@pytest.mark.parametrize("change", ["method", "target", "body", "member", "timestamp", "nonce"])
def test_any_change_to_the_signed_request_is_refused(consortium: Consortium,
                                                     change: str) -> None:
    signed = headers(consortium.pboc, "POST", "/v1/x?a=1", b"{}", nonce="n" * 20)
    method, target, body = "POST", "/v1/x?a=1", b"{}"
    if change == "method":
        method = "PUT"
    elif change == "target":
        target = "/v1/x?a=2"
    elif change == "body":
        body = b"{ }"
    elif change == "member":  # claims to be unionpay with pboc's signature
        signed["X-JL-Member"] = consortium.unionpay.account.address
    elif change == "timestamp":
        signed[HEADER_TIMESTAMP] = str(NOW - 1)
    else:
        signed[HEADER_NONCE] = "m" * 20
    with pytest.raises(Unauthenticated, match="does not verify"):
        authenticator(consortium).authenticate(method, target, signed, body)


def test_missing_and_malformed_headers(consortium: Consortium) -> None:
    auth = authenticator(consortium)
    good = headers(consortium.pboc)
    with pytest.raises(Unauthenticated, match="missing authentication header"):
        auth.authenticate("GET", "/v1/x", {}, b"")
    for name, value, reason in (
        ("X-JL-Member", "pboc", "20-byte address"),
        (HEADER_TIMESTAMP, "yesterday", "milliseconds"),
        (HEADER_NONCE, "short", "16..128"),
        (HEADER_SIGNATURE, "not-hex", "hex DER"),
    ):
        with pytest.raises(Unauthenticated, match=reason):
            auth.authenticate("GET", "/v1/x", good | {name: value}, b"")


def test_clock_skew_window(consortium: Consortium) -> None:
    auth = authenticator(consortium, skew_ms=30_000)
    auth.authenticate("GET", "/v1/x", headers(consortium.pboc, timestamp_ms=NOW - 30_000), b"")
    for stamp in (NOW - 30_001, NOW + 30_001):
        with pytest.raises(Unauthenticated, match="from the server clock"):
            auth.authenticate("GET", "/v1/x", headers(consortium.pboc, timestamp_ms=stamp), b"")


def test_replayed_nonces_are_refused(consortium: Consortium) -> None:
    auth = authenticator(consortium)
    signed = headers(consortium.pboc)
    auth.authenticate("GET", "/v1/x", signed, b"")
    with pytest.raises(Unauthenticated, match="replayed"):
        auth.authenticate("GET", "/v1/x", signed, b"")
    # The same nonce from another member is not a replay of this one.
    auth.authenticate("GET", "/v1/x", headers(consortium.unionpay, nonce=signed[HEADER_NONCE]),
                      b"")


def test_nonce_cache_is_bounded_without_opening_a_replay_window() -> None:
    cache = NonceCache(capacity=3)
    for i in range(3):
        cache.remember("0xa", f"nonce-{i}", NOW + i, NOW + 60_000, NOW)
    cache.remember("0xa", "nonce-3", NOW + 3, NOW + 60_000, NOW)  # evicts nonce-0
    assert len(cache) == 3
    with pytest.raises(Unauthenticated, match="older than the replay cache"):
        cache.remember("0xa", "nonce-0", NOW + 0, NOW + 60_000, NOW)  # replay of evicted
    with pytest.raises(Unauthenticated, match="replayed"):
        cache.remember("0xa", "nonce-3", NOW + 3, NOW + 60_000, NOW)
    cache.remember("0xa", "nonce-9", NOW + 9, NOW + 60_000, NOW + 70_000)  # others expired
    assert len(cache) == 1


def test_unknown_removed_and_mis_roled_members(consortium: Consortium) -> None:
    stranger = new_party("stranger", Role.NONE)
    auth = authenticator(consortium)
    with pytest.raises(Unauthenticated, match="not a member"):
        auth.authenticate("GET", "/v1/x", headers(stranger), b"")
    with pytest.raises(Forbidden, match="auditor; only platform"):
        auth.authenticate("GET", "/v1/x", headers(consortium.auditor), b"",
                          roles={Role.PLATFORM})
    # A member signing with a key other than its registered one is not authenticated.
    impostor = Party("pboc", Role.REGULATOR, consortium.pboc.account,
                     gmcrypto.generate_private_key())
    with pytest.raises(Unauthenticated, match="does not verify"):
        auth.authenticate("GET", "/v1/x", headers(impostor), b"")


def test_the_authenticator_reads_membership_through_the_callers_cache_only(
        consortium: Consortium) -> None:
    calls: list[str] = []
    clock = [0.0]

    def lookup(address: str) -> Member:
        calls.append(address)
        return consortium.chain.member(address)

    cache = StaleWhileRevalidateMembers(lookup, ttl=2.0, stale_limit=2.0, refresh_wait=0.0,
                                        clock=lambda: clock[0])
    auth = RequestAuthenticator(cache.get, audience=AUDIENCE, clock_ms=lambda: NOW)
    for _ in range(3):
        auth.authenticate("GET", "/v1/x", headers(consortium.pboc), b"")
    assert len(calls) == 1  # no second cache in front of, or behind, the caller's
    clock[0] = 2.5
    auth.authenticate("GET", "/v1/x", headers(consortium.pboc), b"")
    assert len(calls) == 2


# ---------------------------------------------------------------------- batch signatures


def test_batch_authentication(consortium: Consortium) -> None:
    log_id = b"\x07" * 32
    leaves = random_leaves(2, seed=20)
    members = consortium.chain.member
    owner = consortium.unionpay.account.address

    def check(party: Party, signature: bytes | None = None) -> None:
        authenticate_batch(
            members, platform_address=owner, log_id=log_id, leaves=leaves,
            signer=party.account.address,
            signature=signature if signature is not None else sign_batch(party.sm2_key, log_id,
                                                                          leaves))

    def authorize(party: Party) -> Member:
        return authorize_batch_signer(members, platform_address=owner, log_id=log_id,
                                      signer=party.account.address)

    evidence = authenticate_batch(members, platform_address=owner, log_id=log_id, leaves=leaves,
                                  signer=owner.lower(),
                                  signature=sign_batch(consortium.unionpay.sm2_key, log_id,
                                                       leaves))
    assert evidence.signer == owner and evidence.digest == batch_digest(log_id, leaves)
    with pytest.raises(Forbidden, match="regulator"):
        check(consortium.pboc)
    with pytest.raises(Forbidden, match="regulator"):
        authorize(consortium.pboc)
    with pytest.raises(Forbidden, match="own log"):
        check(consortium.wechatpay)
    with pytest.raises(Forbidden, match="own log"):
        authorize(consortium.wechatpay)
    other = sign_batch(consortium.wechatpay.sm2_key, log_id, leaves)
    with pytest.raises(Unauthenticated, match="does not verify"):
        check(consortium.unionpay, other)
    assert authorize(consortium.unionpay).address == owner  # the signature is the node's job
    with pytest.raises(Unauthenticated, match="not a member"):
        authorize_batch_signer(members, platform_address=owner, log_id=log_id,
                               signer="0x" + "12" * 20)


# ---------------------------------------------------------------------- through the API


@pytest.fixture(scope="module")
def client(node: PlatformNode) -> Iterator[TestClient]:
    with TestClient(create_app(node, Settings(membership_ttl_s=0.0))) as client:
        yield client


def evidence_headers(party: Party, index: int, **kwargs: object) -> dict[str, str]:
    kwargs.setdefault("audience", AUDIENCE)
    return sign_request(party.sm2_key, party.account.address, "GET",
                        f"/v1/leaves/{index}/evidence", b"", **kwargs)  # type: ignore[arg-type]


def test_evidence_endpoint_roles(client: TestClient, node: PlatformNode,
                                 consortium: Consortium) -> None:
    url = f"/v1/logs/{node.log_id.hex()}/leaves"
    leaves = random_leaves(3, seed=21)
    body = submission(consortium.unionpay, node.log_id, leaves)
    index = client.post(url, json=body).json()["receipts"][1]["index"]
    path = f"/v1/leaves/{index}/evidence"
    for party in (consortium.unionpay, consortium.pboc):
        answer = client.get(path, headers=evidence_headers(party, index))
        assert answer.status_code == 200, answer.text
        evidence = answer.json()
        assert evidence["signer"] == consortium.unionpay.account.address
        assert evidence["signature"] == body["signature"]
        assert evidence["digest"] == batch_digest(node.log_id, leaves).hex()
        assert evidence["leaf_count"] == 3
    assert_problem(client.get(path, headers=evidence_headers(consortium.wechatpay, index)), 403,
                   "forbidden", "only unionpay and regulators")
    assert_problem(client.get(path, headers=evidence_headers(consortium.auditor, index)), 403,
                   "forbidden", "auditor")
    assert_problem(client.get(path), 401, "unauthenticated", "missing authentication header")
    replay = evidence_headers(consortium.pboc, index)
    assert client.get(path, headers=replay).status_code == 200
    assert_problem(client.get(path, headers=replay), 401, "unauthenticated", "replayed")
    stale = evidence_headers(consortium.pboc, index, timestamp_ms=NOW)
    assert_problem(client.get(path, headers=stale), 401, "unauthenticated", "server clock")
    other_path = evidence_headers(consortium.pboc, index + 1)
    assert_problem(client.get(path, headers=other_path), 401, "unauthenticated", "not verify")
    missing = node.size() + 5
    assert_problem(client.get(f"/v1/leaves/{missing}/evidence",
                              headers=evidence_headers(consortium.pboc, missing)), 404,
                   "unknown-leaf")


def test_removed_members_lose_access(tmp_path: Path) -> None:
    consortium = make_consortium(LedgerChain.embedded())
    node = make_node(consortium, tmp_path / "removal.db")
    try:
        with TestClient(create_app(node, Settings(membership_ttl_s=0.0))) as client:
            url = f"/v1/logs/{node.log_id.hex()}/leaves"
            leaves = random_leaves(2, seed=22)
            index = client.post(url, json=submission(consortium.unionpay, node.log_id,
                                                     leaves[:1])).json()["receipts"][0]["index"]
            assert client.get(f"/v1/leaves/{index}/evidence", headers=evidence_headers(
                consortium.unionpay, index)).status_code == 200
            wechat = consortium.as_party(consortium.wechatpay)
            proposal, _ = wechat.propose_remove_member(consortium.unionpay.account.address)
            consortium.chain.approve(proposal)
            assert not consortium.chain.member(consortium.unionpay.account.address).active
            assert_problem(client.get(f"/v1/leaves/{index}/evidence",
                                      headers=evidence_headers(consortium.unionpay, index)),
                           403, "forbidden", "removed")
            size = node.size()
            assert_problem(client.post(url, json=submission(consortium.unionpay, node.log_id,
                                                            leaves[1:])),
                           403, "forbidden", "removed")
            assert node.size() == size
    finally:
        node.stop()


def test_authenticator_swapped_with_dependency_overrides(node: PlatformNode,
                                                         consortium: Consortium) -> None:
    """A fixed-clock authenticator in place of the real one: skew is judged by its clock."""
    from api.deps import get_authenticator

    app = create_app(node)
    fixed = authenticator(consortium, now=NOW)
    app.dependency_overrides[get_authenticator] = lambda: fixed
    with TestClient(app) as client:
        url = f"/v1/logs/{node.log_id.hex()}/leaves"
        body = submission(consortium.unionpay, node.log_id, random_leaves(1, seed=23))
        index = client.post(url, json=body).json()["receipts"][0]["index"]
        path = f"/v1/leaves/{index}/evidence"
        on_time = evidence_headers(consortium.pboc, index, timestamp_ms=NOW + 1_000)
        assert client.get(path, headers=on_time).status_code == 200
        now_headers = evidence_headers(consortium.pboc, index)  # the real clock: far off
        assert_problem(client.get(path, headers=now_headers), 401, "unauthenticated",
                       "from the server clock")
    assert len(fixed.nonces) == 1
