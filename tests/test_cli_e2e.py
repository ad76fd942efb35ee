"""The command line end to end, as an operator would run it: real processes on 127.0.0.1.

``keys new`` for three members → ``chain --consortium`` (embedded chain served as JSON-RPC,
contract deployed) → ``serve`` a platform node → ``submit`` records from JSONL and CSV →
``proof`` / ``checkpoints`` → ``verify`` against the chain with the node stopped → restart.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger_node.demo import sample_records

pytestmark = pytest.mark.slow
JOINTLEDGER = [sys.executable, "-m", "ledger_node.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*JOINTLEDGER, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"jointledger {' '.join(args)} -> {result.returncode}\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*JOINTLEDGER, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_until(condition: object, what: str, process: subprocess.Popen[str],
               timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"process ended before {what}: {output}")
        try:
            if condition():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Keys, a consortium chain process and its deployment file."""
    root = tmp_path_factory.mktemp("site")
    for name in ("unionpay", "wechatpay", "pboc"):
        run("keys", "new", "--name", name, "--dir", "keys", cwd=root)
    (root / "consortium.toml").write_text(
        "threshold = 2\n"
        + "".join(f'\n[[members]]\nname = "{n}"\nrole = "{r}"\nkeys = "keys"\n'
                  for n, r in (("unionpay", "platform"), ("wechatpay", "platform"),
                               ("pboc", "regulator")))
    )
    chain_port = free_port()
    chain = start("chain", "--port", str(chain_port), "--consortium", "consortium.toml",
                  "--deployment", "deployment.json", cwd=root)
    wait_until(lambda: (root / "deployment.json").exists(), "the deployment file", chain)
    node_port = free_port()
    (root / "unionpay.toml").write_text(f"""
[node]
platform = "unionpay"
store = "unionpay.db"
seal_interval = 0.2

[http]
port = {node_port}

[keys]
sm2 = "keys/unionpay.sm2.pem"
account = "keys/unionpay.account.key"

[chain]
deployment = "deployment.json"
rpc_url = "http://127.0.0.1:{chain_port}"
""")
    try:
        yield {"root": root, "rpc": f"http://127.0.0.1:{chain_port}",
               "url": f"http://127.0.0.1:{node_port}"}
    finally:
        stop(chain)


def serve(site: dict[str, object]) -> subprocess.Popen[str]:
    root, url = site["root"], str(site["url"])
    assert isinstance(root, Path)
    node = start("serve", "--role", "platform", "--name", "unionpay", "--config",
                 "unionpay.toml", cwd=root)
    wait_until(lambda: httpx.get(f"{url}/v1/health", timeout=2).status_code == 200,
               "the node to serve", node)
    return node


def test_operator_flow(site: dict[str, object]) -> None:
    root, url, rpc = site["root"], str(site["url"]), str(site["rpc"])
    assert isinstance(root, Path)
    records = sample_records("unionpay", 30, random.Random(5))
    (root / "records.jsonl").write_text(
        "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records[:20]))
    header = list(records[0].to_json())
    (root / "records.csv").write_text(",".join(header) + "\n" + "".join(
        ",".join(str(r.to_json()[h]).lower() if h == "cross_border" else str(r.to_json()[h])
                 for h in header) + "\n" for r in records[20:]))

    node = serve(site)
    try:
        submitted = run("submit", "records.jsonl", "--config", "unionpay.toml", "--chunk", "7",
                        cwd=root)
        assert "submitted 20 records" in submitted.stdout and "20 new" in submitted.stdout
        assert "20/20 leaves" in submitted.stderr  # the progress bar
        receipts_file = root / "records.jsonl.receipts.jsonl"
        assert receipts_file.stat().st_mode & 0o077 == 0  # openings are private
        receipts = [json.loads(line) for line in receipts_file.read_text().splitlines()]
        assert [r["index"] for r in receipts] == list(range(20))
        csv_run = run("submit", "records.csv", "--config", "unionpay.toml", cwd=root)
        assert "submitted 10 records" in csv_run.stdout

        run("proof", "25", "--url", url, "--out", "bundle.json", "--wait", "20", cwd=root)
        listing = run("checkpoints", "--url", url, cwd=root).stdout
        assert "checkpoint(s)" in listing and "0x" in listing
        # Re-submitting the same records commits them under fresh salts: new, unlinkable leaves.
        again = run("submit", "records.jsonl", "--config", "unionpay.toml", cwd=root)
        assert "20 new, 0 already in the log" in again.stdout
    finally:
        stop(node)

    verified = run("verify", "bundle.json", "--rpc-url", rpc, "--deployment", "deployment.json",
                   cwd=root)
    assert verified.stdout.rstrip().splitlines()[-1].startswith("VALID")

    node = serve(site)  # restart on the same store: everything acknowledged is still there
    try:
        status = httpx.get(f"{url}/v1/leaves/25", timeout=5).json()
        assert status["index"] == 25
        run("proof", "25", "--url", url, "--out", "bundle-after-restart.json", cwd=root)
    finally:
        stop(node)
    assert run("verify", "bundle-after-restart.json", "--rpc-url", rpc, cwd=root).returncode == 0


def test_bad_records_are_rejected_before_anything_is_sent(site: dict[str, object]) -> None:
    root = site["root"]
    assert isinstance(root, Path)
    good = sample_records("unionpay", 2, random.Random(1))
    bad = good[1].to_json() | {"amount_fen": -5}
    (root / "bad.jsonl").write_text(json.dumps(good[0].to_json()) + "\n" + json.dumps(bad) + "\n")
    result = run("submit", "bad.jsonl", "--config", "unionpay.toml", cwd=root, check=False)
    assert result.returncode == 2
    assert "bad.jsonl:2: invalid record field 'amount_fen'" in result.stderr
    assert "nothing was submitted" in result.stderr
    (root / "bad.csv").write_text("platform,nickname\nunionpay,x\n")
    result = run("submit", "bad.csv", "--config", "unionpay.toml", cwd=root, check=False)
    assert result.returncode == 2 and "unknown column 'nickname'" in result.stderr


def test_serve_refuses_a_config_for_another_member(site: dict[str, object]) -> None:
    root = site["root"]
    assert isinstance(root, Path)
    result = run("serve", "--role", "platform", "--name", "wechatpay", "--config",
                 "unionpay.toml", cwd=root, check=False)
    assert result.returncode == 1 and "configures platform 'unionpay'" in result.stderr

