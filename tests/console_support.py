"""A real regulator node with data, served over real HTTP, for the console tests.

:func:`build_console_data` makes a consortium on an embedded chain, both platforms' real
nodes (in-process, behind their real HTTP apps), a payment day of a few dozen payments with
planted AML cases (``mallory`` structures across both platforms; ``whale`` makes one large
payment), anchored, ingested by pboc's regulator node, and two on-chain disclosure requests
(one fulfilled and collected, one pending). :func:`running_console_site` serves that
regulator node's app with uvicorn in a background thread on 127.0.0.1 (a free port);
the ``console_site`` fixture yields it for a test module.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from api.regulator_app import create_regulator_app
from api.serving import uvicorn_config
from ledger_node.chain.adapter import LedgerChain
from ledger_node.client.sdk import PlatformClient, SubmittedRecord
from ledger_node.demo.postgres_cluster import StoreLocations
from ledger_node.demo.run import Party
from ledger_node.http_settings import Settings
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.auth import sign_request
from ledger_node.protocol.escrow import identity_key
from ledger_node.protocol.record import PaymentRecord
from ledger_node.regulator.node import RegulatorNode, node_audience
from tests.api_support import Consortium, make_consortium
from tests.regulator_support import (
    PERSON_TO_MERCHANT,
    T0,
    payment,
    platform_client,
    regulator_for,
    start_node,
    wait_anchored,
)

CASE_ID = bytes(range(32))
"""The case the fulfilled disclosure and :attr:`ConsoleData.case_file` belong to."""
STRUCTURING_IDENTITY = "mallory"
"""Pays 150,000 CNY twice on each platform within a day: a cross-platform structuring alert."""
LARGE_VALUE_IDENTITY = "whale"
"""Pays 600,000 CNY once on unionpay: a large-value alert."""


def _day(platform: str, first: int) -> list[PaymentRecord]:
    """Twelve ordinary payments of ``platform`` spread over the day (the noise)."""
    return [payment(platform, first + i, f"person-{(first + i) % 5}", f"shop-{i % 4}",
                    1_000 + 137 * i, T0 + timedelta(minutes=37 * i)) for i in range(12)]


def _planted() -> dict[str, list[PaymentRecord]]:
    """The AML cases: mallory on both platforms, whale on unionpay."""
    return {
        "unionpay": [payment("unionpay", 100 + i, STRUCTURING_IDENTITY, f"m{i}", 150_000_00,
                             T0 + timedelta(hours=i)) for i in range(2)]
        + [payment("unionpay", 200, LARGE_VALUE_IDENTITY, "yacht-shop", 600_000_00,
                   T0 + timedelta(hours=5))],
        "wechatpay": [payment("wechatpay", 100 + i, STRUCTURING_IDENTITY, f"w{i}", 150_000_00,
                              T0 + timedelta(hours=2 + i)) for i in range(2)],
    }


@dataclass
class ConsoleData:
    """The consortium, its running nodes and the regulator node with everything ingested."""

    consortium: Consortium
    nodes: dict[str, PlatformNode]
    clients: dict[str, PlatformClient]
    regulator: RegulatorNode
    submitted: dict[str, list[SubmittedRecord]]
    bundle: dict[str, Any]
    """A valid proof bundle (JSON) of one of mallory's records, built by the regulator."""
    case_file: dict[str, Any]
    """A case file (JSON) on mallory with the collected disclosure of :data:`CASE_ID`."""
    fulfilled_request: int
    pending_request: int

    @property
    def record_count(self) -> int:
        """How many payments were submitted over both platforms."""
        return sum(len(s) for s in self.submitted.values())

    def stop(self) -> None:
        """Stop the regulator node and both platform nodes."""
        self.regulator.stop()
        for node in self.nodes.values():
            node.stop()


