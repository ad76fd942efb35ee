"""``/v1/risk-devices`` on a real platform node (unionpay) over the embedded chain: checks by
platforms and regulators, writes by the node's own platform, and every rejection as an
RFC 9457 problem."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ledger_node.chain.adapter import LedgerChain, Role
from ledger_node.demo.run import Party, new_party
from ledger_node.log.checkpoint import log_id_for
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.auth import sign_request
from ledger_node.protocol.riskdevice import RiskReason
from ledger_node.protocol.risklist import RiskList, distribute_list_key
from tests.api_support import Consortium, make_consortium, make_node
from tests.test_api import assert_problem

IMEI = "imei:490154203237518"
CHECK = "/v1/risk-devices/check"
BATCH = "/v1/risk-devices/check-batch"
ADD = "/v1/risk-devices"
REMOVE = "/v1/risk-devices/remove"
STATUS = "/v1/risk-devices/status"


@pytest.fixture(scope="module")
def keyed(consortium: Consortium) -> Consortium:
    """The module's consortium with list-key epoch 1 delivered to platforms and pboc."""
    distribute_list_key(consortium.as_party(consortium.pboc), consortium.pboc.sm2_key)
    return consortium


@pytest.fixture(scope="module")
def client(node: PlatformNode, keyed: Consortium) -> Iterator[TestClient]:
    app = create_app(node)
    app.state.risk_list_max_age_s = 0.0  # sync on every request: tests see writes at once
    with TestClient(app) as client:
        yield client


def post(client: TestClient, party: Party, target: str, body: Any,
         audience: bytes = log_id_for("unionpay")) -> httpx.Response:
    content = json.dumps(body).encode()
    headers = sign_request(party.sm2_key, party.account.address, "POST", target, content,
                           audience=audience)
    return client.post(target, content=content,
                       headers=headers | {"Content-Type": "application/json"})


def get(client: TestClient, party: Party, target: str) -> httpx.Response:
    headers = sign_request(party.sm2_key, party.account.address, "GET", target,
                           audience=log_id_for("unionpay"))
    return client.get(target, headers=headers)


def sdk(c: Consortium, party: Party) -> RiskList:
    return RiskList(c.as_party(party), party.sm2_key)


