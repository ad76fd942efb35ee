"""Bounded resources on the HTTP servers (OWASP API4:2023): every limit of
:class:`~ledger_node.http_settings.Settings` on a real uvicorn server on 127.0.0.1.

Slow clients are raw sockets trickling a request head or body byte by byte; each test shows
the limit holds (the slow connection is cut, the request refused) while an honest client on
another connection is still served. The per-member limit is shown on the platform node's
leaf ranges and the regulator node's traces, with the SDK waiting out a 429.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.main import create_app
from api.ratelimit import TokenBuckets
from api.regulator_app import create_regulator_app
from api.server import PlatformServer
from ledger_node.client.sdk import RegulatorClient
from ledger_node.errors import ApiError, InvalidConfig
from ledger_node.http_settings import SETTINGS_KEYS, Settings, settings_from_table
from ledger_node.platform.config import load_serve_config
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.auth import sign_request
from ledger_node.regulator.config import load_regulator_config
from ledger_node.regulator.node import node_audience
from tests.api_support import Consortium, random_leaves, submission, wait_for
from tests.regulator_support import regulator_for

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------- helpers


@contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` on a real uvicorn server (127.0.0.1, free port), configured by
    :func:`api.serving.uvicorn_config` from the app's settings; yields its URL."""
    server = PlatformServer(app)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def connect(url: str) -> socket.socket:
    """A raw TCP connection to the server at ``url``."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def trickle(sock: socket.socket, data: bytes, interval: float, *,
            limit_s: float = 15.0) -> tuple[float, bytes]:
    """Send ``data`` one byte every ``interval`` seconds (then wait) until the server closes
    the connection; return the seconds it took and everything the server sent."""
    started = time.monotonic()
    received = b""
    position = 0
    while time.monotonic() - started < limit_s:
        readable, _, _ = select.select([sock], [], [], interval)
        if readable:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return time.monotonic() - started, received
            received += chunk
            continue
        if position < len(data):
            try:
                sock.sendall(data[position:position + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started, received
            position += 1
    raise AssertionError(f"the server kept the connection for {limit_s} s ({position} bytes "
                         f"sent, {received[:200]!r} received)")


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer."""
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> Any:
    """The JSON body of a raw HTTP answer."""
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def honest(url: str, path: str = "/v1/health") -> int:
    """An honest client's request on a fresh connection: its status."""
    return httpx.get(url + path, timeout=10).status_code


def honest_while(url: str, busy: Callable[[], bool], path: str = "/v1/health") -> list[int]:
    """Statuses of honest requests made every 0.2 s while ``busy()`` holds (at least one)."""
    statuses = [honest(url, path)]
    while busy():
        statuses.append(honest(url, path))
        time.sleep(0.2)
    return statuses


# ---------------------------------------------------------------------- settings


def test_every_limit_has_a_default_and_a_range() -> None:
    defaults = Settings()
    assert (defaults.max_connections, defaults.max_header_bytes, defaults.header_timeout_s,
            defaults.body_timeout_s, defaults.keep_alive_s, defaults.request_timeout_s,
            defaults.member_rate_per_s, defaults.member_burst) == (
        256, 16_384, 10.0, 30.0, 5, 60.0, 10.0, 50)
    loaded = settings_from_table({"max_connections": 8, "header_timeout_s": 2,
                                  "member_rate_per_s": 0.5, "host": "ignored"})
    assert (loaded.max_connections, loaded.header_timeout_s, loaded.member_rate_per_s) == (
        8, 2.0, 0.5)


@pytest.mark.parametrize(("key", "value"), [
    ("max_connections", 0), ("max_header_bytes", 100), ("max_header_bytes", 2**21),
    ("header_timeout_s", 0), ("body_timeout_s", -1), ("keep_alive_s", 0),
    ("keep_alive_s", 1.5), ("request_timeout_s", 0), ("member_rate_per_s", 0),
    ("member_burst", 0), ("max_connections", "many"),
])
def test_an_out_of_range_limit_is_refused_naming_its_key(key: str, value: object) -> None:
    with pytest.raises(InvalidConfig, match=rf"^http\.{key}: "):
        settings_from_table({key: value})