def build_console_data(tmp: Path, store: Path | str | None = None) -> ConsoleData:
    """Set up the consortium, submit and anchor the payments, ingest, disclose (see module)."""
    consortium = make_consortium(LedgerChain.embedded())
    c = consortium
    nodes = {"unionpay": start_node(c, c.unionpay, tmp / "unionpay.db"),
             "wechatpay": start_node(c, c.wechatpay, tmp / "wechatpay.db")}
    clients = {name: platform_client(c, getattr(c, name), node) for name, node in nodes.items()}
    planted = _planted()
    submitted: dict[str, list[SubmittedRecord]] = {"unionpay": [], "wechatpay": []}
    regulator: RegulatorNode | None = None
    try:
        for name in ("unionpay", "wechatpay"):
            # three submissions each: three checkpoints per log for the timeline and charts
            for chunk in (_day(name, 0)[:6], _day(name, 0)[6:], planted[name]):
                submitted[name] += clients[name].submit_records(
                    chunk, kinds=lambda r: PERSON_TO_MERCHANT)
                wait_anchored(nodes[name], len(submitted[name]))
        regulator = regulator_for(c, tmp / "pboc.db" if store is None else store, nodes)
        regulator.sync()
        target = submitted["unionpay"][-2]  # mallory's second unionpay payment
        fulfilled = regulator.request_disclosure(target.prepared.leaf.commitment, CASE_ID)
        clients["unionpay"].answer_disclosure(
            fulfilled, target.prepared.opening, c.pboc.sm2_key.public_key(),
            chain_id=c.chain.chain_id, contract=c.chain.deployment.address,
            index=target.receipt.index)
        if regulator.collect_disclosure(fulfilled) is None:
            raise AssertionError(f"disclosure request {fulfilled} is not fulfilled on chain")
        pending = regulator.request_disclosure(
            submitted["wechatpay"][-1].prepared.leaf.commitment, bytes(32))
        traced = regulator.trace_identity(identity_key(STRUCTURING_IDENTITY))
        case_file = regulator.case_file(
            CASE_ID, identities=[identity_key(STRUCTURING_IDENTITY)])
        return ConsoleData(consortium, nodes, clients, regulator, submitted,
                           traced[0].bundle.to_json(), case_file, fulfilled, pending)
    except BaseException:
        if regulator is not None:
            regulator.stop()
        for node in nodes.values():
            node.stop()
        raise


def signed_console_login(base_url: str, party: Party, *, regulator_name: str = "pboc",
                         http: httpx.Client | None = None) -> httpx.Response:
    """``POST /v1/console/sessions`` signed by ``party`` (the answer, whatever it is)."""
    path = "/v1/console/sessions"
    headers = sign_request(party.sm2_key, party.account.address, "POST", path, b"",
                           audience=node_audience(regulator_name))
    if http is not None:
        return http.post(path, headers=headers)
    return httpx.post(base_url + path, headers=headers, timeout=10)


@dataclass
class ConsoleSite:
    """The regulator node's app served by uvicorn on ``base_url`` (127.0.0.1)."""

    data: ConsoleData
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread
    stopped: bool = field(default=False)

    @property
    def console_url(self) -> str:
        """Where the console page is (the auditor view without a session)."""
        return self.base_url + "/console/"

    @property
    def bundle(self) -> dict[str, Any]:
        """A valid proof bundle (JSON) of one record."""
        return self.data.bundle

    @property
    def bundle_text(self) -> str:
        """:attr:`bundle` as a JSON document (what a user would drop on the verify page)."""
        return json.dumps(self.data.bundle, indent=2)

    @property
    def case_file(self) -> dict[str, Any]:
        """A valid case file (JSON)."""
        return self.data.case_file

    def login_url(self, party: Party | None = None) -> str:
        """Make the signed login request as pboc (or ``party``); return the URL to open."""
        answer = signed_console_login(self.base_url, party or self.data.consortium.pboc)
        if answer.status_code != 201:
            raise AssertionError(f"console login refused: {answer.status_code} {answer.text}")
        return self.base_url + str(answer.json()["login_path"])

    def stop(self) -> None:
        """Stop the HTTP server, then the nodes."""
        if self.stopped:
            return
        self.stopped = True
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.data.stop()


def serve_in_thread(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a daemon thread; wait until
    it listens; return the server, the thread and the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    settings = getattr(app.state, "settings", None) or Settings()
    server = uvicorn.Server(uvicorn_config(app, settings, host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"console-http-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise AssertionError("the console's HTTP server did not start")
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{port}"


@contextmanager
def running_console_site(tmp: Path, settings: Settings | None = None,
                         store: Path | str | None = None) -> Iterator[ConsoleSite]:
    """Build the data in ``tmp`` (the regulator's store at ``store``, by default a SQLite
    file in ``tmp``), serve the regulator app; stop everything afterwards."""
    data = build_console_data(tmp, store)
    try:
        app = create_regulator_app(data.regulator, settings)
        server, thread, base_url = serve_in_thread(app)
    except BaseException:
        data.stop()
        raise
    site = ConsoleSite(data, base_url, server, thread)
    try:
        yield site
    finally:
        site.stop()


@pytest.fixture(scope="module")
def console_site(tmp_path_factory: pytest.TempPathFactory,
                 regulator_stores: StoreLocations) -> Iterator[ConsoleSite]:
    """A regulator node with data on a real HTTP server for this test module, on each
    store backend (``regulator_stores``)."""
    tmp = tmp_path_factory.mktemp("console")
    with running_console_site(tmp, store=regulator_stores(tmp, "pboc.db")) as site:
        yield site
