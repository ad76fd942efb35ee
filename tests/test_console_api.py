"""The web console's backend through the real regulator app: login, sessions, the auditor
and regulator views, CSRF, verification of dropped documents, static files, console-login.

One regulator node with data (tests/console_support.py) serves every test; each test gets
its own app (own session store on an injected clock) over that node.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.console_session import ConsoleSessions
from api.regulator_app import create_regulator_app
from api.routes.console import CONTENT_SECURITY_POLICY
from ledger_node.chain.adapter import Role
from ledger_node.cli.console import (
    ConsoleLoginRefused,
    login_target,
    request_login_url,
    run_console_login,
)
from ledger_node.crypto.keyfiles import MemberKeys, write_member_keys
from ledger_node.demo.postgres_cluster import StoreLocations
from ledger_node.demo.run import Party, new_party
from ledger_node.errors import InvalidConfig
from ledger_node.http_settings import Settings
from ledger_node.protocol.escrow import identity_key
from tests.console_support import (
    STRUCTURING_IDENTITY,
    ConsoleData,
    ConsoleSite,
    build_console_data,
    console_site,
    serve_in_thread,
    signed_console_login,
)

CSRF = {"X-JL-Console": "1"}


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, regulator_stores: StoreLocations
         ) -> Iterator[ConsoleData]:
    """The console's data, the regulator's store on each backend."""
    tmp = tmp_path_factory.mktemp("console-api")
    built = build_console_data(tmp, regulator_stores(tmp, "pboc.db"))
    yield built
    built.stop()


class Console:
    """A browser's view of the console: a cookie jar on one app, and a way to log in."""

    def __init__(self, data: ConsoleData, clock: Clock, base_url: str = "http://testserver"
                 ) -> None:
        self.data = data
        self.clock = clock
        self.sessions = ConsoleSessions(clock=clock)
        self.app = create_regulator_app(data.regulator, Settings(membership_ttl_s=0.0),
                                        console_sessions=self.sessions)
        self.client = TestClient(self.app, base_url=base_url)

    def token(self, party: Party | None = None) -> str:
        """A login token from the signed request of ``party`` (default pboc)."""
        answer = signed_console_login("", party or self.data.consortium.pboc,
                                      http=self.client)
        assert answer.status_code == 201, answer.text
        login_path = answer.json()["login_path"]
        assert login_path.startswith("/console/#login=")
        return str(login_path.removeprefix("/console/#login="))

    def exchange(self, token: str) -> Any:
        return self.client.post("/console/api/session", json={"token": token}, headers=CSRF)

    def login(self, party: Party | None = None) -> None:
        answer = self.exchange(self.token(party))
        assert answer.status_code == 200, answer.text


@pytest.fixture()
def console(data: ConsoleData) -> Console:
    return Console(data, Clock())


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    document: dict[str, Any] = response.json()
    assert document["type"].endswith(f"/{slug}"), document
    assert document["status"] == status and document["detail"]
    return document


REGULATOR_ONLY = ["/console/api/alerts", "/console/api/alerts/1", "/console/api/faults"]


# ------------------------------------------------------------------ login and sessions


def test_login_token_opens_a_regulator_session_with_a_strict_cookie(console: Console) -> None:
    answer = signed_console_login("", console.data.consortium.pboc, http=console.client)
    assert answer.status_code == 201
    assert answer.json()["expires_in_s"] == 60
    token = answer.json()["login_path"].removeprefix("/console/#login=")
    assert len(token) == 43  # 32 random bytes, URL-safe base64
    opened = console.exchange(token)
    assert opened.status_code == 200
    pboc = console.data.consortium.pboc
    assert opened.json() == {"role": "regulator", "member": pboc.account.address,
                             "name": "pboc"}
    cookie = opened.headers["set-cookie"]
    for part in ("jl_console=", "HttpOnly", "SameSite=strict", "Path=/console",
                 "Max-Age=28800"):
        assert part in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    assert console.client.get("/console/api/session").json()["role"] == "regulator"
    assert console.client.get("/console/api/alerts").status_code == 200


def test_the_cookie_is_secure_over_https(data: ConsoleData) -> None:
    console = Console(data, Clock(), base_url="https://testserver")
    answer = console.exchange(console.token())
    assert answer.status_code == 200
    assert "Secure" in answer.headers["set-cookie"]