PLATFORM_CONFIG = """
[node]
platform = "unionpay"
store = "unionpay.db"

[http]
port = 0
{http}

[keys]
sm2 = "keys/unionpay.sm2.pem"
account = "keys/unionpay.account.key"

[chain]
deployment = "deployment.json"
"""
REGULATOR_CONFIG = """
[regulator]
name = "pboc"
store = "pboc-regulator.db"

[http]
port = 0
{http}

[keys]
sm2 = "keys/pboc.sm2.pem"
account = "keys/pboc.account.key"

[chain]
deployment = "deployment.json"
"""


@pytest.mark.parametrize("role", ["platform", "regulator"])
def test_both_node_configs_read_the_limits_from_http(tmp_path: Path, role: str) -> None:
    template, load = ((PLATFORM_CONFIG, load_serve_config) if role == "platform"
                      else (REGULATOR_CONFIG, load_regulator_config))
    path = tmp_path / "node.toml"
    path.write_text(template.format(http="max_connections = 32\nheader_timeout_s = 2.5\n"
                                         "member_burst = 7\nkeep_alive_s = 3"))
    settings = load(path).http
    assert (settings.max_connections, settings.header_timeout_s, settings.member_burst,
            settings.keep_alive_s, settings.body_timeout_s) == (32, 2.5, 7, 3, 30.0)
    path.write_text(template.format(http="header_timeout_s = 0"))
    with pytest.raises(InvalidConfig, match=r"http\.header_timeout_s: Input should be greater"):
        load(path)
    path.write_text(template.format(http="member_rate = 3"))
    with pytest.raises(InvalidConfig, match=r"\[http\] has unknown key 'member_rate'"):
        load(path)


def test_every_setting_is_documented_with_its_default() -> None:
    """docs/api.md lists each [http] limit with the default Settings has."""
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    defaults = Settings()
    for key in SETTINGS_KEYS:
        value = getattr(defaults, key)
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert f"| `{key}` | {shown}" in text or f"| `{key}` | `{shown}`" in text, key


def test_token_buckets_refill_at_the_rate_and_forget_the_oldest() -> None:
    now = [0.0]
    buckets = TokenBuckets(2.0, 3, clock=lambda: now[0], max_members=2)
    assert [buckets.take("0xA") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("0xa") == pytest.approx(0.5)  # the same member, case aside
    assert buckets.take("0xB") == 0.0  # another member has its own bucket
    now[0] = 0.5
    assert buckets.take("0xA") == 0.0  # one token back after 1/rate s
    assert buckets.take("0xA") == pytest.approx(0.5)
    buckets.take("0xC")
    assert len(buckets) == 2  # 0xB went; at most max_members buckets


# ---------------------------------------------------------------------- a real server


FAST = {"header_timeout_s": 1.0, "body_timeout_s": 1.0, "keep_alive_s": 1,
        "request_timeout_s": 1.0}


@pytest.fixture
def platform_url(node: PlatformNode) -> Iterator[str]:
    """unionpay's node on a real server with short deadlines and 4 connections."""
    with served(create_app(node, Settings(max_connections=4, max_header_bytes=4096,
                                          **FAST))) as url:
        yield url


def test_a_head_trickled_byte_by_byte_is_cut_at_the_header_deadline(platform_url: str) -> None:
    sock = connect(platform_url)
    head = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    results: list[tuple[float, bytes]] = []

    worker = threading.Thread(target=lambda: results.append(trickle(sock, head, 0.05)))
    worker.start()
    statuses = honest_while(platform_url, worker.is_alive)
    worker.join()
    elapsed, answer = results[0]
    assert 0.9 <= elapsed < 4.0
    assert status_of(answer) == 408
    assert body_of(answer)["type"].endswith("/request-timeout")
    assert b"connection: close" in answer.lower()
    assert set(statuses) == {200}  # an honest client was served all along
    sock.close()


def test_a_connection_that_sends_nothing_is_closed_silently(platform_url: str) -> None:
    sock = connect(platform_url)
    elapsed, answer = trickle(sock, b"", 0.1)
    assert 0.9 <= elapsed < 4.0 and answer == b""  # no 408 on an idle connection
    assert honest(platform_url) == 200


def test_an_oversized_head_is_refused_without_buffering_it(platform_url: str) -> None:
    # arriving in pieces: h11 stops buffering at max_header_bytes (400, connection closed)
    sock = connect(platform_url)
    sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: ")
    time.sleep(0.1)
    for _ in range(3):
        sock.sendall(b"a" * 2048)
        time.sleep(0.05)
    elapsed, answer = trickle(sock, b"", 0.1)
    assert status_of(answer) == 400 and elapsed < 2.0
    # arriving whole (one read parses it): refused 431 before the application sees it
    sock = connect(platform_url)
    sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n")
    elapsed, answer = trickle(sock, b"", 0.1)
    assert status_of(answer) == 431 and elapsed < 2.0
    assert body_of(answer)["type"].endswith("/headers-too-large")
    # a head under max_header_bytes is served
    sock = connect(platform_url)
    sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2048
                 + b"\r\nConnection: close\r\n\r\n")
    assert status_of(trickle(sock, b"", 0.1)[1]) == 200
    assert honest(platform_url) == 200


