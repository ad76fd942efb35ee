"""The project's own adversarial fuzz harness for its three servers: a platform node, the
regulator node (console included) and ``jointledger chain``, each a real process.

Cases are generated from a seed, by family: encodings (UTF-8/16/32 with and without a byte
order mark, invalid UTF-8, lone surrogates), numbers (huge integers, exponents, NaN,
Infinity, negative zero), nesting, duplicate keys, huge strings and arrays, headers (huge,
repeated, malformed signatures and timestamps, sent over a raw socket), and paths and
queries. The criterion, checked after every batch: no 5xx, every process alive and still
answering, and the stored state (log size and root, checkpoints, indexed records, chain
head) unchanged. ``tests/test_fuzz_servers.py`` runs a bounded pass in the test command;
``scripts/fuzz_servers.py`` runs longer. A new endpoint is covered by adding its path to
:data:`PLATFORM_POSTS` / :data:`REGULATOR_POSTS` / the GET lists.
"""

from __future__ import annotations

import codecs
import json
import random
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from ledger_node.demo.localsite import LocalSite

PLATFORM_POSTS = ("/v1/verify", "/v1/logs/{log}/leaves", "/v1/reconciliation",
                  "/v1/risk-devices", "/v1/disclosures/1/response")
PLATFORM_GETS = ("/v1/health", "/v1/checkpoints", "/v1/consistency", "/v1/leaves/{n}",
                 "/v1/leaves/{n}/bundle", "/v1/leaves/{n}/status", "/v1/logs/{log}/leaves",
                 "/v1/logs/{log}/summaries", "/v1/checkpoints/{n}", "/metrics")
REGULATOR_POSTS = ("/v1/trace/identity", "/v1/trace/commitment", "/v1/disclosures",
                   "/v1/case-files", "/console/api/session", "/console/api/verify")
REGULATOR_GETS = ("/v1/health", "/v1/alerts", "/v1/alerts/{n}", "/v1/faults",
                  "/console/api/overview", "/console/api/checkpoints", "/console/api/volume",
                  "/console/", "/console/{junk}")

_DOCUMENT: dict[str, Any] = {"leaves": [{"commitment": "00" * 32, "escrow": ""}],
                             "signer": "0x" + "11" * 20, "signature": "30" * 8,
                             "identity": "云闪付 Alice", "note": "微信支付"}


@dataclass(frozen=True)
class Case:
    """One hostile request: the family it belongs to, what it sends, and to which server."""

    family: str
    server: str  # "platform", "regulator" or "chain"
    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    raw: bytes | None = None  # a whole request sent over a socket as it is


@dataclass
class Outcome:
    """What a run saw: statuses by family, server errors, and the processes' health."""

    sent: int = 0
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)

    def count(self, case: Case, status: int) -> None:
        """Record one answer."""
        self.sent += 1
        by_status = self.statuses.setdefault(case.family, {})
        by_status[status] = by_status.get(status, 0) + 1
        if status >= 500:
            self.server_errors.append(f"{case.family} {case.server} {case.method} "
                                      f"{case.path[:80]} -> {status}")


# ---------------------------------------------------------------------- generators


def _encodings(text: str) -> Iterator[tuple[str, bytes]]:
    yield "utf-8", text.encode()
    for codec in ("utf-16-le", "utf-16-be", "utf-16", "utf-32-le", "utf-32-be", "utf-32"):
        yield codec, text.encode(codec)
    yield "utf-8-bom", codecs.BOM_UTF8 + text.encode()
    yield "invalid-utf8", text.encode()[:-2] + b"\xff\xfe" + text.encode()[-2:]
    yield "overlong", text.encode().replace(b"/", b"\xc0\xaf").replace(b'"', b"\xc0\xa2", 1)
    yield "lone-surrogate", text.encode().replace(b"A", b"\xed\xa0\x80", 1)
    yield "utf16-hidden-depth", ('["Ģ", ' + "[" * 50_000 + "]" * 50_000 + "]").encode(
        "utf-16-le")


def _numbers(rng: random.Random) -> Iterator[bytes]:
    for literal in ("1" + "0" * 400, "-" + "9" * 5000, "1e999", "-1e-999", "NaN", "Infinity",
                    "-Infinity", "-0", "-0.0", str(2**64), str(2**63), "1.5e308",
                    "0." + "0" * 1000 + "1", str(rng.getrandbits(4000))):
        for shape in ('{"index": %s}', '{"leaves": [{"commitment": %s}]}', "[%s]",
                      '{"start": %s, "end": %s}'):
            yield (shape.replace("%s", literal)).encode()