def test_a_token_works_once(console: Console) -> None:
    token = console.token()
    assert console.exchange(token).status_code == 200
    problem(console.exchange(token), 401, "unauthenticated")
    problem(console.exchange("x" * 43), 401, "unauthenticated")
    problem(console.client.post("/console/api/session", json={"token": ""}, headers=CSRF),
            422, "validation-error")
    problem(console.client.post("/console/api/session", json={"tok": "a"}, headers=CSRF),
            422, "validation-error")


def test_a_token_expires_after_a_minute_and_a_session_after_eight_hours(
        console: Console) -> None:
    late = console.token()
    console.clock.now += 61
    problem(console.exchange(late), 401, "unauthenticated")
    in_time = console.token()
    console.clock.now += 59
    assert console.exchange(in_time).status_code == 200
    console.clock.now += 8 * 3600 - 1
    assert console.client.get("/console/api/alerts").status_code == 200
    console.clock.now += 2
    problem(console.client.get("/console/api/alerts"), 401, "unauthenticated")
    assert console.client.get("/console/api/session").json()["role"] == "auditor"


def test_only_regulators_get_login_tokens(console: Console) -> None:
    c = console.data.consortium
    for other in (c.unionpay, c.wechatpay, c.auditor):
        document = problem(signed_console_login("", other, http=console.client), 403,
                           "forbidden")
        assert "only regulator" in document["detail"]
    problem(console.client.post("/v1/console/sessions"), 401, "unauthenticated")
    problem(signed_console_login("", c.pboc, regulator_name="other", http=console.client),
            401, "unauthenticated")  # signed for another regulator node


def test_logout_ends_the_session_and_clears_the_cookie(console: Console) -> None:
    console.login()
    session_id = console.client.cookies["jl_console"]
    problem(console.client.delete("/console/api/session"), 403, "forbidden")  # no CSRF header
    answer = console.client.delete("/console/api/session", headers=CSRF)
    assert answer.status_code == 204
    assert "jl_console=" in answer.headers["set-cookie"]
    assert "Max-Age=0" in answer.headers["set-cookie"]
    problem(console.client.get("/console/api/alerts"), 401, "unauthenticated")
    console.client.cookies.set("jl_console", session_id)
    # the session itself is gone, not only the cookie
    problem(console.client.get("/console/api/alerts"), 401, "unauthenticated")
    assert console.client.delete("/console/api/session", headers=CSRF).status_code == 204


def test_session_store_is_bounded_and_keeps_no_secret() -> None:
    clock = Clock()
    sessions = ConsoleSessions(clock=clock, max_tokens=2, max_sessions=2)
    from ledger_node.protocol.auth import AuthenticatedMember

    member = AuthenticatedMember("0x" + "11" * 20, Role.REGULATOR, "pboc")
    tokens = [sessions.issue_token(member) for _ in range(3)]
    assert sessions.counts() == (2, 0)
    with pytest.raises(Exception, match="unknown, used or expired"):
        sessions.exchange(tokens[0])  # evicted: the oldest went
    ids = [sessions.exchange(t)[0] for t in tokens[1:]]
    ids.append(sessions.exchange(sessions.issue_token(member))[0])
    assert sessions.session(ids[0]) is None and sessions.session(ids[2]) is not None
    assert not any(t.encode() in repr(vars(sessions)).encode() for t in tokens + ids)
    with pytest.raises(ValueError):
        ConsoleSessions(max_sessions=0)


def test_a_removed_regulator_loses_the_regulator_view(console: Console) -> None:
    """A second regulator (cbirc) is admitted by governance, logs in, and is voted out."""
    c = console.data.consortium
    cbirc = new_party("cbirc", Role.REGULATOR)
    c.chain.fund(cbirc.account.address, 10**18, c.chain.dev_faucet())
    proposal, _ = c.chain.propose_add_member(cbirc.account.address, Role.REGULATOR,
                                             "cbirc", cbirc.sm2_key.public_key().raw)
    c.as_party(c.unionpay).approve(proposal)
    assert c.chain.member(cbirc.account.address).active
    console.login(cbirc)
    assert console.client.get("/console/api/alerts").status_code == 200
    waiting = console.token(cbirc)  # issued before the removal, spent after
    proposal, _ = c.chain.propose_remove_member(cbirc.account.address)
    c.as_party(c.unionpay).approve(proposal)
    assert not c.chain.member(cbirc.account.address).active
    for path in REGULATOR_ONLY:
        document = problem(console.client.get(path), 403, "forbidden")
        assert "removed" in document["detail"]
    problem(console.exchange(waiting), 403, "forbidden")
    problem(signed_console_login("", cbirc, http=console.client), 403, "forbidden")
    # the public view stays open to the browser, as an auditor's
    assert console.client.get("/console/api/session").json()["role"] == "auditor"
    assert console.client.get("/console/api/overview").json()["records"] is None


