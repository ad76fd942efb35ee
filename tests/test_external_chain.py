"""A platform node on an external JSON-RPC chain (anvil): finality after a configurable
number of confirmations, reverts reported with their custom error, an anvil restart from
its dumped state, a rollback to an older state, and an RPC that stops answering.

Each test runs a real :class:`PlatformNode` against a real anvil process; the restart and
rollback tests start their own anvil on a free port (restarted on the same port), the
outage test puts a pausable TCP proxy between the node and anvil. After every run the
chain's ``CheckpointAnchored`` history of the log is compared with the store: every
acknowledged leaf is under an anchored checkpoint, every checkpoint is on chain exactly
once with the store's root, sizes strictly increasing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hexbytes import HexBytes

from api.main import create_app
from ledger_node.chain.adapter import LedgerChain, Role
from ledger_node.crypto import gmcrypto
from ledger_node.demo.run import Party, new_party
from ledger_node.errors import ChainError, InvalidConfig
from ledger_node.http_settings import Settings
from ledger_node.log.leaf import Leaf, batch_digest
from ledger_node.platform.config import load_serve_config
from ledger_node.platform.node import NodeConfig, PlatformNode
from ledger_node.protocol.auth import BatchEvidence
from ledger_node.protocol.bundle import verify_bundle
from tests.api_support import Consortium, make_consortium
from tests.conftest import ANVIL_BINARY, ANVIL_START_TIMEOUT_S, _answers, _free_port

pytestmark = pytest.mark.anvil

WAIT_S = 45.0
RPC_TIMEOUT_S = 0.5  # per request: an RPC that stops answering fails fast
RECEIPT_TIMEOUT_S = 3.0


# ------------------------------------------------------------------ helpers


class AnvilProcess:
    """One anvil on a fixed port that a test can stop (SIGTERM or SIGKILL) and start again,
    optionally loading and dumping its state from and to files."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()

    def start(self, *state_args: str) -> None:
        """Start it (``state_args``: e.g. ``--state FILE``) and wait until it answers."""
        self._process = subprocess.Popen(
            [str(ANVIL_BINARY), "--port", str(self.port), "--host", "127.0.0.1", "--silent",
             *state_args],
            stdout=subprocess.DEVNULL, stderr=self._stderr,
        )
        deadline = time.monotonic() + ANVIL_START_TIMEOUT_S
        while not _answers(self.url):
            if self._process.poll() is not None:
                self._stderr.seek(0)
                pytest.fail(f"anvil exited with {self._process.returncode}: "
                            f"{self._stderr.read().decode(errors='replace')}")
            if time.monotonic() > deadline:
                pytest.fail(f"anvil did not answer on {self.url}")
            time.sleep(0.05)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop it with ``sig`` and wait (SIGTERM lets ``--state`` dump the state)."""
        if self._process is None:
            return
        self._process.send_signal(sig)
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def close(self) -> None:
        self.stop(signal.SIGKILL)
        self._stderr.close()


@pytest.fixture
def own_anvil() -> Iterator[AnvilProcess]:
    """An anvil of this test's own, not started yet."""
    if not ANVIL_BINARY.is_file():
        pytest.fail(f"anvil binary not found at {ANVIL_BINARY}: run ./dev.sh test")
    anvil = AnvilProcess(_free_port())
    yield anvil
    anvil.close()


class PausableProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream``; while paused it still accepts
    connections but forwards nothing either way, so requests time out unanswered."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._paused = threading.Event()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._paused.set()

    @property
    def paused(self) -> bool:
        """Whether it forwards nothing now."""
        return self._paused.is_set()

    def resume(self) -> None:
        """Forward again; connections that lost data while paused are closed."""
        with self._lock:
            stale, self._sockets = self._sockets, []
        for s in stale:
            s.close()
        self._paused.clear()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._listener.close()
        self.resume()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._upstream))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not self._paused.is_set():
                    target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class AnswerDroppingForwarder:
    """A JSON-RPC forwarder in front of ``upstream`` that, when armed, passes the next
    ``eth_sendRawTransaction`` on but never answers it (the client times out and sends the
    same bytes again). Records the raw transactions it saw."""

    def __init__(self, upstream: str, silence_s: float) -> None:
        self.sent: list[str] = []
        self.armed = threading.Event()
        forwarder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                call = json.loads(body)
                request = urllib.request.Request(upstream, data=body, headers={
                    "Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = response.read()
                if call.get("method") == "eth_sendRawTransaction":
                    forwarder.sent.append(call["params"][0])
                    if forwarder.armed.is_set():
                        forwarder.armed.clear()
                        time.sleep(silence_s)  # the answer is lost: the client gave up
                        return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def rpc(url: str, method: str, *params: Any) -> Any:
    """One raw JSON-RPC call (``evm_mine`` and friends, outside the node's client)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(url, data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert "error" not in answer, answer
    return answer["result"]


def node_on(url: str, consortium: Consortium, store: Path, **config: Any) -> PlatformNode:
    """unionpay's node on the chain at ``url``, with short RPC and receipt timeouts."""
    chain = LedgerChain.from_rpc(url, request_timeout=RPC_TIMEOUT_S,
                                 receipt_timeout=RECEIPT_TIMEOUT_S)
    bound = chain.with_account(consortium.unionpay.account).attach(consortium.deployment)
    # The default 1 s membership cache: while the chain is down, expired entries are read
    # again in the background and intake goes on with them (tests/test_chain_outage.py).
    settings: dict[str, Any] = {"seal_interval": 0.05} | config
    return PlatformNode(NodeConfig(platform="unionpay", store_path=store, **settings), bound,
                        consortium.unionpay.sm2_key)


def new_leaves(count: int) -> list[Leaf]:
    return [Leaf(os.urandom(32), os.urandom(40)) for _ in range(count)]


def submit(node: PlatformNode, party: Party, batch: Sequence[Leaf]) -> list[Any]:
    digest = batch_digest(node.log_id, batch)
    evidence = BatchEvidence(party.account.address, digest,
                             gmcrypto.sign(party.sm2_key, digest))
    return node.submit(batch, evidence)


def wait_for(what: str, condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for: {what}")
        time.sleep(0.05)


def fully_anchored(node: PlatformNode) -> bool:
    latest = node.latest_checkpoint()
    return latest is not None and latest.tree_size == node.size()


class Submitter:
    """Submits small batches from a thread until stopped; counts what was acknowledged."""

    def __init__(self, node: PlatformNode, party: Party) -> None:
        self.node, self.party = node, party
        self.acknowledged = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Submitter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.acknowledged += len(submit(self.node, self.party, new_leaves(3)))
            except Exception as exc:  # the test asserts there were none
                self.errors.append(exc)
                return
            time.sleep(0.02)


def assert_chain_matches_store(node: PlatformNode, url: str) -> None:
    """Every stored checkpoint anchored, on chain once, same root, sizes increasing; every
    leaf under the latest; a sample of bundles verifies against the chain."""
    reader = LedgerChain.from_rpc(url).attach(node.deployment)
    history = reader.checkpoints(node.log_id)
    sizes = [c.tree_size for c in history]
    assert sizes == sorted(set(sizes)), f"a size anchored twice or out of order: {sizes}"
    stored = node.store_for_tests.checkpoints()
    assert all(c.anchored for c in stored)
    assert [c.tree_size for c in stored] == sizes
    on_chain = {c.tree_size: c for c in history}
    for c in stored:
        assert on_chain[c.tree_size].root == c.root
        assert on_chain[c.tree_size].tx_hash == c.tx_hash
    assert sizes[-1] == node.size()
    for index in sorted({0, node.size() // 2, node.size() - 1}):
        bundle = node.proof_bundle(index)
        assert bundle is not None
        verdict = verify_bundle(bundle, chain=reader)
        assert verdict.valid, verdict.to_json()


def deploy_on(url: str) -> Consortium:
    return make_consortium(LedgerChain.from_rpc(url))


# ------------------------------------------------------------------ tests


def test_end_to_end_final_after_three_confirmations(anvil_url: str, tmp_path: Path) -> None:
    consortium = deploy_on(anvil_url)
    node = node_on(anvil_url, consortium, tmp_path / "node.db", confirmations=3)
    node.start()
    try:
        receipts = submit(node, consortium.unionpay, new_leaves(5))
        assert [r.index for r in receipts] == list(range(5))
        wait_for("the anchoring", lambda: fully_anchored(node))
        anchored = node.latest_checkpoint()
        assert anchored is not None and anchored.block_number is not None
        block = anchored.block_number
        client = TestClient(create_app(node, Settings()))

        def checked_at(head: int) -> bool:
            checked = node.sealer_status().checked_head
            return checked is not None and checked >= head

        wait_for("a finality check at the anchoring's block", lambda: checked_at(block))
        health = client.get("/v1/health").json()
        assert health["final_size"] == 0 and health["anchoring"]["confirmations"] == 3
        assert health["last_anchored"]["final"] is False
        listed = client.get("/v1/checkpoints").json()["checkpoints"]
        assert [(c["tree_size"], c["final"]) for c in listed] == [(5, False)]

        rpc(anvil_url, "evm_mine")  # 2 confirmations: not final yet
        wait_for("a finality check one block later", lambda: checked_at(block + 1))
        assert node.sealer_status().final_size == 0

        rpc(anvil_url, "evm_mine")  # 3 confirmations
        wait_for("finality", lambda: node.sealer_status().final_size == 5)
        assert int(rpc(anvil_url, "eth_blockNumber"), 16) >= block + 2
        health = client.get("/v1/health").json()
        assert health["status"] == "ok" and health["final_size"] == 5
        assert health["last_anchored"]["final"] is True
        assert client.get("/v1/checkpoints").json()["checkpoints"][0]["final"] is True
        assert node.metrics()["final_size"] == 5.0
        assert "jointledger_final_size 5.0" in client.get("/metrics").text
        assert_chain_matches_store(node, anvil_url)
    finally:
        node.stop()


def test_reverted_anchoring_reports_the_custom_error(anvil_url: str, tmp_path: Path) -> None:
    consortium = deploy_on(anvil_url)
    # The node trusts its cached membership for an hour, so it still takes leaves (and
    # tries to anchor them) after the consortium removed it: the chain refuses.
    node = node_on(anvil_url, consortium, tmp_path / "node.db", seal_interval=3600.0,
                   seal_size=5, member_cache_ttl=3600.0)
    node.start()
    try:
        submit(node, consortium.unionpay, new_leaves(5))
        wait_for("the first anchoring", lambda: fully_anchored(node))
        proposal, _ = consortium.chain.propose_remove_member(consortium.unionpay.account.address)
        consortium.as_party(consortium.wechatpay).approve(proposal)
        assert not consortium.chain.member(consortium.unionpay.account.address).active

        submit(node, consortium.unionpay, new_leaves(5))
        wait_for("a failed anchoring", lambda: node.sealer_status().failing)
        client = TestClient(create_app(node, Settings()))
        health = client.get("/v1/health")
        assert health.status_code == 200  # the chain answers; anchoring is what fails
        body = health.json()
        assert body["status"] == "degraded"
        assert body["anchoring"]["failing"] is True
        error = body["anchoring"]["last_error"]
        assert error.startswith("ContractRevert: ") and "Membership_NotPlatform" in error
        assert body["last_anchored"]["tree_size"] == 5 and node.size() == 10
        assert [c.status for c in node.store_for_tests.checkpoints()] == ["anchored", "signed"]
    finally:
        node.stop()


@pytest.mark.slow
def test_anvil_restart_with_dumped_state(own_anvil: AnvilProcess, tmp_path: Path) -> None:
    state = tmp_path / "anvil-state.json"
    own_anvil.start("--state", str(state))
    consortium = deploy_on(own_anvil.url)
    node = node_on(own_anvil.url, consortium, tmp_path / "node.db", confirmations=2)
    node.start()
    try:
        with Submitter(node, consortium.unionpay) as submitter:
            wait_for("some anchorings", lambda: len(node.checkpoints()) >= 3)
            own_anvil.stop(signal.SIGTERM)  # dumps its state on exit
            assert state.stat().st_size > 0
            wait_for("anchoring failing while anvil is down",
                     lambda: node.sealer_status().failing)
            during = submitter.acknowledged
            wait_for("intake going on without the chain",
                     lambda: submitter.acknowledged > during + 30)
            own_anvil.start("--state", str(state))
            wait_for("anchoring again", lambda: not node.sealer_status().failing
                     and len(node.checkpoints()) >= 5)
        assert not submitter.errors, submitter.errors
        wait_for("every acknowledged leaf anchored", lambda: fully_anchored(node))
        assert node.size() == submitter.acknowledged
        assert node.sealer_status().lost_anchorings == 0  # the dump kept every anchoring
        assert_chain_matches_store(node, own_anvil.url)
    finally:
        node.stop()


@pytest.mark.slow
@pytest.mark.parametrize("confirmations", [1, 2])
def test_rollback_to_an_older_state_re_anchors_the_lost_checkpoints(
    own_anvil: AnvilProcess, tmp_path: Path, confirmations: int
) -> None:
    """With 2 confirmations the last anchoring is not final yet: its vanished receipt shows
    the loss. With 1 the next send finds the nonce gap (an idle node would notice within
    RECONCILE_EVERY_S). Either way the lost sizes go back on chain, in order, once."""
    state, older = tmp_path / "anvil-state.json", tmp_path / "older-state.json"
    own_anvil.start("--state", str(state))
    consortium = deploy_on(own_anvil.url)
    node = node_on(own_anvil.url, consortium, tmp_path / "node.db",
                   confirmations=confirmations)
    node.start()
    try:
        submit(node, consortium.unionpay, new_leaves(4))
        wait_for("the first anchoring", lambda: fully_anchored(node))
        own_anvil.stop(signal.SIGTERM)
        shutil.copy(state, older)  # the chain as it was with one checkpoint
        own_anvil.start("--state", str(state))
        for _ in range(3):
            submit(node, consortium.unionpay, new_leaves(4))
            wait_for("an anchoring", lambda: fully_anchored(node))
        before = [c.tree_size for c in node.checkpoints()]
        assert before == [4, 8, 12, 16]
        reader = LedgerChain.from_rpc(own_anvil.url).attach(node.deployment)
        assert [c.tree_size for c in reader.checkpoints(node.log_id)] == before

        # hold the first re-anchoring, to look at what the node serves in between
        send, held, release = node.chain.anchor_checkpoint, threading.Event(), threading.Event()

        def held_send(log_id: bytes, tree_size: int, *rest: Any) -> Any:
            if tree_size <= 16 and not release.is_set():  # a lost size, sent again
                held.set()
                release.wait(WAIT_S)
            return send(log_id, tree_size, *rest)

        node.chain.anchor_checkpoint = held_send  # type: ignore[method-assign]
        own_anvil.stop(signal.SIGKILL)
        own_anvil.start("--load-state", str(older))  # the chain lost three anchorings
        if confirmations == 1:
            submit(node, consortium.unionpay, new_leaves(4))  # its anchoring meets the gap
            before.append(20)
        try:
            assert held.wait(WAIT_S), "the lost anchorings were not sent again"
            assert node.sealer_status().lost_anchorings >= 3
            # nothing is served against a lost transaction: bundles fall back to size 4
            latest = node.latest_checkpoint()
            assert latest is not None and latest.tree_size == 4
            assert node.proof_bundle(4) is None and not node.leaf_status(4).anchored
            bundle = node.proof_bundle(3)
            assert bundle is not None and bundle.tree_size == 4
            assert verify_bundle(bundle, chain=reader).valid
        finally:
            release.set()
        wait_for("re-anchored", lambda: fully_anchored(node)
                 and not node.sealer_status().failing
                 and [c.tree_size for c in reader.checkpoints(node.log_id)] == before)
        if confirmations == 1:
            assert "nonce gap" in (node.sealer_status().last_error or "")
        else:
            submit(node, consortium.unionpay, new_leaves(4))  # and the node goes on
            wait_for("a new anchoring", lambda: fully_anchored(node))
        assert node.sealer_status().lost_anchorings >= 3
        assert node.metrics()["lost_anchorings"] >= 3.0
        assert_chain_matches_store(node, own_anvil.url)
        assert [c.tree_size for c in reader.checkpoints(node.log_id)] == [4, 8, 12, 16, 20]
    finally:
        node.stop()


@pytest.mark.slow
def test_rpc_that_stops_answering(anvil_url: str, tmp_path: Path) -> None:
    consortium = deploy_on(anvil_url)
    port = int(anvil_url.rsplit(":", 1)[1])
    proxy = PausableProxy(port)
    node = node_on(proxy.url, consortium, tmp_path / "node.db")
    node.start()
    client = TestClient(create_app(node, Settings()))
    try:
        with Submitter(node, consortium.unionpay) as submitter:
            wait_for("some anchorings", lambda: len(node.checkpoints()) >= 2)
            proxy.pause()
            wait_for("anchoring failing during the outage",
                     lambda: node.sealer_status().failing)
            during = client.get("/v1/health")
            assert during.status_code in (200, 503)
            document = during.json() if during.status_code == 200 else during.json()["health"]
            assert document["status"] == "degraded"
            assert document["anchoring"]["failing"] is True
            assert "ChainError" in document["anchoring"]["last_error"]
            acknowledged = submitter.acknowledged
            wait_for("intake going on during the outage",
                     lambda: submitter.acknowledged > acknowledged + 30)
            proxy.resume()
            wait_for("anchoring again", lambda: not node.sealer_status().failing)
        assert not submitter.errors, submitter.errors
        wait_for("every acknowledged leaf anchored", lambda: fully_anchored(node))
        assert node.size() == submitter.acknowledged
        after = client.get("/v1/health")
        assert after.status_code == 200 and after.json()["status"] == "ok"
        assert node.sealer_status().anchoring_failures >= 1
        assert_chain_matches_store(node, anvil_url)
    finally:
        node.stop()
        proxy.close()


def test_a_send_whose_answer_was_lost_is_recognised_when_re_sent(anvil_url: str) -> None:
    """The node got the transaction but its answer never came: the client's retry sends the
    same bytes, the node says it has them, and the sender takes that as sent (mined once)."""
    forwarder = AnswerDroppingForwarder(anvil_url, silence_s=3 * RPC_TIMEOUT_S)
    try:
        chain = LedgerChain.from_rpc(forwarder.url, request_timeout=RPC_TIMEOUT_S,
                                     receipt_timeout=RECEIPT_TIMEOUT_S)
        faucet = chain.dev_faucet()
        payee = new_party("payee", Role.PLATFORM).account.address
        before = chain.w3.eth.get_transaction_count(faucet.address)
        forwarder.armed.set()
        outcome = chain.fund(payee, 12345, faucet)
        assert len(forwarder.sent) == 2 and forwarder.sent[0] == forwarder.sent[1]
        assert chain.balance(payee) == 12345
        assert chain.w3.eth.get_transaction_count(faucet.address) == before + 1
        assert chain.mined_transaction(outcome.tx_hash) is not None
        chain.fund(payee, 1, faucet)  # the nonce book is right afterwards
        assert chain.balance(payee) == 12346
    finally:
        forwarder.close()


def test_a_transaction_the_node_dropped_does_not_wedge_the_sender(
    own_anvil: AnvilProcess, tmp_path: Path
) -> None:
    state = tmp_path / "anvil-state.json"
    own_anvil.start("--state", str(state))
    chain = LedgerChain.from_rpc(own_anvil.url, request_timeout=RPC_TIMEOUT_S,
                                 receipt_timeout=1.0)
    faucet = chain.dev_faucet()
    payee = new_party("payee", Role.PLATFORM).account.address
    nonce = chain.w3.eth.get_transaction_count(faucet.address)
    rpc(own_anvil.url, "evm_setAutomine", False)
    with pytest.raises(ChainError, match="still pending"):
        chain.fund(payee, 7, faucet)
    own_anvil.stop(signal.SIGTERM)  # the pending transaction is not in the dumped state
    own_anvil.start("--state", str(state))
    assert chain.balance(payee) == 0
    outcome = chain.fund(payee, 8, faucet)  # the lost nonce is used again
    tx = chain.w3.eth.get_transaction(HexBytes(outcome.tx_hash))
    assert tx["nonce"] == nonce and chain.balance(payee) == 8


def test_a_nonce_gap_after_a_rollback_is_reported_then_closed(
    own_anvil: AnvilProcess, tmp_path: Path
) -> None:
    state, older = tmp_path / "anvil-state.json", tmp_path / "older-state.json"
    own_anvil.start("--state", str(state))
    own_anvil.stop(signal.SIGTERM)
    shutil.copy(state, older)
    own_anvil.start("--state", str(state))
    chain = LedgerChain.from_rpc(own_anvil.url, request_timeout=RPC_TIMEOUT_S,
                                 receipt_timeout=RECEIPT_TIMEOUT_S)
    faucet = chain.dev_faucet()
    payee = new_party("payee", Role.PLATFORM).account.address
    chain.fund(payee, 5, faucet)
    own_anvil.stop(signal.SIGKILL)
    own_anvil.start("--load-state", str(older))  # the chain forgot that transfer
    with pytest.raises(ChainError, match="nonce gap"):
        chain.fund(payee, 6, faucet)
    chain.fund(payee, 6, faucet)
    assert chain.balance(payee) == 6


def test_serve_config_reads_the_chain_settings(tmp_path: Path) -> None:
    def config(chain: str) -> Path:
        path = tmp_path / "node.toml"
        path.write_text('[node]\nplatform = "unionpay"\nstore = "u.db"\n\n'
                        '[keys]\nsm2 = "u.pem"\naccount = "u.key"\n\n'
                        f'[chain]\ndeployment = "deployment.json"\n{chain}\n')
        return path

    loaded = load_serve_config(config("confirmations = 3\nrpc_timeout_s = 2\n"
                                      "receipt_timeout_s = 7.5"))
    assert loaded.node.confirmations == 3
    assert (loaded.rpc_timeout, loaded.receipt_timeout) == (2.0, 7.5)
    defaults = load_serve_config(config(""))
    assert defaults.node.confirmations == 1
    assert (defaults.rpc_timeout, defaults.receipt_timeout) == (30.0, 120.0)
    for bad in ("confirmations = 0", "rpc_timeout_s = 0", "receipt_timeout_s = -1"):
        with pytest.raises(InvalidConfig, match="confirmations (must be )?at least 1"):
            load_serve_config(config(bad))
    with pytest.raises(InvalidConfig, match="chain.confirmations has the wrong type"):
        load_serve_config(config('confirmations = "3"'))


def test_serve_config_reads_the_membership_and_probe_settings(tmp_path: Path) -> None:
    def config(node: str) -> Path:
        path = tmp_path / "node.toml"
        path.write_text(f'[node]\nplatform = "unionpay"\nstore = "u.db"\n{node}\n\n'
                        '[keys]\nsm2 = "u.pem"\naccount = "u.key"\n\n'
                        '[chain]\ndeployment = "deployment.json"\n')
        return path

    loaded = load_serve_config(config(
        "member_cache_ttl = 5\nmember_stale_limit = 300\nmember_refresh_wait = 0.5\n"
        "chain_probe_interval = 1\nchain_status_max_age = 4.5"))
    assert (loaded.node.member_cache_ttl, loaded.node.member_stale_limit,
            loaded.node.member_refresh_wait) == (5.0, 300.0, 0.5)
    assert (loaded.node.chain_probe_interval, loaded.node.chain_status_max_age) == (1.0, 4.5)
    defaults = load_serve_config(config("")).node
    assert (defaults.member_cache_ttl, defaults.member_stale_limit, defaults.member_refresh_wait,
            defaults.chain_probe_interval, defaults.chain_status_max_age) == (
                1.0, 60.0, 1.0, 2.0, 15.0)
    refused = {
        "chain_probe_interval = 20": "chain_probe_interval < chain_status_max_age",
        "chain_probe_interval = 0": "chain_probe_interval < chain_status_max_age",
        "member_refresh_wait = -1": "must not be negative",
        "member_stale_limit = -0.5": "must not be negative",
        "seal_interval = 0": "seal_interval must be positive",
        "max_batch = 0": "max_batch and validation_threads",
    }
    for bad, says in refused.items():
        with pytest.raises(InvalidConfig, match=says):
            load_serve_config(config(bad))
    with pytest.raises(InvalidConfig, match="member_refresh_wait has the wrong type"):
        load_serve_config(config('member_refresh_wait = "soon"'))