def _structures(rng: random.Random) -> Iterator[tuple[str, bytes]]:
    for depth in (65, 1_000, 100_000):
        yield f"nesting-{depth}", ("[" * depth + "]" * depth).encode()
        yield f"nesting-obj-{depth}", ('{"a":' * depth + "1" + "}" * depth).encode()
    yield "duplicate-keys", b'{"signer": "a", "signer": "b", "leaves": [], "leaves": [1]}'
    yield "huge-string", json.dumps({"identity": "x" * 4_000_000}).encode()
    yield "huge-array", json.dumps({"leaves": [{"commitment": "00" * 32}] * 50_000}).encode()
    yield "many-keys", json.dumps({f"k{i}": i for i in range(100_000)}).encode()
    yield "not-json", bytes(rng.getrandbits(8) for _ in range(2048)).replace(b"\x00", b"")
    yield "empty", b""
    yield "truncated", json.dumps(_DOCUMENT).encode()[:37]


def _header_cases(host: str) -> Iterator[tuple[str, bytes]]:
    def request(*lines: str, body: bytes = b"") -> bytes:
        head = "\r\n".join(("POST /v1/trace/identity HTTP/1.1", f"Host: {host}", *lines,
                            f"Content-Length: {len(body)}", "", ""))
        return head.encode("latin-1") + body

    body = json.dumps({"identity": "alice"}).encode()
    yield "huge-header", request("X-Big: " + "a" * 200_000, body=body)
    yield "many-headers", request(*(f"X-H{i}: {i}" for i in range(5_000)), body=body)
    yield "repeated-auth", request(*(f"X-JL-Member: 0x{i:040x}" for i in range(50)),
                                   "Content-Type: application/json", body=body)
    for member, stamp, nonce, signature in (
            ("0x" + "zz" * 20, "1", "n", "00"),
            ("0x" + "11" * 20, str(2**80), "n" * 10_000, "ab" * 50_000),
            ("0x" + "11" * 20, "-5", "", "not hex"),
            ("", "1e9", "\x7f", "30" * 72),
            ("0x" + "11" * 20, "NaN", "x", "")):
        yield "bad-signature", request(f"X-JL-Member: {member}", f"X-JL-Timestamp: {stamp}",
                                       f"X-JL-Nonce: {nonce}", f"X-JL-Signature: {signature}",
                                       "Content-Type: application/json", body=body)
    yield "bad-content-length", request("Content-Length: -5", body=body)
    yield "charset-utf16", request("Content-Type: application/json; charset=utf-16",
                                   body='{"identity": "a"}'.encode("utf-16"))
    yield "header-garbage", request("X-\x01: \xff\xfe", body=body)
    yield "no-host", b"GET /v1/health HTTP/1.1\r\n\r\n"
    yield "bad-request-line", b"GET /v1/health HTTP/9.9 extra\r\nHost: x\r\n\r\n"


def _paths(rng: random.Random) -> Iterator[str]:
    yield from ("/v1/leaves/-1", "/v1/leaves/99999999999999999999999", "/v1/leaves/0x10",
                "/v1/leaves/1e3", "/v1/../../etc/passwd", "/v1/leaves/%00", "/v1/leaves/%ff%fe",
                "/v1/checkpoints?after=" + "9" * 400, "/v1/checkpoints?after=NaN&limit=-1",
                "/v1/checkpoints?after=1&after=2&limit=0", "/v1/consistency?from=2&to=1",
                "/v1/consistency?from=9223372036854775808&to=9223372036854775809",
                "/" + "a" * 20_000, "/v1/health?" + "&".join(f"q{i}=1" for i in range(2_000)),
                "/console/api/checkpoints?before=9223372036854775808&page_size=1e9",
                "/console/api/alerts/-0", "/console/%2e%2e/%2e%2e/api/overview",
                "/v1/logs/" + "g" * 64 + "/leaves?start=0&end=1")
    for _ in range(8):
        yield "/" + "/".join(rng.choice(["v1", "leaves", "..", "%2F", "%ff", "0", "-1",
                                         "console", "api", "x" * 300]) for _ in range(5))


def cases(seed: int, log_id: str) -> Iterator[Case]:
    """Every hostile request of one round, in a fixed order for ``seed``."""
    rng = random.Random(seed)
    text = json.dumps(_DOCUMENT, ensure_ascii=False) + " A/"
    posts = {"platform": PLATFORM_POSTS, "regulator": REGULATOR_POSTS, "chain": ("/",)}
    chain_call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber",
                             "params": []}, ensure_ascii=False) + " A/"
    for server, paths in posts.items():
        for raw_path in paths:
            path = raw_path.replace("{log}", log_id)
            source = chain_call if server == "chain" else text
            for codec, body in _encodings(source):
                yield Case(f"encoding:{codec}", server, "POST", path, body,
                           (("content-type", "application/json"),))
            for body in _numbers(rng):
                yield Case("numbers", server, "POST", path, body,
                           (("content-type", "application/json"),))
            for name, body in _structures(rng):
                yield Case(f"structure:{name}", server, "POST", path, body,
                           (("content-type", "application/json"),))
    gets = {"platform": PLATFORM_GETS, "regulator": REGULATOR_GETS}
    for server, paths in gets.items():
        for raw_path in paths:
            path = (raw_path.replace("{log}", log_id).replace("{n}", str(rng.choice(
                [0, 1, -1, 2**63, 2**64, 10**30]))).replace("{junk}", "x" * rng.randint(1, 500)))
            yield Case("paths", server, "GET", path)
        for path in _paths(rng):
            yield Case("paths", server, "GET", path)
    for server in ("platform", "regulator", "chain"):
        for name, raw in _header_cases("127.0.0.1"):
            yield Case(f"headers:{name}", server, "POST", "/", raw=raw)


