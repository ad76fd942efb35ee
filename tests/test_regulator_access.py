"""The platform node's regulator access: whole leaves with escrows for a regulator, and
disclosure answers sealed for the requesting regulator and logged on chain.

Through TestClient and the SDK against the module's real unionpay node on the embedded
chain; every rejection path is asserted with its status and problem type.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ledger_node.chain.adapter import DisclosureRequest, LedgerChain, Member, Role
from ledger_node.client.sdk import (
    DisclosureReceipt,
    PlatformClient,
    RegulatorClient,
    SubmittedRecord,
    registered_regulator_key,
)
from ledger_node.crypto import gmcrypto
from ledger_node.crypto.hashes import sm3
from ledger_node.demo.run import Party, new_party, sample_records
from ledger_node.errors import (
    ApiError,
    DisclosureConflict,
    DisclosureNotAnswered,
    InvalidLeafRange,
    InvalidOpening,
    LeafRangeUnavailable,
    StoreCorrupted,
    UnknownDisclosureRequest,
    UnknownEscrowKey,
    UnknownLeaf,
    UnknownRegulator,
)
from ledger_node.http_settings import Settings
from ledger_node.log.checkpoint import log_id_for
from ledger_node.platform.node import PlatformNode
from ledger_node.platform.store import SQLiteStore, StoredDisclosureResponse
from ledger_node.protocol.aml import PartyKind
from ledger_node.protocol.auth import sign_request
from ledger_node.protocol.commitment import RecordOpening, record_commitment, verify_opening
from ledger_node.protocol.disclosure import (
    open_disclosure_response,
    response_digest,
    seal_disclosure_response,
)
from ledger_node.protocol.escrow import (
    ESCROW_SIZE,
    EscrowOpener,
    EscrowPayload,
    escrow_fingerprint,
    key_fingerprint,
)
from tests.api_support import Consortium, make_consortium, make_node
from tests.test_api import assert_problem

KINDS = (PartyKind.PERSON, PartyKind.INSTITUTION)


@pytest.fixture(scope="module")
def client(node: PlatformNode) -> Iterator[TestClient]:
    with TestClient(create_app(node)) as client:
        yield client


def http_of(client: TestClient) -> httpx.Client:
    return httpx.Client(transport=client._transport, base_url="http://testserver")


def platform_client(consortium: Consortium, client: TestClient, **kwargs: Any
                    ) -> PlatformClient:
    options: dict[str, Any] = {"regulator_key": consortium.pboc.sm2_key.public_key()} | kwargs
    return PlatformClient("http://testserver", "unionpay", consortium.unionpay.account.address,
                          consortium.unionpay.sm2_key, http=http_of(client), **options)


def regulator_client(consortium: Consortium, client: TestClient,
                     log_id: bytes | None = None) -> RegulatorClient:
    return RegulatorClient("http://testserver", consortium.pboc.account.address,
                           consortium.pboc.sm2_key, log_id, http=http_of(client), retries=0)


def submit(consortium: Consortium, client: TestClient, count: int, seed: int,
           **kwargs: Any) -> list[SubmittedRecord]:
    sdk = platform_client(consortium, client, **kwargs)
    records = sample_records("unionpay", count, random.Random(seed))
    return sdk.submit_records(records, kinds=lambda record: KINDS)


def signed_get(client: TestClient, party: Party, target: str,
               audience: bytes = log_id_for("unionpay")) -> httpx.Response:
    headers = sign_request(party.sm2_key, party.account.address, "GET", target,
                           audience=audience)
    return client.get(target, headers=headers)


# ---------------------------------------------------------------------- leaf ranges


def test_a_regulator_reads_whole_leaves_with_their_escrows(
    consortium: Consortium, node: PlatformNode, client: TestClient
) -> None:
    submitted = submit(consortium, client, 12, seed=1, chunk_size=5)
    first = submitted[0].receipt.index
    end = submitted[-1].receipt.index + 1
    assert end - first == 12

    regulator = regulator_client(consortium, client)  # learns the log id from /v1/health
    served = regulator.leaf_range(node.log_id, first, end)
    assert regulator.log_id == node.log_id
    assert (served.platform, served.hash_name, served.start, served.end) == (
        "unionpay", "sm3", first, end)
    assert served.size >= end
    assert served.leaves == [s.prepared.leaf for s in submitted]
    assert regulator.leaves(node.log_id, first + 3, first + 4) == [submitted[3].prepared.leaf]

    opener = EscrowOpener.from_keys(consortium.pboc.sm2_key)
    for item, leaf in zip(submitted, served.leaves, strict=True):
        assert len(leaf.escrow) == ESCROW_SIZE
        assert opener.open(leaf.escrow, leaf.commitment) == EscrowPayload.from_record(
            item.prepared.record, payer_kind=KINDS[0], payee_kind=KINDS[1])
    assert opener.sm2_decryptions == 3  # chunks of 5, 5 and 2

    # the log's own platform may read its leaves too, through a signed request
    own = signed_get(client, consortium.unionpay,
                     f"/v1/logs/{node.log_id.hex()}/leaves?start={first}&end={first + 2}")
    assert own.status_code == 200, own.text
    body = own.json()
    assert body["log_id"] == node.log_id.hex()
    assert body["leaves"] == [s.prepared.leaf.to_json() for s in submitted[:2]]


def test_leaf_range_rejections(consortium: Consortium, node: PlatformNode,
                               client: TestClient) -> None:
    submit(consortium, client, 3, seed=2)
    size = node.size()
    path = f"/v1/logs/{node.log_id.hex()}/leaves"

    def target(start: int, end: int) -> str:
        return f"{path}?start={start}&end={end}"

    assert_problem(client.get(target(0, 1)), 401, "unauthenticated", "missing")
    for party in (consortium.auditor, consortium.wechatpay):
        assert_problem(signed_get(client, party, target(0, 1)), 403, "forbidden",
                       party.name, "only unionpay and regulators")
    signed_elsewhere = signed_get(client, consortium.pboc, target(0, 1),
                                  audience=log_id_for("wechatpay"))
    assert_problem(signed_elsewhere, 401, "unauthenticated", "does not verify")

    for start, end in ((2, 2), (3, 1), (0, 10_001)):
        assert_problem(signed_get(client, consortium.pboc, target(start, end)), 422,
                       "invalid-range", f"[{start}, {end})")
    for bad in (f"{path}?start=-1&end=1", f"{path}?start=0", f"{path}?start=x&end=1",
                f"{path}?start=0&end=0"):
        assert_problem(signed_get(client, consortium.pboc, bad), 422, "validation-error")
    beyond = assert_problem(signed_get(client, consortium.pboc, target(size - 1, size + 1)),
                            416, "range-not-satisfiable", f"its size is {size}")
    assert beyond["size"] == size

    other = log_id_for("wechatpay").hex()
    assert_problem(signed_get(client, consortium.pboc,
                              f"/v1/logs/{other}/leaves?start=0&end=1"),
                   404, "unknown-log", other, node.log_id.hex())

    regulator = regulator_client(consortium, client, node.log_id)
    with pytest.raises(ApiError) as caught:
        regulator.leaves(node.log_id, size, size + 5)
    assert caught.value.status == 416 and caught.value.document["size"] == size
    auditor = RegulatorClient("http://testserver", consortium.auditor.account.address,
                              consortium.auditor.sm2_key, node.log_id, http=http_of(client))
    with pytest.raises(ApiError) as caught:
        auditor.leaves(node.log_id, 0, 1)
    assert caught.value.status == 403


def test_node_and_store_ranges(consortium: Consortium, node: PlatformNode,
                               client: TestClient) -> None:
    submit(consortium, client, 2, seed=3)
    size = node.size()
    assert node.leaves(size - 2, size) == [node.leaf(size - 2), node.leaf(size - 1)]
    assert node.store_for_tests.leaves(size - 2, size) == node.leaves(size - 2, size)
    assert node.store_for_tests.leaves(5, 5) == []
    with pytest.raises(UnknownLeaf, match="not all stored"):
        node.store_for_tests.leaves(size - 1, size + 1)
    with pytest.raises(LeafRangeUnavailable) as caught:
        node.leaves(0, size + 1)
    assert caught.value.size == size
    for start, end in ((-1, 1), (1, 1), (0, 10_001)):
        with pytest.raises(InvalidLeafRange):
            node.leaves(start, end)
    with pytest.raises(InvalidLeafRange, match="integer"):
        node.leaves(0, True)
    with pytest.raises(InvalidLeafRange):
        node.leaves(0, 3, limit=2)


# ---------------------------------------------------------------------- disclosures


def signed_post(client: TestClient, party: Party, target: str, body: dict[str, Any],
                audience: bytes = log_id_for("unionpay")) -> httpx.Response:
    content = json.dumps(body).encode()
    headers = sign_request(party.sm2_key, party.account.address, "POST", target, content,
                           audience=audience)
    return client.post(target, content=content,
                       headers=headers | {"Content-Type": "application/json"})


def pboc_key(consortium: Consortium) -> gmcrypto.SM2PublicKey:
    """pboc's registered key (what a platform seals for)."""
    return consortium.pboc.sm2_key.public_key()