def test_platforms_and_regulators_check_single_and_batch(client: TestClient,
                                                         keyed: Consortium) -> None:
    hit, _ = sdk(keyed, keyed.wechatpay).add(IMEI, "money_mule")
    for party in (keyed.unionpay, keyed.wechatpay, keyed.pboc):
        answer = post(client, party, CHECK, {"fingerprint": " IMEI:4901-5420-3237-518"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body == {
            "fingerprint": IMEI, "listed": True, "entry": hit.entry.hex(),
            "reason": "money_mule", "reason_code": 3, "adder": keyed.wechatpay.account.address,
            "adder_name": "wechatpay", "epoch": 1, "block": hit.block_number,
            "as_of_block": body["as_of_block"],
        }
        assert body["as_of_block"] >= hit.block_number
    clean = post(client, keyed.unionpay, CHECK, {"fingerprint": "android_id:74d56d682e549c"})
    assert {k: v for k, v in clean.json().items() if k != "as_of_block"} == {
        "fingerprint": "android_id:0074d56d682e549c", "listed": False,
    }
    idfv = "idfv:E621E1F8C36C495A93FC0C247A3E6E5F"
    batch = post(client, keyed.pboc, BATCH, {"fingerprints": ["device_id:nope", IMEI, idfv]})
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["listed"] for r in results] == [False, True, False]
    assert results[2]["fingerprint"] == "idfv:e621e1f8-c36c-495a-93fc-0c247a3e6e5f"
    assert batch.json()["listed"] == 1


def test_the_own_platform_adds_and_removes_through_its_node(client: TestClient,
                                                            keyed: Consortium) -> None:
    device = "device_id:farm-7"
    added = post(client, keyed.unionpay, ADD, {"fingerprint": device, "reason": 5})
    assert added.status_code == 201, added.text
    body = added.json()
    assert (body["listed"], body["reason"], body["adder_name"]) == (True, "device_farm",
                                                                    "unionpay")
    assert body["tx_hash"].startswith("0x") and len(body["tx_hash"]) == 66
    seen = sdk(keyed, keyed.pboc)
    seen.sync()
    listed = seen.check(device)
    assert listed is not None and listed.reason is RiskReason.DEVICE_FARM
    assert_problem(post(client, keyed.unionpay, ADD, {"fingerprint": device, "reason": 1}),
                   409, "risk-device-listed", "already listed")
    removed = post(client, keyed.unionpay, REMOVE, {"fingerprint": device})
    assert removed.status_code == 200, removed.text
    assert removed.json()["entry"] == body["entry"]
    assert post(client, keyed.unionpay, CHECK, {"fingerprint": device}).json()["listed"] is False
    assert_problem(post(client, keyed.unionpay, REMOVE, {"fingerprint": device}),
                   404, "risk-device-not-listed", "not listed")
    others = "device_id:listed-by-wechat"
    sdk(keyed, keyed.wechatpay).add(others, 1)
    assert_problem(post(client, keyed.unionpay, REMOVE, {"fingerprint": others}),
                   409, "chain-rejected", "RiskList_NotAdder")


def test_who_may_call(client: TestClient, keyed: Consortium) -> None:
    body = {"fingerprint": IMEI}
    assert_problem(client.post(CHECK, json=body), 401, "unauthenticated", "missing")
    stranger = new_party("stranger", Role.PLATFORM)
    assert_problem(post(client, stranger, CHECK, body), 401, "unauthenticated",
                   "not a member")
    assert_problem(post(client, keyed.auditor, CHECK, body), 403, "forbidden",
                   "only platforms and regulators")
    assert_problem(post(client, keyed.auditor, BATCH, {"fingerprints": [IMEI]}), 403,
                   "forbidden", "hold its key")
    assert_problem(get(client, keyed.auditor, STATUS), 403, "forbidden", "auditor")
    for party in (keyed.wechatpay, keyed.pboc, keyed.auditor):
        assert_problem(post(client, party, ADD, {"fingerprint": IMEI, "reason": 1}), 403,
                       "forbidden", "only unionpay may")
        assert_problem(post(client, party, REMOVE, body), 403, "forbidden", "only unionpay")
    assert_problem(post(client, keyed.unionpay, CHECK, body, audience=log_id_for("wechatpay")),
                   401, "unauthenticated", "signature")


@pytest.mark.parametrize(("target", "body", "status", "slug", "detail"), [
    (CHECK, {"fingerprint": "imei:12345"}, 422, "invalid-fingerprint", "15 digits"),
    (CHECK, {"fingerprint": "serial:abc"}, 422, "invalid-fingerprint", "unknown kind"),
    (CHECK, {"fingerprint": "oaid:00000000-0000-0000-0000-000000000000"}, 422,
     "invalid-fingerprint", "placeholder"),
    (CHECK, {"fingerprint": "device_id:" + "x" * 700}, 422, "validation-error", "fingerprint"),
    (CHECK, {"fingerprint": 490154203237518}, 422, "validation-error", "fingerprint"),
    (CHECK, {"fingerprint": IMEI, "extra": 1}, 422, "validation-error", "extra"),
    (CHECK, {}, 422, "validation-error", "fingerprint"),
    (BATCH, {"fingerprints": [IMEI, IMEI, "imei:x"]}, 422, "invalid-fingerprint",
     "fingerprint [2]"),
    (BATCH, {"fingerprints": []}, 422, "validation-error", "fingerprints"),
    (BATCH, {"fingerprints": [IMEI] * 10_001}, 422, "validation-error", "fingerprints"),
    (ADD, {"fingerprint": "imei:490154203237519", "reason": 9}, 422, "unknown-risk-reason",
     "known: 1 fraud"),
    (ADD, {"fingerprint": "imei:490154203237519", "reason": "phishing"}, 422,
     "unknown-risk-reason", "phishing"),
    (ADD, {"fingerprint": "imei:490154203237519", "reason": 0}, 422, "unknown-risk-reason",
     "0"),
    (ADD, {"fingerprint": "imei:490154203237519", "reason": 1.5}, 422, "validation-error",
     "reason"),
    (ADD, {"fingerprint": "imei:4901542032375", "reason": 1}, 422, "invalid-fingerprint",
     "15 digits"),
    (REMOVE, {"fingerprint": "android_id:xyz"}, 422, "invalid-fingerprint", "hex"),
])
def test_bad_input_is_a_named_problem(client: TestClient, keyed: Consortium, target: str,
                                      body: Any, status: int, slug: str, detail: str) -> None:
    assert_problem(post(client, keyed.unionpay, target, body), status, slug, detail)


def test_status_and_openapi(client: TestClient, keyed: Consortium) -> None:
    status = get(client, keyed.pboc, STATUS)
    assert status.status_code == 200, status.text
    body = status.json()
    assert (body["member"], body["epoch"], body["epoch_open"], body["key_epoch"]) == (
        keyed.unionpay.account.address, 1, True, 1)
    assert body["entries"] == keyed.chain.risk_device_count()
    paths = client.get("/openapi.json").json()["paths"]
    for path in (CHECK, BATCH, ADD, REMOVE, STATUS):
        assert path in paths


def test_a_node_without_the_current_key_answers_503(tmp_path: Path) -> None:
    c = make_consortium(LedgerChain.embedded())
    pboc = c.as_party(c.pboc)
    node = make_node(c, tmp_path / "store.db")
    try:
        app = create_app(node)
        app.state.risk_list_max_age_s = 0.0
        with TestClient(app) as client:
            empty = post(client, c.unionpay, CHECK, {"fingerprint": IMEI})
            assert empty.status_code == 200 and empty.json()["listed"] is False  # no entries
            assert_problem(post(client, c.unionpay, ADD, {"fingerprint": IMEI, "reason": 1}),
                           503, "list-key-unavailable", "epoch 0")
            # Epoch 1 reaches wechatpay only; its entry is one unionpay's node cannot read.
            pboc.set_list_keys(1, {c.wechatpay.account.address: b"\x01"})
            wechat = c.as_party(c.wechatpay)
            wechat.add_risk_device(b"\x07" * 32, 1, 1)
            assert_problem(post(client, c.unionpay, CHECK, {"fingerprint": IMEI}), 503,
                           "list-key-unavailable", "has not delivered")
            assert_problem(post(client, c.pboc, BATCH, {"fingerprints": [IMEI]}), 503,
                           "list-key-unavailable", "epoch(s) 1")
    finally:
        node.stop()
