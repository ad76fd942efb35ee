"""End to end through a real uvicorn server on 127.0.0.1: config file, submit, seal, fetch
bundles, verify them with verify_bundle against the chain, restart on the same store, verify
again; and the same over a separate JSON-RPC node (anvil)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.main import create_app
from api.server import PlatformServer, serve_platform_file
from ledger_node.chain.adapter import LedgerChain
from ledger_node.client.sdk import PlatformClient, SubmittedRecord
from ledger_node.crypto.keyfiles import MemberKeys, write_member_keys
from ledger_node.demo.run import sample_records
from ledger_node.errors import ChainError, InvalidConfig
from ledger_node.platform.config import ServeConfig, build_node, load_serve_config
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.bundle import ProofBundle, verify_bundle
from tests.api_support import Consortium, make_consortium


def write_config(directory: Path, consortium: Consortium, rpc_url: str | None = None) -> Path:
    """Key files, the deployment file and a TOML config for unionpay's node."""
    party = consortium.unionpay
    write_member_keys(directory / "keys", "unionpay", MemberKeys(party.sm2_key, party.account))
    consortium.deployment.save(directory / "deployment.json")
    rpc = f'rpc_url = "{rpc_url}"\n' if rpc_url else ""
    path = directory / "unionpay.toml"
    path.write_text(
        '[node]\nplatform = "unionpay"\nstore = "data/unionpay.db"\nseal_interval = 0.05\n'
        "seal_size = 1000\n\n"
        '[http]\nhost = "127.0.0.1"\nport = 0\nmax_body_bytes = 8388608\n\n'
        '[keys]\nsm2 = "keys/unionpay.sm2.pem"\naccount = "keys/unionpay.account.key"\n\n'
        f'[chain]\ndeployment = "deployment.json"\n{rpc}',
        encoding="utf-8")
    (directory / "data").mkdir(exist_ok=True)
    return path


class Running:
    """A started node and its API on a free port."""

    def __init__(self, config: ServeConfig, chain: LedgerChain | None) -> None:
        self.node: PlatformNode = build_node(config, chain=chain)
        self.node.start()
        self.server = PlatformServer(create_app(self.node, config.http), config.host,
                                     config.port)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.node.stop()


@pytest.fixture()
def embedded(tmp_path: Path) -> Iterator[tuple[Consortium, ServeConfig]]:
    consortium = make_consortium(LedgerChain.embedded())
    yield consortium, load_serve_config(write_config(tmp_path, consortium))


def submit_and_collect(url: str, consortium: Consortium, count: int, seed: int
                       ) -> tuple[list[SubmittedRecord], list[dict[str, object]]]:
    party = consortium.unionpay
    with PlatformClient(url, "unionpay", party.account.address, party.sm2_key,
                        chunk_size=25) as client:
        records = sample_records("unionpay", count, random.Random(seed))
        submitted = client.submit_records(records)
        bundles = [client.bundle_json(s.receipt.index, timeout=30.0) for s in submitted]
        return submitted, bundles


def test_submit_seal_verify_restart_verify(embedded: tuple[Consortium, ServeConfig]) -> None:
    consortium, config = embedded
    running = Running(config, consortium.chain)
    try:
        assert running.server.port != 0
        assert httpx.get(running.server.url + "/v1/health").json()["status"] == "ok"
        submitted, documents = submit_and_collect(running.server.url, consortium, 30, seed=40)
        reader = LedgerChain(consortium.chain.w3)
        for document, item in zip(documents, submitted, strict=True):
            bundle = ProofBundle.from_json(document)
            verdict = verify_bundle(bundle, chain=reader, opening=item.prepared.opening)
            assert verdict.valid, verdict.reasons
        size = running.node.size()
    finally:
        running.stop()

    restarted = Running(config, consortium.chain)  # same store, same chain
    try:
        assert restarted.node.size() == size
        url = restarted.server.url
        party = consortium.unionpay
        with PlatformClient(url, "unionpay", party.account.address, party.sm2_key) as client:
            again = client.submit_prepared([s.prepared for s in submitted[:5]])
            assert [a.receipt.index for a in again] == [s.receipt.index for s in submitted[:5]]
            assert all(a.receipt.duplicate for a in again)
            reader = LedgerChain(consortium.chain.w3)
            for document, item in list(zip(documents, submitted, strict=True))[::6]:
                fresh = client.bundle(item.receipt.index)
                assert verify_bundle(ProofBundle.from_json(document), chain=reader).valid
                assert verify_bundle(fresh, chain=reader).valid
            assert client.verify(ProofBundle.from_json(documents[0])).valid
        more, more_documents = submit_and_collect(url, consortium, 10, seed=41)
        assert more[0].receipt.index == size
        assert all(verify_bundle(ProofBundle.from_json(d),
                                 chain=LedgerChain(consortium.chain.w3)).valid
                   for d in more_documents)
        problem = httpx.post(f"{url}/v1/logs/{'ab' * 32}/leaves", content=b"{",
                             headers={"content-type": "application/json"})
        assert problem.status_code == 400  # malformed JSON first: the body is parsed before
        assert problem.headers["content-type"].startswith("application/problem+json")
        over = httpx.post(f"{url}/v1/verify", content=b"x" * (9 * 1024 * 1024),
                          headers={"content-type": "application/json"})
        assert over.status_code == 413 and over.json()["type"].endswith("/body-too-large")
        assert httpx.get(url + "/v1/health").status_code == 200
    finally:
        restarted.stop()


def test_config_file_errors(tmp_path: Path, embedded: tuple[Consortium, ServeConfig]) -> None:
    consortium, _ = embedded
    path = write_config(tmp_path / "x", consortium)
    text = path.read_text()
    cases = {
        "missing": None,
        "not toml": "[node\n",
        "unknown section": text + "\n[extra]\na = 1\n",
        "unknown key": text.replace("seal_size = 1000", "seal_size = 1000\ncolour = 1"),
        "wrong type": text.replace("seal_size = 1000", 'seal_size = "many"'),
        "public host": text.replace('host = "127.0.0.1"', 'host = "0.0.0.0"'),
        "bad setting": text.replace("max_body_bytes = 8388608", "max_body_bytes = 1"),
        "no platform": text.replace('platform = "unionpay"\n', ""),
    }
    for name, content in cases.items():
        target = tmp_path / f"{name.replace(' ', '-')}.toml"
        if content is not None:
            target.write_text(content)
        with pytest.raises(InvalidConfig):
            load_serve_config(target)
    config = load_serve_config(path)
    assert config.node.store_path == (tmp_path / "x" / "data" / "unionpay.db").resolve()
    with pytest.raises(ChainError, match="does not answer"):
        build_node(config, rpc_url="http://127.0.0.1:9")
    with pytest.raises(InvalidConfig, match="configures platform 'unionpay'"):
        serve_platform_file(path, name="wechatpay")


@pytest.mark.anvil
def test_served_over_a_separate_json_rpc_node(anvil_url: str, anvil_chain: LedgerChain,
                                              tmp_path: Path) -> None:
    consortium = make_consortium(anvil_chain)
    config = load_serve_config(write_config(tmp_path, consortium, rpc_url=anvil_url))
    running = Running(config, None)
    try:
        submitted, documents = submit_and_collect(running.server.url, consortium, 8, seed=42)
        reader = LedgerChain.from_rpc(anvil_url)
        for document in documents:
            assert verify_bundle(ProofBundle.from_json(document), chain=reader).valid
    finally:
        running.stop()