def sealed(consortium: Consortium, request_id: int, opening: RecordOpening,
           key: gmcrypto.SM2PublicKey | None = None) -> bytes:
    commitment = record_commitment(opening.record, opening.salt)
    return seal_disclosure_response(key or pboc_key(consortium), request_id, commitment,
                                    opening, chain_id=consortium.chain.chain_id,
                                    contract=consortium.deployment.address)


def answer_with(sdk: PlatformClient, consortium: Consortium, request_id: int,
                opening: RecordOpening, **kwargs: Any) -> DisclosureReceipt:
    return sdk.answer_disclosure(request_id, opening, pboc_key(consortium),
                                 chain_id=consortium.chain.chain_id,
                                 contract=consortium.deployment.address, **kwargs)


CASE = sm3(b"case 2026-117")


def request_disclosure(consortium: Consortium, node: PlatformNode, platform: Party,
                       commitment: bytes) -> int:
    """pboc logs a disclosure request on chain (under the node's chain lock: the embedded
    chain serves one caller at a time)."""
    return consortium.chain.request_disclosure(platform.account.address, commitment,
                                               CASE)[0]


def chain_request(consortium: Consortium, node: PlatformNode, request_id: int
                  ) -> DisclosureRequest:
    return consortium.chain.disclosure_request(request_id)


