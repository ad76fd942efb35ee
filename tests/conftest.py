"""Shared fixtures: the embedded eth-tester chain, a real anvil JSON-RPC node, and a
consortium with a running platform node for the API-level tests.

The chains are session-scoped: each test deploys its own contract on them, so tests stay
independent without paying for a new chain (or node process) each time. The consortium
and node are per test module.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from ledger_node.chain.adapter import LedgerChain
from ledger_node.demo.localsite import free_ports
from ledger_node.demo.postgres_cluster import (
    REQUIRE_ENV,
    PostgresCluster,
    StoreLocations,
    start_cluster,
)
from ledger_node.platform.node import PlatformNode
from tests.api_support import Consortium, make_consortium, make_node

# Properties are checked for correctness, not speed: on a loaded 2-core machine a pure
# example can take longer than hypothesis's default 200 ms deadline (speed is measured by
# scripts/bench*, never by timed assertions in tests).
settings.register_profile("jointledger", deadline=None)
settings.load_profile("jointledger")

REPO_ROOT = Path(__file__).resolve().parent.parent
ANVIL_BINARY = (
    REPO_ROOT / ".tools" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
)
ANVIL_START_TIMEOUT_S = 20.0


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 (below the ephemeral range: see ``free_ports``)."""
    return free_ports(1)


def _answers(url: str) -> bool:
    """Whether a JSON-RPC node at ``url`` answers ``eth_chainId``."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return "result" in json.loads(response.read())
    except OSError:
        return False


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    """Start the pinned anvil on a free local port, yield its URL, stop it afterwards.

    Fails (never skips) when the binary is missing: ``./dev.sh test`` installs it.
    """
    if not ANVIL_BINARY.is_file():
        pytest.fail(f"anvil binary not found at {ANVIL_BINARY}: run ./dev.sh test to install it")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # stderr goes to a file, not a pipe: nobody drains a pipe while the tests run.
    stderr_log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [str(ANVIL_BINARY), "--port", str(port), "--host", "127.0.0.1", "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=stderr_log,
    )
    try:
        deadline = time.monotonic() + ANVIL_START_TIMEOUT_S
        while not _answers(url):
            if process.poll() is not None:
                stderr_log.seek(0)
                stderr = stderr_log.read().decode(errors="replace")
                pytest.fail(f"anvil exited with {process.returncode}: {stderr}")
            if time.monotonic() > deadline:
                pytest.fail(f"anvil did not answer on {url} within {ANVIL_START_TIMEOUT_S}s")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stderr_log.close()


@pytest.fixture(scope="session")
def eth_tester_chain() -> LedgerChain:
    """One in-process eth-tester (py-evm) chain for the whole session."""
    return LedgerChain.embedded()


@pytest.fixture(scope="session")
def anvil_chain(anvil_url: str) -> LedgerChain:
    """A client of the session's anvil node."""
    return LedgerChain.from_rpc(anvil_url)


@pytest.fixture(scope="module")
def consortium() -> Consortium:
    """unionpay, wechatpay, pboc (2-of-3) and an auditor on a fresh embedded chain."""
    return make_consortium(LedgerChain.embedded())


@pytest.fixture(scope="module")
def node(consortium: Consortium, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[PlatformNode]:
    """unionpay's running platform node on its own store; stopped after the module."""
    node = make_node(consortium, tmp_path_factory.mktemp("node") / "store.db")
    yield node
    node.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the session (ledger_node/demo/postgres_cluster.py).

    Without PostgreSQL installed: skipped with the reason, or failed when
    ``JL_REQUIRE_POSTGRES=1`` (the test command and CI set it).
    """
    try:
        cluster = start_cluster()
    except FileNotFoundError as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{exc} ({REQUIRE_ENV}=1)")
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store_backend(request: pytest.FixtureRequest) -> str:
    """The regulator store's backend the behaviour suite runs on (both, per module)."""
    return str(request.param)


@pytest.fixture(scope="module")
def regulator_stores(store_backend: str, request: pytest.FixtureRequest) -> StoreLocations:
    """Where this module's regulator stores go on ``store_backend``."""
    cluster = (request.getfixturevalue("postgres_cluster")
               if store_backend == "postgresql" else None)
    return StoreLocations(store_backend, cluster)