# ---------------------------------------------------------------------- the run


@dataclass
class Targets:
    """The three servers under test and how to read their stored state."""

    urls: dict[str, str]
    site: LocalSite
    processes: dict[str, str]  # server -> LocalSite process key
    verify: ssl.SSLContext | bool = True

    def client(self) -> httpx.Client:
        """An HTTP client for every target (short timeouts: a hostile request may hang)."""
        return httpx.Client(timeout=httpx.Timeout(15.0, connect=5.0), verify=self.verify)

    def state(self, http: httpx.Client) -> dict[str, Any]:
        """What must not change: each log's size and root, checkpoints, records, chain head."""
        platform = http.get(self.urls["platform"] + "/v1/health").json()
        regulator = http.get(self.urls["regulator"] + "/v1/health").json()
        head = http.post(self.urls["chain"], json={"jsonrpc": "2.0", "id": 1,
                                                   "method": "eth_blockNumber", "params": []})
        checkpoints = http.get(self.urls["platform"] + "/v1/checkpoints").json()
        return {"platform": {k: platform.get(k) for k in ("store_size", "log_id", "final_size")},
                "last_anchored": platform.get("last_anchored"),
                "checkpoints": checkpoints,
                "regulator": {k: regulator.get(k) for k in ("logs", "behind", "faults")},
                "chain_head": head.json()["result"]}

    def alive(self, http: httpx.Client) -> list[str]:
        """The servers whose process died or that no longer answer their health check."""
        dead = []
        for server, key in self.processes.items():
            if not self.site.process_alive(key):
                dead.append(f"{server}: process exited")
                continue
            try:
                if server == "chain":
                    http.post(self.urls[server], json={"jsonrpc": "2.0", "id": 1,
                                                       "method": "eth_chainId", "params": []})
                else:
                    http.get(self.urls[server] + "/v1/health").raise_for_status()
            except httpx.HTTPError as exc:
                dead.append(f"{server}: not answering ({type(exc).__name__})")
        return dead


def send(case: Case, targets: Targets, http: httpx.Client) -> int:
    """Send ``case``; return its HTTP status (0 when the server closed the connection, which
    is a refusal, never a crash: liveness is checked separately)."""
    url = targets.urls[case.server]
    if case.raw is not None:
        return _send_raw(url, case.raw, targets.verify)
    try:
        answer = http.request(case.method, url + ("" if case.server == "chain" else case.path),
                              content=case.body or None, headers=dict(case.headers))
    except httpx.TransportError:
        return 0
    return answer.status_code


def _send_raw(url: str, raw: bytes, verify: ssl.SSLContext | bool) -> int:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 10)
    try:
        if parts.scheme == "https":
            context = verify if isinstance(verify, ssl.SSLContext) else ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=parts.hostname)
        sock.settimeout(15)
        sock.sendall(raw)
        first = sock.recv(64)
    except OSError:
        return 0
    finally:
        sock.close()
    try:
        return int(first.split(b" ", 2)[1]) if first.startswith(b"HTTP/") else 0
    except (IndexError, ValueError):
        return 0


def run(targets: Targets, *, seed: int, seconds: float, log_id: str,
        progress: Callable[[str], None] | None = None) -> Outcome:
    """Send rounds of :func:`cases` (seed, seed + 1, ...) until ``seconds`` pass; check
    liveness after every 50 requests and the stored state at the end."""
    outcome = Outcome()
    deadline = time.monotonic() + seconds
    with targets.client() as http:
        before = targets.state(http)
        round_seed = seed
        while time.monotonic() < deadline:
            for case in cases(round_seed, log_id):
                outcome.count(case, send(case, targets, http))
                if outcome.sent % 50 == 0:
                    outcome.dead = targets.alive(http)
                    if outcome.dead:
                        return outcome
                    if progress is not None:
                        progress(f"{outcome.sent} requests, "
                                 f"{len(outcome.server_errors)} server errors")
                if time.monotonic() >= deadline:
                    break
            round_seed += 1
        outcome.dead = targets.alive(http)
        after = targets.state(http)
        if after != before:
            outcome.server_errors.append(f"stored state changed: {before} -> {after}")
    return outcome