def test_disclosure_end_to_end(consortium: Consortium, node: PlatformNode,
                               client: TestClient) -> None:
    submitted = submit(consortium, client, 4, seed=4)
    target = submitted[2]
    commitment = target.prepared.leaf.commitment
    request_id = request_disclosure(consortium, node, consortium.unionpay, commitment)

    sdk = platform_client(consortium, client)
    pending = sdk.disclosure_requests()
    assert [r["id"] for r in pending if r["id"] == request_id] == [request_id]
    listed = next(r for r in pending if r["id"] == request_id)
    assert listed == {
        "id": request_id, "regulator": consortium.pboc.account.address,
        "platform": consortium.unionpay.account.address, "commitment": commitment.hex(),
        "case_id": CASE.hex(), "requested_block": listed["requested_block"],
        "fulfilled": False, "response_digest": None, "answered": False,
    }

    raw_key = consortium.chain.member(listed["regulator"]).public_key
    receipt = sdk.answer_disclosure(request_id, target.prepared.opening,
                                    gmcrypto.SM2PublicKey.from_raw(raw_key),
                                    chain_id=consortium.chain.chain_id,
                                    contract=consortium.deployment.address)
    assert receipt.created and receipt.response_digest == sm3(receipt.response)
    on_chain = chain_request(consortium, node, request_id)
    assert on_chain.fulfilled and on_chain.response_digest == sm3(receipt.response)
    assert on_chain.fulfilled_block == receipt.block
    fulfilled = consortium.chain.events("DisclosureFulfilled", requestId=request_id)
    assert [e.tx_hash for e in fulfilled] == [receipt.tx_hash]
    assert request_id not in [r["id"] for r in sdk.disclosure_requests()]
    stored = node.store_for_tests.disclosure_response(request_id)
    assert stored is not None and stored.leaf_index == target.receipt.index  # found by scan

    regulator = regulator_client(consortium, client, node.log_id)
    state = next(r for r in regulator.disclosures() if r["id"] == request_id)
    assert state["fulfilled"] and state["answered"]
    assert state["response_digest"] == sm3(receipt.response).hex()
    response = regulator.disclosure_response(request_id)
    assert response == receipt.response
    assert response_digest(response) == on_chain.response_digest
    opening = open_disclosure_response(
        [consortium.pboc.sm2_key], response, request_id, on_chain.commitment,
        chain_id=consortium.chain.chain_id, contract=consortium.deployment.address)
    verify_opening(on_chain.commitment, opening)
    assert opening == target.prepared.opening
    raw = signed_get(client, consortium.pboc, f"/v1/disclosures/{request_id}/response").json()
    assert raw == {"request_id": request_id, "response": response.hex(),
                   "response_digest": sm3(response).hex(),
                   "tx_hash": "0x" + receipt.tx_hash.hex()}
    own = signed_get(client, consortium.unionpay, f"/v1/disclosures/{request_id}/response")
    assert own.status_code == 200

    # the same bytes again: the same answer, nothing sent twice
    path = f"/v1/disclosures/{request_id}/response"
    again = signed_post(client, consortium.unionpay, path, {"response": response.hex()})
    assert again.status_code == 200, again.text
    assert again.json() == {"request_id": request_id, "response_digest": sm3(response).hex(),
                            "tx_hash": "0x" + receipt.tx_hash.hex(), "block": receipt.block}
    # a fresh seal of the same opening is different bytes: refused
    with pytest.raises(ApiError) as caught:
        answer_with(sdk, consortium, request_id, target.prepared.opening)
    assert caught.value.status == 409 and "already answered" in caught.value.detail
    assert chain_request(consortium, node, request_id).response_digest == sm3(response)