def test_a_body_trickled_byte_by_byte_is_cut_at_the_body_deadline(platform_url: str) -> None:
    sock = connect(platform_url)
    body = json.dumps({"bundle": {"format": "x" * 400}}).encode()
    head = (b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    sock.sendall(head)

    results: list[tuple[float, bytes]] = []
    worker = threading.Thread(target=lambda: results.append(trickle(sock, body, 0.05)))
    worker.start()
    statuses = honest_while(platform_url, worker.is_alive)
    worker.join()
    elapsed, answer = results[0]
    assert 0.9 <= elapsed < 4.0
    assert status_of(answer) == 408
    problem = body_of(answer)
    assert problem["type"].endswith("/request-timeout") and "not complete within 1 s" in (
        problem["detail"])
    assert set(statuses) == {200}
    sock.close()


def test_a_body_nobody_reads_does_not_hold_the_connection(platform_url: str) -> None:
    """A GET with a body: the answer comes at once, then the connection is closed rather
    than kept open while the body trickles in (uvicorn alone would keep it for ever)."""
    sock = connect(platform_url)
    sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
    elapsed, answer = trickle(sock, b"x" * 500, 0.05)
    assert status_of(answer) == 200 and elapsed < 4.0


def test_an_idle_keep_alive_connection_is_closed(platform_url: str) -> None:
    sock = connect(platform_url)
    sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    elapsed, answer = trickle(sock, b"", 0.1)
    assert status_of(answer) == 200 and 0.9 <= elapsed < 4.0


def test_connections_over_the_limit_get_503_until_the_slow_ones_are_cut(
        platform_url: str) -> None:
    slow = [connect(platform_url) for _ in range(4)]
    for sock in slow:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\n")  # heads never finished
    time.sleep(0.2)
    refused = httpx.get(platform_url + "/v1/health", timeout=10)
    assert refused.status_code == 503  # at once, not queued behind the slow clients
    # the header deadline frees the slots: the honest client is served again
    assert wait_for(lambda: honest(platform_url) == 200 or None, timeout=6)
    for sock in slow:
        sock.close()


def test_a_handler_over_its_deadline_answers_503_and_others_are_served(
        node: PlatformNode, monkeypatch: pytest.MonkeyPatch) -> None:
    original = node.checkpoints

    def slow_checkpoints(**kwargs: Any) -> Any:
        time.sleep(2.5)
        return original(**kwargs)

    monkeypatch.setattr(node, "checkpoints", slow_checkpoints)
    with served(create_app(node, Settings(**FAST))) as url:
        started = time.monotonic()

        answers: list[httpx.Response] = []
        worker = threading.Thread(target=lambda: answers.append(
            httpx.get(url + "/v1/checkpoints", timeout=10)))
        worker.start()
        statuses = honest_while(url, worker.is_alive)
        worker.join()
        elapsed = time.monotonic() - started
        (answer,) = answers
        assert answer.status_code == 503 and elapsed < 2.4  # before the handler ended
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"].endswith("/handler-timeout")
        assert int(answer.headers["Retry-After"]) >= 1
        assert set(statuses) == {200}


def signed_leaf_range(url: str, node: PlatformNode, party: Any, start: int, end: int
                      ) -> httpx.Response:
    """``GET /v1/logs/{log}/leaves`` signed by ``party``."""
    target = f"/v1/logs/{node.log_id.hex()}/leaves?start={start}&end={end}"
    headers = sign_request(party.sm2_key, party.account.address, "GET", target,
                           audience=node.log_id)
    return httpx.get(url + target, headers=headers, timeout=10)


def test_a_member_over_its_rate_gets_429_while_another_member_is_served(
        consortium: Consortium, node: PlatformNode) -> None:
    leaves = random_leaves(3, seed=7)
    body = submission(consortium.unionpay, node.log_id, leaves)
    # a token every 2 s: four requests in a row meet an empty bucket even on a loaded machine
    # (at 1 token/s one refilled once while the suite ran at load 10)
    with served(create_app(node, Settings(member_rate_per_s=0.5, member_burst=3))) as url:
        answer = httpx.post(f"{url}/v1/logs/{node.log_id.hex()}/leaves", json=body, timeout=10)
        assert answer.status_code == 201
        statuses = [signed_leaf_range(url, node, consortium.pboc, 0, 1).status_code
                    for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        refused = signed_leaf_range(url, node, consortium.pboc, 0, 1)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["type"].endswith("/rate-limited") and problem["retry_after"] in (1, 2)
        assert refused.headers["Retry-After"] == str(problem["retry_after"])
        # the platform itself (another member) is not held back by the regulator's rate
        assert signed_leaf_range(url, node, consortium.unionpay, 0, 1).status_code == 200
        # nor are public reads
        assert honest(url) == 200
        time.sleep(2.1)
        assert signed_leaf_range(url, node, consortium.pboc, 0, 1).status_code == 200
        # the SDK (the regulator's follower uses it) waits out a 429 and gets its leaves
        client = RegulatorClient(url, consortium.pboc.account.address,
                                 consortium.pboc.sm2_key, node.log_id, retries=3)
        with client:
            started = time.monotonic()
            got = [client.leaves(node.log_id, 0, 1) for _ in range(3)]
            assert all(len(page) == 1 for page in got)
            assert time.monotonic() - started >= 0.9  # it had to wait for a token
        stingy = RegulatorClient(url, consortium.pboc.account.address,
                                 consortium.pboc.sm2_key, node.log_id, retries=0)
        with stingy, pytest.raises(ApiError) as raised:
            for _ in range(3):
                stingy.leaves(node.log_id, 0, 1)
        assert raised.value.status == 429


def test_a_forged_member_header_spends_nobodys_tokens(consortium: Consortium,
                                                      node: PlatformNode) -> None:
    with served(create_app(node, Settings(member_rate_per_s=0.01, member_burst=1))) as url:
        target = f"/v1/logs/{node.log_id.hex()}/leaves?start=0&end=1"
        forged = sign_request(consortium.wechatpay.sm2_key, consortium.pboc.account.address,
                              "GET", target, audience=node.log_id)
        assert httpx.get(url + target, headers=forged, timeout=10).status_code == 401
        assert signed_leaf_range(url, node, consortium.pboc, 0, 1).status_code == 200
        assert signed_leaf_range(url, node, consortium.pboc, 0, 1).status_code == 429


def test_the_regulators_traces_are_rate_limited(consortium: Consortium, node: PlatformNode,
                                                tmp_path: Path) -> None:
    regulator = regulator_for(consortium, tmp_path / "pboc.db", {"unionpay": node})
    try:
        app = create_regulator_app(regulator, Settings(member_rate_per_s=1.0, member_burst=2,
                                                       **FAST))
        with served(app) as url:
            # the regulator's server has the same uvicorn configuration: a slow head is cut
            slow = connect(url)
            elapsed, answer = trickle(slow, b"GET /v1/health HTTP/1.1\r\nHost: x" + b"y" * 200,
                                      0.05)
            assert status_of(answer) == 408 and 0.9 <= elapsed < 4.0
            slow.close()
            body = json.dumps({"identity_key": "00" * 32}).encode()

            def trace() -> httpx.Response:
                headers = sign_request(consortium.pboc.sm2_key, consortium.pboc.account.address,
                                       "POST", "/v1/trace/identity", body,
                                       audience=node_audience("pboc"))
                return httpx.post(url + "/v1/trace/identity", content=body, timeout=10,
                                  headers=headers | {"Content-Type": "application/json"})

            assert [trace().status_code for _ in range(3)] == [200, 200, 429]
            refused = trace()
            assert refused.json()["type"].endswith("/rate-limited")
            assert refused.headers["Retry-After"] == "1"
            assert honest(url) == 200  # the regulator's health is still served
            time.sleep(1.1)
            assert trace().status_code == 200
    finally:
        regulator.stop()