# ------------------------------------------------------------------ CSRF


def test_state_changing_calls_need_the_console_header_and_json(console: Console) -> None:
    token = console.token()
    problem(console.client.post("/console/api/session", json={"token": token}), 403,
            "forbidden")
    problem(console.client.post("/console/api/session", json={"token": token},
                                headers={"X-JL-Console": "yes"}), 403, "forbidden")
    as_form = console.client.post("/console/api/session", content=json.dumps({"token": token}),
                                  headers=CSRF | {"Content-Type": "text/plain"})
    problem(as_form, 403, "forbidden")
    assert console.exchange(token).status_code == 200  # refused calls did not spend it
    problem(console.client.post("/console/api/trace", json={"identity": "mallory"}), 403,
            "forbidden")
    problem(console.client.post("/console/api/verify", json=console.data.bundle), 403,
            "forbidden")


# ------------------------------------------------------------------ auditor and regulator views


@pytest.mark.parametrize("path", REGULATOR_ONLY + ["/console/api/records/x/y/1"])
def test_regulator_pages_refuse_auditors(console: Console, path: str) -> None:
    problem(console.client.get(path), 401, "unauthenticated")
    console.client.cookies.set("jl_console", "forged" * 7)
    problem(console.client.get(path), 401, "unauthenticated")


def test_trace_refuses_auditors(console: Console) -> None:
    problem(console.client.post("/console/api/trace", json={"identity": "mallory"},
                                headers=CSRF), 401, "unauthenticated")


def test_overview_hides_counts_from_auditors(console: Console) -> None:
    public = console.client.get("/console/api/overview").json()
    assert console.client.get("/console/api/session").json() == {
        "role": "auditor", "member": None, "name": None}
    assert public["regulator"] == "pboc" and public["records"] is None
    assert public["faults"] is None
    assert public["chain_id"] == console.data.consortium.deployment.chain_id
    assert public["head_block"] >= 1
    head = console.data.regulator.chain.w3.eth.get_block("latest")
    assert public["head_block"] == head["number"]
    assert public["head_block_time"] == head["timestamp"]
    ahead = max(0, head["timestamp"] - int(time.time()))
    assert abs(public["chain_clock_ahead_s"] - ahead) <= 1
    logs = {log["platform"]: log for log in public["logs"]}
    assert set(logs) == {"unionpay", "wechatpay"}
    for name, log in logs.items():
        size = len(console.data.submitted[name])
        assert log["anchored_size"] == log["verified_size"] == size
        assert log["checkpoints"] == 3 and log["shard"] == 0
        assert log["log_id"] == console.data.nodes[name].log_id.hex()
        assert isinstance(log["last_block_time"], int)
    console.login()
    private = console.client.get("/console/api/overview").json()
    assert private["records"] == console.data.record_count and private["faults"] == 0


def test_checkpoints_are_public_with_latency_and_verification(console: Console) -> None:
    answer = console.client.get("/console/api/checkpoints").json()
    assert {log["platform"] for log in answer["logs"]} == {"unionpay", "wechatpay"}
    for log in answer["logs"]:
        sizes = [cp["tree_size"] for cp in log["checkpoints"]]
        assert sizes == sorted(sizes) and len(sizes) == 3
        for cp in log["checkpoints"]:
            assert cp["latency_s"] == cp["block_time"] - cp["timestamp"]
            assert cp["verified"] is True and cp["tx_hash"].startswith("0x")
            anchored = console.data.consortium.chain.checkpoint_at(
                bytes.fromhex(log["log_id"]), cp["tree_size"])
            assert anchored.root.hex() == cp["root"]
    newest = console.client.get("/console/api/checkpoints?platform=unionpay&limit=1").json()
    assert [log["platform"] for log in newest["logs"]] == ["unionpay"]
    assert [cp["tree_size"] for cp in newest["logs"][0]["checkpoints"]] == [
        len(console.data.submitted["unionpay"])]
    problem(console.client.get("/console/api/checkpoints?platform=alipay"), 404,
            "unknown-platform")
    problem(console.client.get("/console/api/checkpoints?limit=0"), 422, "validation-error")
    problem(console.client.get("/console/api/checkpoints?limit=5001"), 422, "validation-error")