def test_answering_with_an_index_hint(consortium: Consortium, node: PlatformNode,
                                      client: TestClient) -> None:
    submitted = submit(consortium, client, 2, seed=5)
    target = submitted[1]
    request_id = request_disclosure(consortium, node, consortium.unionpay,
                                    target.prepared.leaf.commitment)
    sdk = platform_client(consortium, client)
    receipt = answer_with(sdk, consortium, request_id, target.prepared.opening,
                          index=target.receipt.index)
    assert receipt.created
    stored = node.store_for_tests.disclosure_response(request_id)
    assert stored is not None and stored.leaf_index == target.receipt.index

    # a wrong hint falls back to the scan
    request_2 = request_disclosure(consortium, node, consortium.unionpay,
                                   submitted[0].prepared.leaf.commitment)
    answer_with(sdk, consortium, request_2, submitted[0].prepared.opening,
                index=target.receipt.index)
    stored = node.store_for_tests.disclosure_response(request_2)
    assert stored is not None and stored.leaf_index == submitted[0].receipt.index


def test_disclosure_rejections(consortium: Consortium, node: PlatformNode,
                               client: TestClient) -> None:
    submitted = submit(consortium, client, 2, seed=6)
    opening = submitted[0].prepared.opening
    commitment = submitted[0].prepared.leaf.commitment
    request_id = request_disclosure(consortium, node, consortium.unionpay, commitment)
    path = f"/v1/disclosures/{request_id}/response"
    good = {"response": sealed(consortium, request_id, opening).hex()}
    sdk = platform_client(consortium, client)

    # who may post: only unionpay itself
    assert_problem(client.post(path, json=good), 401, "unauthenticated", "missing")
    for party in (consortium.pboc, consortium.auditor, consortium.wechatpay):
        assert_problem(signed_post(client, party, path, good), 403, "forbidden",
                       "only unionpay may")
    # who may read: unionpay and regulators
    for party in (consortium.auditor, consortium.wechatpay):
        assert_problem(signed_get(client, party, "/v1/disclosures"), 403, "forbidden")
        assert_problem(signed_get(client, party, path), 403, "forbidden")
    assert_problem(client.get("/v1/disclosures"), 401, "unauthenticated")
    assert_problem(signed_get(client, consortium.pboc, path), 404, "disclosure-not-answered",
                   "is stored here")

    # unknown request
    assert_problem(signed_post(client, consortium.unionpay, "/v1/disclosures/999/response",
                               good), 404, "unknown-disclosure-request", "999")
    with pytest.raises(UnknownDisclosureRequest):
        answer_with(sdk, consortium, 999, opening)
    assert_problem(signed_get(client, consortium.pboc, "/v1/disclosures/999/response"), 404,
                   "disclosure-not-answered")

    # a request addressed to wechatpay, answered at unionpay's node
    foreign = request_disclosure(consortium, node, consortium.wechatpay, commitment)
    assert foreign not in [r["id"] for r in sdk.disclosure_requests(pending_only=False)]
    assert_problem(signed_post(client, consortium.unionpay,
                               f"/v1/disclosures/{foreign}/response",
                               {"response": sealed(consortium, foreign, opening).hex()}),
                   403, "disclosure-not-addressed", "addressed to",
                   consortium.wechatpay.account.address)

    # a commitment that is not in unionpay's log
    absent = request_disclosure(consortium, node, consortium.unionpay, sm3(b"absent"))
    assert_problem(signed_post(client, consortium.unionpay,
                               f"/v1/disclosures/{absent}/response",
                               {"response": sealed(consortium, absent, opening).hex()}),
                   422, "commitment-not-in-log", sm3(b"absent").hex())

    # responses the node can tell are wrong
    for_auditor = sealed(consortium, request_id, opening, consortium.auditor.sm2_key.public_key())
    assert_problem(signed_post(client, consortium.unionpay, path,
                               {"response": for_auditor.hex()}),
                   422, "invalid-disclosure-response", "registered key has fingerprint")
    wrong_version = bytes([2]) + bytes.fromhex(good["response"])[1:]
    assert_problem(signed_post(client, consortium.unionpay, path,
                               {"response": wrong_version.hex()}),
                   422, "invalid-disclosure-response", "version 2")
    assert_problem(signed_post(client, consortium.unionpay, path, {"response": "00" * 40}),
                   422, "invalid-disclosure-response")
    for body in ({"response": "xyz"}, {"response": ""}, {"response": "00", "extra": 1},
                 {"response": "00", "index": -1}, {}):
        assert_problem(signed_post(client, consortium.unionpay, path, body), 422,
                       "validation-error")
    assert_problem(signed_post(client, consortium.unionpay, "/v1/disclosures/0/response",
                               good), 422, "validation-error")

    # the SDK refuses an opening of another commitment before sending anything
    with pytest.raises(InvalidOpening):
        answer_with(sdk, consortium, request_id, submitted[1].prepared.opening)

    # nothing above was stored or logged
    assert node.store_for_tests.disclosure_response(request_id) is None
    assert not chain_request(consortium, node, request_id).fulfilled
    first = signed_post(client, consortium.unionpay, path, good)
    assert first.status_code == 201, first.text
    other = {"response": sealed(consortium, request_id, opening).hex()}
    assert_problem(signed_post(client, consortium.unionpay, path, other), 409,
                   "disclosure-conflict", "already answered")


def test_recovery_after_a_crash_between_store_and_chain(
    consortium: Consortium, node: PlatformNode, client: TestClient
) -> None:
    submitted = submit(consortium, client, 2, seed=7)
    unionpay_chain = consortium.as_party(consortium.unionpay)

    # stored, but the node stopped before sending fulfilDisclosure
    opening = submitted[0].prepared.opening
    first = request_disclosure(consortium, node, consortium.unionpay,
                               submitted[0].prepared.leaf.commitment)
    response = sealed(consortium, first, opening)
    node.store_for_tests.save_disclosure_response(first, submitted[0].receipt.index, response,
                                        sm3(response), 1.0)
    path = f"/v1/disclosures/{first}/response"
    assert_problem(signed_get(client, consortium.pboc, path), 404, "disclosure-not-answered",
                   "not logged on chain yet")
    answer = signed_post(client, consortium.unionpay, path, {"response": response.hex()})
    assert answer.status_code == 201, answer.text
    assert chain_request(consortium, node, first).response_digest == sm3(response)

    # logged on chain, but the node stopped before recording the transaction
    opening = submitted[1].prepared.opening
    second = request_disclosure(consortium, node, consortium.unionpay,
                                submitted[1].prepared.leaf.commitment)
    response = sealed(consortium, second, opening)
    outcome = unionpay_chain.fulfil_disclosure(second, sm3(response))
    other = sealed(consortium, second, opening)
    assert_problem(signed_post(client, consortium.unionpay,
                               f"/v1/disclosures/{second}/response",
                               {"response": other.hex()}),
                   409, "disclosure-conflict", "fulfilled on chain")
    answer = signed_post(client, consortium.unionpay, f"/v1/disclosures/{second}/response",
                         {"response": response.hex()})
    assert answer.status_code == 201, answer.text
    assert answer.json()["tx_hash"] == "0x" + outcome.tx_hash.hex()
    assert answer.json()["block"] == outcome.block_number
    assert regulator_client(consortium, client).disclosure_response(second) == response