def checkpoint_page(console: Console, query: str) -> dict[str, Any]:
    """The only log of a ``/console/api/checkpoints`` answer (asked without a session)."""
    answer = console.client.get(f"/console/api/checkpoints?{query}")
    assert answer.status_code == 200, answer.text
    logs: list[dict[str, Any]] = answer.json()["logs"]
    assert len(logs) == 1
    return logs[0]


@pytest.mark.parametrize("limit", [1, 2])
def test_checkpoints_page_a_log_back_to_its_first_checkpoint(console: Console,
                                                             limit: int) -> None:
    log_id = console.data.nodes["wechatpay"].log_id.hex()
    anchored = [cp["tree_size"] for cp in checkpoint_page(
        console, f"log_id={log_id}")["checkpoints"]]
    assert len(anchored) == 3 and anchored[-1] == len(console.data.submitted["wechatpay"])
    seen: list[int] = []
    flags: list[bool] = []
    query = f"log_id={log_id.upper()}&limit={limit}"  # hex digits in either case
    while True:
        page = checkpoint_page(console, query)
        assert page["platform"] == "wechatpay" and page["log_id"] == log_id
        sizes = [cp["tree_size"] for cp in page["checkpoints"]]
        assert sizes == sorted(sizes) and 1 <= len(sizes) <= limit
        seen[:0] = sizes
        flags.append(page["older"])
        if not page["older"]:
            break
        query = f"log_id={log_id}&limit={limit}&before={sizes[0]}"
    assert seen == anchored  # every checkpoint once, back to the first
    assert flags == [True] * (len(flags) - 1) + [False]
    assert len(flags) == -(-3 // limit)
    # the whole log on one page has nothing older; `before` past the end changes nothing
    assert checkpoint_page(console, f"log_id={log_id}&limit=3")["older"] is False
    assert [cp["tree_size"] for cp in checkpoint_page(
        console, f"log_id={log_id}&before={anchored[-1] + 1}")["checkpoints"]] == anchored


def test_checkpoints_say_per_log_whether_older_ones_exist(console: Console) -> None:
    every = console.client.get("/console/api/checkpoints").json()["logs"]
    assert [log["older"] for log in every] == [False, False]
    newest = console.client.get("/console/api/checkpoints?limit=1").json()["logs"]
    assert [log["older"] for log in newest] == [True, True]
    # `before` without a log id pages every log; with a platform, that platform's logs
    second = console.client.get("/console/api/checkpoints?platform=unionpay&limit=1&before="
                                f"{len(console.data.submitted['unionpay'])}").json()["logs"]
    assert len(second) == 1 and len(second[0]["checkpoints"]) == 1 and second[0]["older"]
    for log in console.client.get("/console/api/checkpoints?before=1").json()["logs"]:
        assert log["checkpoints"] == [] and log["older"] is False


def test_checkpoint_paging_refusals(console: Console) -> None:
    log_id = console.data.nodes["unionpay"].log_id.hex()
    for malformed in (log_id[:-1], log_id + "0", "g" + log_id[1:], "0x" + log_id[2:], ""):
        document = problem(console.client.get(
            f"/console/api/checkpoints?log_id={malformed}"), 422, "validation-error")
        assert document["detail"].startswith("query.log_id")
    unknown = problem(console.client.get(f"/console/api/checkpoints?log_id={'ab' * 32}"),
                      404, "unknown-log")
    assert "ab" * 32 in unknown["detail"]
    # a log of another platform than the one asked for is not found either
    problem(console.client.get(f"/console/api/checkpoints?platform=wechatpay&log_id={log_id}"),
            404, "unknown-log")
    for before in ("0", "-1", "x"):
        document = problem(console.client.get(
            f"/console/api/checkpoints?log_id={log_id}&before={before}"), 422,
            "validation-error")
        assert document["detail"].startswith("query.before")


def test_charts_draw_volume_from_checkpoints_and_count_alerts_only_for_regulators(
        console: Console) -> None:
    public = console.client.get("/console/api/charts?bucket_s=60").json()
    assert public["bucket_s"] == 60 and public["alerts_by_rule"] is None
    for series in public["volume"]:
        assert sum(p["records"] for p in series["points"]) == len(
            console.data.submitted[series["platform"]])
        assert all(p["t"] % 60 == 0 for p in series["points"])
    assert {s["platform"] for s in public["latency"]} == {"unionpay", "wechatpay"}
    assert all(len(s["points"]) == 3 for s in public["latency"])
    console.login()
    private = console.client.get("/console/api/charts").json()
    assert private["alerts_by_rule"] == {"large_value.person_domestic": 1,
                                         "structuring.person_domestic": 1}
    problem(console.client.get("/console/api/charts?bucket_s=0"), 422, "validation-error")


def test_disclosure_log_is_public_and_collection_is_the_regulators(console: Console) -> None:
    data = console.data
    public = console.client.get("/console/api/disclosures").json()["requests"]
    assert [r["id"] for r in public] == [data.pending_request, data.fulfilled_request]
    fulfilled = public[1]
    assert fulfilled["fulfilled"] is True and fulfilled["fulfilled_block"] > 0
    assert len(fulfilled["response_digest"]) == 64
    assert fulfilled["regulator"] == "pboc" and fulfilled["platform"] == "unionpay"
    assert fulfilled["collected"] is None
    assert fulfilled["case_reference"] != bytes(range(32)).hex()  # never the case id
    assert public[0]["fulfilled"] is False and public[0]["response_digest"] is None
    newest = console.client.get("/console/api/disclosures?limit=1").json()
    assert newest["total"] == 2 and [r["id"] for r in newest["requests"]] == [
        data.pending_request]
    problem(console.client.get("/console/api/disclosures?limit=0"), 422, "validation-error")
    console.login()
    private = console.client.get("/console/api/disclosures").json()["requests"]
    assert [r["collected"] for r in private] == [False, True]


def test_alerts_drill_down_to_records_across_platforms(console: Console) -> None:
    console.login()
    listed = console.client.get("/console/api/alerts").json()["alerts"]
    assert [a["rule"] for a in listed] == ["large_value.person_domestic",
                                           "structuring.person_domestic"]
    assert [a["id"] for a in listed] == [1, 2]  # numbered from 1
    structuring = listed[1]
    assert structuring["identity"] == identity_key(STRUCTURING_IDENTITY).hex()
    assert structuring["platforms"] == ["unionpay", "wechatpay"]
    one = console.client.get(f"/console/api/alerts/{structuring['id']}").json()
    assert one["alert"] == structuring
    assert len(one["records"]) == 4
    assert {r["platform"] for r in one["records"]} == {"unionpay", "wechatpay"}
    for rec in one["records"]:
        assert rec["payment"]["amount_fen"] == 150_000_00
        assert rec["commitment"] == rec["leaf"]["commitment"]
        assert rec["bundle"]["format"] == "jointledger/proof-bundle/v1"
    problem(console.client.get("/console/api/alerts/99"), 404, "unknown-alert")
    problem(console.client.get("/console/api/alerts/-1"), 422, "validation-error")
    problem(console.client.get("/console/api/alerts/0"), 422, "validation-error")

    ref = one["records"][0]["ref"]
    record = console.client.get(f"/console/api/records/{ref}").json()["record"]
    assert record == one["records"][0]
    platform, log_id, _ = ref.split("/")
    problem(console.client.get(f"/console/api/records/{platform}/{log_id}/999"), 404,
            "unknown-leaf")
    problem(console.client.get("/console/api/records/nope"), 422, "validation-error")


def test_alerts_carry_the_basis_the_page_explains_them_with(console: Console) -> None:
    """``basis`` gives the threshold and the day or window, so the page can say "¥600,000.00
    reached ¥500,000.00" in the reader's language; ``detail`` stays the protocol's text."""
    console.login()
    large, structuring = console.client.get("/console/api/alerts").json()["alerts"]
    assert large["basis"] == {"family": "large_value", "category": "person_domestic",
                              "threshold_fen": 500_000_00, "day_utc_offset_s": 8 * 3600,
                              "across_platforms": False}
    assert structuring["basis"] == {"family": "structuring", "category": "person_domestic",
                                    "threshold_fen": 500_000_00, "window_s": 86_400}
    assert large["total_fen"] == 600_000_00 and "60000000 fen >= 50000000 fen" in large[
        "detail"]  # machines and case files keep the protocol's sentence
    one = console.client.get(f"/console/api/alerts/{large['id']}").json()["alert"]
    assert one == large


def test_alert_numbers_are_the_same_after_the_node_recomputes(console: Console,
                                                             data: ConsoleData) -> None:
    """Numbers come from the store, not from positions: forgetting the computed alerts (as
    a restart does) gives every alert its number again."""
    console.login()
    before = [(a["id"], a["rule"]) for a in console.client.get("/console/api/alerts").json()[
        "alerts"]]
    data.regulator._alerts = None  # what a restart loses
    after = [(a["id"], a["rule"]) for a in console.client.get("/console/api/alerts").json()[
        "alerts"]]
    assert after == before == [(1, "large_value.person_domestic"),
                               (2, "structuring.person_domestic")]


def test_trace_finds_every_record_of_an_identity(console: Console) -> None:
    console.login()
    traced = console.client.post("/console/api/trace", json={"identity": " mallory "},
                                 headers=CSRF).json()
    assert traced["identity_key"] == identity_key("mallory").hex()
    assert len(traced["records"]) == 4
    by_key = console.client.post("/console/api/trace", json={
        "identity_key": identity_key("mallory").hex()}, headers=CSRF).json()
    assert by_key == traced
    problem(console.client.post("/console/api/trace", json={}, headers=CSRF), 400,
            "bad-request")
    problem(console.client.post("/console/api/trace", json={"identity": ""}, headers=CSRF),
            422, "validation-error")


def test_faults_for_the_regulator(console: Console) -> None:
    console.login()
    assert console.client.get("/console/api/faults").json() == {"faults": []}


# ------------------------------------------------------------------ verify


def verify(console: Console, document: Any) -> Any:
    content = document if isinstance(document, bytes) else json.dumps(document).encode()
    return console.client.post("/console/api/verify", content=content,
                               headers=CSRF | {"Content-Type": "application/json"})


def flip_hex(text: str, at: int = 0) -> str:
    digit = text[at]
    return text[:at] + ("0" if digit != "0" else "1") + text[at + 1:]


def test_a_valid_bundle_verifies_against_the_chain(console: Console) -> None:
    answer = verify(console, console.data.bundle)
    assert answer.status_code == 200
    verdict = answer.json()
    assert verdict["kind"] == "bundle" and verdict["valid"] is True
    assert verdict["summary"].startswith("VALID")
    assert {c["status"] for c in verdict["checks"]} == {"passed"}
    assert [c["name"] for c in verdict["checks"]] == [
        "structure", "inclusion", "deployment", "checkpoint_on_chain", "log_owner",
        "signature", "anchoring"]


@pytest.mark.parametrize(("where", "failing"), [
    (("path", 0), "inclusion"),
    (("checkpoint", "root"), "inclusion"),
    (("leaf", "commitment"), "inclusion"),
    (("checkpoint", "signature"), "signature"),
])
def test_a_bundle_with_one_flipped_byte_is_invalid_and_says_why(
        console: Console, where: tuple[str, Any], failing: str) -> None:
    tampered = copy.deepcopy(console.data.bundle)
    outer, inner = where
    tampered[outer][inner] = flip_hex(tampered[outer][inner], 10)
    verdict = verify(console, tampered).json()
    assert verdict["valid"] is False
    failed = [c for c in verdict["checks"] if c["status"] == "failed"]
    assert failing in [c["name"] for c in failed]
    assert all(c["detail"] for c in failed)
    assert verdict["summary"].startswith("INVALID")


def test_a_bundle_that_does_not_parse_is_invalid_with_the_field_named(console: Console) -> None:
    broken = copy.deepcopy(console.data.bundle)
    broken["leaf"]["commitment"] = "zz" + broken["leaf"]["commitment"][2:]
    verdict = verify(console, broken).json()
    assert verdict["valid"] is False and verdict["kind"] == "bundle"
    assert verdict["checks"][0]["name"] == "structure"
    assert verdict["checks"][0]["status"] == "failed"
    assert "leaf.commitment" in verdict["checks"][0]["detail"]
    assert {c["status"] for c in verdict["checks"][1:]} == {"not_run"}


def test_a_case_file_verifies_with_the_key_only_in_a_regulator_session(
        console: Console) -> None:
    auditor = verify(console, console.data.case_file).json()
    assert auditor["kind"] == "case_file" and auditor["valid"] is True
    assert auditor["regulator_key"] is False
    assert "NOT decrypted" in auditor["summary"]
    assert any(c["status"] == "not_checked" for c in auditor["checks"])
    console.login()
    regulator = verify(console, console.data.case_file).json()
    assert regulator["valid"] is True and regulator["regulator_key"] is True
    assert len(regulator["checks"]) == len(auditor["checks"])
    tampered = copy.deepcopy(console.data.case_file)
    tampered["records"][0]["payment"]["amount_fen"] += 1
    verdict = verify(console, tampered).json()
    assert verdict["valid"] is False
    assert any(c["status"] == "failed" and "records[0]" in c["name"]
               for c in verdict["checks"])


@pytest.mark.parametrize(("body", "says"), [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"hello": 1}', "no \"format\""),
    (b'{"format": "jointledger/other/v9"}', "unknown format"),
])
def test_documents_that_are_not_bundles_or_case_files_are_422(console: Console, body: bytes,
                                                              says: str) -> None:
    document = problem(verify(console, body), 422, "validation-error")
    assert says in document["detail"]