# ---------------------------------------------------------------------- stores made earlier


def test_a_store_without_the_disclosure_table_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(path, platform="unionpay", log_id=log_id_for("unionpay"),
                        hash_name="sm3")
    store.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE disclosure_responses")
    db.commit()
    db.close()
    store = SQLiteStore(path, platform="unionpay", log_id=log_id_for("unionpay"),
                        hash_name="sm3")
    assert store.disclosure_responses() == []
    saved = store.save_disclosure_response(3, 0, b"response", sm3(b"response"), 2.0)
    assert saved == StoredDisclosureResponse(3, 0, b"response", sm3(b"response"), 2.0)
    assert not saved.fulfilled
    assert store.save_disclosure_response(3, 0, b"response", sm3(b"response"), 9.0) == saved
    with pytest.raises(DisclosureConflict):
        store.save_disclosure_response(3, 0, b"other", sm3(b"other"), 2.0)
    with pytest.raises(DisclosureNotAnswered):
        store.mark_disclosure_fulfilled(4, b"t" * 32, 5, 3.0)
    done = store.mark_disclosure_fulfilled(3, b"t" * 32, 5, 3.0)
    assert done.fulfilled and (done.tx_hash, done.block_number) == (b"t" * 32, 5)
    store.close()

    db = sqlite3.connect(path)
    db.execute("ALTER TABLE disclosure_responses ADD COLUMN junk TEXT")
    db.commit()
    db.close()
    with pytest.raises(StoreCorrupted, match="disclosure_responses has columns"):
        SQLiteStore(path, platform="unionpay", log_id=log_id_for("unionpay"), hash_name="sm3")


# ---------------------------------------------------------------------- key rotation


class _Members:
    """A chain stand-in that only lists members."""

    def __init__(self, members: list[Member]) -> None:
        self._members = members

    def members(self) -> list[Member]:
        return self._members


def test_a_rotated_regulator_key_takes_effect_at_the_next_batch(
    eth_tester_chain: LedgerChain, tmp_path: Path
) -> None:
    consortium = make_consortium(eth_tester_chain)
    node = make_node(consortium, tmp_path / "store.db")
    pboc = consortium.pboc.account.address
    as_unionpay = consortium.as_party(consortium.unionpay)
    try:
        with TestClient(create_app(node, Settings(membership_ttl_s=0.0))) as client:
            asked: list[gmcrypto.SM2PublicKey] = []

            def current_key() -> gmcrypto.SM2PublicKey:
                key = registered_regulator_key(as_unionpay)
                asked.append(key)
                return key

            sdk = platform_client(consortium, client, regulator_key=current_key, chunk_size=3)
            records = sample_records("unionpay", 8, random.Random(11))
            before = sdk.submit_records(records[:5], kinds=lambda record: KINDS)
            old, new = consortium.pboc.sm2_key, gmcrypto.generate_private_key()
            assert asked == [old.public_key()] * 2  # one call per chunk (3 + 2)

            proposal, _ = consortium.chain.propose_rotate_key(pboc, new.public_key().raw)
            as_unionpay.approve(proposal)
            assert consortium.chain.member(pboc).public_key == new.public_key().raw
            after = sdk.submit_records(records[5:], kinds=lambda record: KINDS)
            assert asked[2:] == [new.public_key()]

            leaves = [node.leaf(s.receipt.index) for s in before + after]
            fingerprints = [escrow_fingerprint(leaf.escrow) for leaf in leaves]
            assert fingerprints == [key_fingerprint(old.public_key())] * 5 + [
                key_fingerprint(new.public_key())] * 3
            both = EscrowOpener.from_keys(old, new)
            for item, leaf in zip(before + after, leaves, strict=True):
                assert both.open(leaf.escrow, leaf.commitment) == EscrowPayload.from_record(
                    item.prepared.record, payer_kind=KINDS[0], payee_kind=KINDS[1])
            with pytest.raises(UnknownEscrowKey):
                EscrowOpener.from_keys(new).open(leaves[0].escrow, leaves[0].commitment)

            # a disclosure answer must be sealed for the key registered now
            target = before[1]
            request_id = request_disclosure(consortium, node, consortium.unionpay,
                                            target.prepared.leaf.commitment)
            path = f"/v1/disclosures/{request_id}/response"
            stale = sealed(consortium, request_id, target.prepared.opening, old.public_key())
            assert_problem(signed_post(client, consortium.unionpay, path,
                                       {"response": stale.hex()}),
                           422, "invalid-disclosure-response", "registered key")
            receipt = sdk.answer_disclosure(request_id, target.prepared.opening,
                                            current_key(), chain_id=eth_tester_chain.chain_id,
                                            contract=consortium.deployment.address)
            regulator = RegulatorClient("http://testserver", pboc, new, http=http_of(client))
            response = regulator.disclosure_response(request_id)
            assert response == receipt.response
            opening = open_disclosure_response(
                (old, new), response, request_id, target.prepared.leaf.commitment,
                chain_id=eth_tester_chain.chain_id, contract=consortium.deployment.address)
            assert opening == target.prepared.opening
            # the old key no longer signs for pboc
            stale_client = RegulatorClient("http://testserver", pboc, old, node.log_id,
                                           http=http_of(client), retries=0)
            with pytest.raises(ApiError) as caught:
                stale_client.disclosure_response(request_id)
            assert caught.value.status == 401

            # with a second regulator the key must be named
            cbirc = new_party("cbirc", Role.REGULATOR)
            proposal, _ = consortium.chain.propose_add_member(
                cbirc.account.address, Role.REGULATOR, "cbirc", cbirc.sm2_key.public_key().raw)
            as_unionpay.approve(proposal)
            with pytest.raises(UnknownRegulator, match="2 active regulators"):
                registered_regulator_key(as_unionpay)
            assert registered_regulator_key(as_unionpay, "pboc") == new.public_key()
            assert registered_regulator_key(as_unionpay, "cbirc") == \
                cbirc.sm2_key.public_key()
            with pytest.raises(UnknownRegulator, match="named 'nobody'"):
                registered_regulator_key(as_unionpay, "nobody")
    finally:
        node.stop()

    removed = Member(pboc, Role.REGULATOR, "pboc", new.public_key().raw, active=False)
    platform = Member(consortium.unionpay.account.address, Role.PLATFORM, "unionpay",
                      consortium.unionpay.sm2_key.public_key().raw)
    for members in ([], [platform], [removed, platform]):
        with pytest.raises(UnknownRegulator, match="no active regulator"):
            registered_regulator_key(_Members(members))  # type: ignore[arg-type]


def test_openapi_documents_the_regulator_endpoints(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths["/v1/logs/{log_id}/leaves"]) == {"get", "post"}
    assert set(paths["/v1/disclosures/{request_id}/response"]) == {"get", "post"}
    assert "get" in paths["/v1/disclosures"]
    responses = paths["/v1/logs/{log_id}/leaves"]["get"]["responses"]
    assert {"200", "401", "403", "404", "416", "422"} <= set(responses)
    post = paths["/v1/disclosures/{request_id}/response"]["post"]["responses"]
    assert {"200", "201", "403", "404", "409", "422"} <= set(post)
    schemas = spec["components"]["schemas"]
    for name in ("LeafRangePublic", "DisclosureRequestPublic", "DisclosureResponseCreate",
                 "DisclosureFulfilment", "DisclosureResponsePublic"):
        assert schemas[name]["examples"], name