@pytest.mark.parametrize(("body", "says"), [
    (b"\xff\xfe", "byte order mark"),
    (b'{"format": "\xff"}', "invalid byte"),
    ('{"format": "x"}'.encode("utf-16-le"), "NUL bytes"),
])
def test_documents_that_are_not_utf8_are_refused_before_parsing(console: Console, body: bytes,
                                                                says: str) -> None:
    document = problem(verify(console, body), 415, "unsupported-media-type")
    assert says in document["detail"]


# ------------------------------------------------------------------ static files and headers


def test_index_and_assets_are_served_with_the_security_headers(console: Console) -> None:
    page = console.client.get("/console/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "<html" in page.text
    redirect = console.client.get("/console", follow_redirects=False)
    assert redirect.status_code in (307, 308) and redirect.headers["location"].endswith(
        "/console/")
    assets = sorted(p.name for p in (Path("api") / "console").iterdir()
                    if p.suffix in (".js", ".css"))
    assert assets  # the frontend's files are there
    for name in assets:
        served = console.client.get(f"/console/assets/{name}")
        assert served.status_code == 200, name
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        assert served.headers["content-type"].startswith(kind)
        assert served.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_every_console_answer_carries_the_headers_problems_too(console: Console) -> None:
    for answer in (console.client.get("/console/api/overview"),
                   console.client.get("/console/api/alerts"),
                   console.client.get("/console/assets/nope.js"),
                   console.client.post("/v1/console/sessions")):
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert console.client.get("/console/api/overview").headers["cache-control"] == "no-store"
    assert "content-security-policy" not in console.client.get("/v1/health").headers


def test_an_unhandled_error_is_a_problem_with_the_headers(
        console: Console, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def broken(regulator: object) -> None:
        raise RuntimeError("planted")

    monkeypatch.setattr("api.routes.console._anchors_by_log", broken)
    client = TestClient(console.app, raise_server_exceptions=False)
    answer = client.get("/console/api/overview")
    document = problem(answer, 500, "internal-error")
    assert "planted" not in document["detail"]  # logged, never shown
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    assert any("planted" in r.getMessage() or (r.exc_info and "planted" in str(r.exc_info[1]))
               for r in caplog.records)


@pytest.mark.parametrize("path", [
    "/console/assets/nope.js",
    "/console/assets/..%2F..%2Fregulator_app.py",
    "/console/assets/..%2Fconsole_session.py",
    "/console/assets/%2E%2E%2Fmain.py",
    "/console/assets/.hidden.js",
    "/console/assets/index.html.bak",
    "/console/assets/console.js%00.css",
    "/console/assets/sub/console.js",
    "/console/api/nothing",
])
def test_traversal_and_unknown_assets_are_404_problems(console: Console, path: str) -> None:
    answer = console.client.get(path, follow_redirects=False)
    assert answer.status_code == 404, (path, answer.text)
    assert answer.headers["content-type"].startswith("application/problem+json")


# ------------------------------------------------------------------ console-login (CLI)


@pytest.fixture(scope="module")
def served(data: ConsoleData) -> Iterator[str]:
    """The regulator app on real HTTP (127.0.0.1) for the command line."""
    server, thread, base_url = serve_in_thread(create_regulator_app(data.regulator))
    yield base_url
    server.should_exit = True
    thread.join(timeout=10)


def _key_files(directory: Path, party: Party) -> tuple[Path, Path]:
    write_member_keys(directory, party.name, MemberKeys(party.sm2_key, party.account))
    return directory / f"{party.name}.sm2.pem", directory / f"{party.name}.account.key"


def _regulator_toml(tmp: Path, base_url: str, party: Party) -> Path:
    sm2, account = _key_files(tmp / "keys", party)
    port = base_url.rsplit(":", 1)[1]
    config = tmp / "pboc.toml"
    config.write_text(
        f'[regulator]\nname = "{party.name}"\nstore = "unused.db"\n'
        f'[http]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[keys]\nsm2 = "{sm2}"\naccount = "{account}"\n'
        '[chain]\ndeployment = "deployment.json"\n', encoding="utf-8")
    return config


def test_console_login_prints_a_url_that_logs_in(served: str, data: ConsoleData,
                                                 tmp_path: Path) -> None:
    import httpx

    config = _regulator_toml(tmp_path, served, data.consortium.pboc)
    process = subprocess.run(
        [sys.executable, "-m", "ledger_node.cli", "console-login", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False)
    assert process.returncode == 0, process.stderr
    url = process.stdout.strip()
    assert url.startswith(f"{served}/console/#login=")
    assert "works once" in process.stderr
    with httpx.Client(base_url=served) as browser:
        token = url.split("#login=", 1)[1]
        opened = browser.post("/console/api/session", json={"token": token}, headers=CSRF)
        assert opened.status_code == 200 and opened.json()["name"] == "pboc"
        alerts = browser.get("/console/api/alerts").json()["alerts"]
        ref = alerts[-1]["refs"][0]  # the page asks with the reference URL-encoded, "/" too
        record = browser.get("/console/api/records/" + ref.replace("/", "%2F"))
        assert record.status_code == 200 and record.json()["record"]["ref"] == ref


def test_console_login_with_explicit_keys_and_the_name_from_the_node(
        served: str, data: ConsoleData, tmp_path: Path) -> None:
    sm2, account = _key_files(tmp_path, data.consortium.pboc)
    target = login_target(config=None, url=served + "/", name=None, sm2_key=sm2,
                          account_key=account, keys_dir=None)
    assert target.url == served and target.name is None  # asked of /v1/health
    assert request_login_url(target).startswith(served + "/console/#login=")
    by_dir = login_target(config=None, url=served, name="pboc", sm2_key=None,
                          account_key=None, keys_dir=tmp_path)
    assert request_login_url(by_dir).startswith(served + "/console/#login=")


def test_console_login_refusals(served: str, data: ConsoleData, tmp_path: Path) -> None:
    auditor_sm2, auditor_account = _key_files(tmp_path, data.consortium.auditor)
    target = login_target(config=None, url=served, name=None, sm2_key=auditor_sm2,
                          account_key=auditor_account, keys_dir=None)
    with pytest.raises(ConsoleLoginRefused, match="only regulator"):
        request_login_url(target)
    printed: list[str] = []
    common: dict[str, Any] = {"config": None, "name": None, "keys_dir": None,
                              "echo": printed.append, "warn": printed.append}
    assert run_console_login(url=served, sm2_key=auditor_sm2, account_key=auditor_account,
                             **common) == 1
    assert run_console_login(url=None, sm2_key=auditor_sm2, account_key=auditor_account,
                             **common) == 2
    assert run_console_login(url="ftp://x", sm2_key=auditor_sm2,
                             account_key=auditor_account, **common) == 2
    assert run_console_login(url=served, sm2_key=tmp_path / "none.pem",
                             account_key=auditor_account, **common) == 2
    assert run_console_login(url="http://127.0.0.1:9", sm2_key=auditor_sm2,
                             account_key=auditor_account, **common) == 1
    assert not any(line.startswith("http") and "#login=" in line for line in printed)
    with pytest.raises(InvalidConfig, match="--name"):
        login_target(config=None, url=served, name=None, sm2_key=None, account_key=None,
                     keys_dir=tmp_path)


def test_the_console_site_fixture_serves_a_node_with_data(console_site: ConsoleSite) -> None:
    """What the browser tests rely on: a served node, a login URL, a valid bundle."""
    import httpx

    with httpx.Client(base_url=console_site.base_url) as browser:
        assert browser.get("/console/").status_code == 200
        overview = browser.get("/console/api/overview").json()
        assert sum(log["anchored_size"] for log in overview["logs"]) == (
            console_site.data.record_count)
        url = console_site.login_url()
        assert url.startswith(console_site.console_url + "#login=")
        opened = browser.post("/console/api/session", headers=CSRF,
                              json={"token": url.split("#login=", 1)[1]})
        assert opened.json()["role"] == "regulator"
        assert len(browser.get("/console/api/alerts").json()["alerts"]) == 2
        verdict = browser.post("/console/api/verify", content=console_site.bundle_text.encode(),
                               headers=CSRF | {"Content-Type": "application/json"}).json()
        assert verdict["valid"] is True
        assert browser.post("/console/api/verify", headers=CSRF,
                            json=console_site.case_file).json()["valid"] is True
    with pytest.raises(AssertionError, match="refused"):
        console_site.login_url(console_site.data.consortium.auditor)


__all__ = ["console_site"]  # the fixture, imported for pytest
