"""``jointledger init``, ``up`` and ``status``: a consortium directory laid out, every file
in it loading, the whole consortium started from it as real processes, its status read,
stopped with SIGINT; and the refusals with their messages."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509

from ledger_node.chain.adapter import Role
from ledger_node.chain.consortium import load_consortium
from ledger_node.cli.main import main
from ledger_node.cli.sitedir import read_run_file
from ledger_node.demo.localsite import free_ports
from ledger_node.platform.config import load_serve_config
from ledger_node.regulator.config import load_regulator_config


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive TCP ports free on 127.0.0.1 right now."""
    return free_ports(count)


def test_init_lays_out_a_consortium_whose_files_all_load(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    site = tmp_path / "site"
    assert main(["init", str(site), "--platform", "unionpay", "--platform", "wechatpay",
                 "--shards", "wechatpay=2", "--auditor", "kpmg", "--threshold", "3",
                 "--chain-port", "9545", "--first-node-port", "9701"]) == 0
    out = capsys.readouterr().out
    assert "4 members, 3-of-4" in out and "jointledger up" in out

    names = {path.relative_to(site).as_posix() for path in site.rglob("*") if path.is_file()}
    for member in ("unionpay", "wechatpay", "pboc", "kpmg"):
        assert {f"keys/{member}.sm2.pem", f"keys/{member}.sm2.pub.pem",
                f"keys/{member}.account.key"} <= names
    assert (site / "keys/unionpay.sm2.pem").stat().st_mode & 0o777 == 0o600
    assert {"tls/ca.pem", "tls/ca.key", "tls/chain.pem", "tls/unionpay.pem", "tls/pboc.pem",
            "tls/wechatpay.key", "consortium.toml", "unionpay.toml", "wechatpay.toml",
            "wechatpay-shard1.toml", "pboc-regulator.toml", "run", "README.md",
            "systemd/jointledger-chain.service", "systemd/jointledger-pboc.service",
            "systemd/jointledger-wechatpay-shard1.service"} <= names
    # An auditor runs no node, but gets its own client certificate for the mutual-TLS chain
    # (before, it had none and the tutorial's auditor borrowed a platform's).
    assert {"tls/kpmg.pem", "tls/kpmg.key"} <= names
    assert not any("kpmg" in name for name in names if name.startswith("systemd/"))

    consortium = load_consortium(site / "consortium.toml")
    assert consortium.threshold == 3
    assert [(m.name, m.role) for m in consortium.members] == [
        ("unionpay", Role.PLATFORM), ("wechatpay", Role.PLATFORM), ("pboc", Role.REGULATOR),
        ("kpmg", Role.AUDITOR)]

    shard1 = load_serve_config(site / "wechatpay-shard1.toml")
    assert (shard1.node.platform, shard1.node.shard, shard1.port) == ("wechatpay", 1, 9703)
    assert shard1.node.store_path == (site / "wechatpay-shard1.db").resolve()
    assert shard1.rpc_url == "https://127.0.0.1:9545"
    assert shard1.server_tls is not None and shard1.server_tls.client_ca is not None
    assert shard1.client_tls.ca == (site / "tls/ca.pem").resolve()
    assert load_serve_config(site / "unionpay.toml").url == "https://127.0.0.1:9701"
    regulator = load_regulator_config(site / "pboc-regulator.toml")
    assert regulator.port == 9704
    assert regulator.platforms == {
        "unionpay": "https://127.0.0.1:9701",
        "wechatpay": ("https://127.0.0.1:9702", "https://127.0.0.1:9703")}

    ca = x509.load_pem_x509_certificate((site / "tls/ca.pem").read_bytes())
    node_cert = x509.load_pem_x509_certificate((site / "tls/unionpay.pem").read_bytes())
    node_cert.verify_directly_issued_by(ca)
    auditor_cert = x509.load_pem_x509_certificate((site / "tls/kpmg.pem").read_bytes())
    auditor_cert.verify_directly_issued_by(ca)
    assert x509.ExtendedKeyUsageOID.CLIENT_AUTH in auditor_cert.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value

    processes = read_run_file(site)
    assert [(p.name, p.role) for p in processes] == [
        ("chain", "chain"), ("unionpay", "platform"), ("wechatpay", "platform"),
        ("wechatpay-shard1", "platform"), ("pboc", "regulator")]
    unit = (site / "systemd/jointledger-pboc.service").read_text()
    assert "Requires=jointledger-chain.service" in unit
    assert "jointledger-wechatpay-shard1.service" in unit  # after every platform node
    assert f"WorkingDirectory={site.resolve()}" in unit
    readme = (site / "README.md").read_text()
    assert readme.index("1. The chain") < readme.index("2. The platform") < readme.index(
        "3. The regulator")
    assert "--client-cert tls/kpmg.pem --client-key tls/kpmg.key" in readme


def test_init_with_an_external_chain_and_host_names(tmp_path: Path) -> None:
    site = tmp_path / "site"
    assert main(["init", str(site), "--platform", "unionpay", "--rpc-url",
                 "https://besu.example:8545", "--host", "10.0.0.5",
                 "--host", "unionpay=up.example"]) == 0
    assert [p.name for p in read_run_file(site)] == ["unionpay", "pboc"]
    assert not (site / "tls/chain.pem").exists()
    assert not (site / "systemd/jointledger-chain.service").exists()
    unionpay = load_serve_config(site / "unionpay.toml")
    assert (unionpay.host, unionpay.rpc_url) == ("up.example", "https://besu.example:8545")
    regulator = load_regulator_config(site / "pboc-regulator.toml")
    assert regulator.host == "10.0.0.5"
    assert regulator.platforms == {"unionpay": "https://up.example:8701"}
    names = x509.load_pem_x509_certificate((site / "tls/unionpay.pem").read_bytes()).extensions \
        .get_extension_for_class(x509.SubjectAlternativeName).value
    assert "up.example" in names.get_values_for_type(x509.DNSName)
    assert "scripts/deploy.py" in (site / "README.md").read_text()
    assert load_consortium(site / "consortium.toml").threshold == 2


@pytest.mark.parametrize(("options", "message"), [
    ([], "give at least one --platform NAME"),
    (["--platform", "Union Pay"], "member name 'Union Pay'"),
    (["--platform", "chain"], "'chain' is the chain's process name"),
    (["--platform", "pboc"], "member named twice: pboc"),
    (["--platform", "a", "--shards", "b=2"], "--shards b=…: b is not a --platform"),
    (["--platform", "a", "--shards", "a=0"], "--shards a=0: the count must be in 1..64"),
    (["--platform", "a", "--shards", "a"], "--shards 'a': expected NAME=VALUE"),
    (["--platform", "a", "--threshold", "3"], "--threshold 3: must be in 1..2"),
    (["--platform", "a", "--rpc-url", "localhost:8545"], "expected an http(s) URL"),
    (["--platform", "a", "--host", "b=10.0.0.1"], "b is not a member or 'chain'"),
    (["--platform", "a", "--chain-port", "8702"], "--chain-port 8702 is one of the node ports"),
    (["--platform", "a", "--first-node-port", "65535"], "must be TCP ports"),
])
def test_init_refuses_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  options: list[str], message: str) -> None:
    assert main(["init", str(tmp_path / "site"), *options]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "site").exists()


def test_init_refuses_a_non_empty_directory_unless_forced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["init", str(tmp_path), "--platform", "unionpay"]) == 2
    assert "is not empty; give --force" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

    assert main(["init", str(tmp_path), "--platform", "unionpay", "--force"]) == 0
    key = (tmp_path / "keys/unionpay.sm2.pem").read_bytes()
    assert main(["init", str(tmp_path), "--platform", "unionpay", "--force"]) == 0
    assert (tmp_path / "keys/unionpay.sm2.pem").read_bytes() == key  # keys are kept
    assert (tmp_path / "notes.txt").read_text() == "mine"

    (tmp_path / "file").write_text("")
    assert main(["init", str(tmp_path / "file"), "--platform", "unionpay"]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err


def test_up_and_status_refuse_a_directory_without_a_run_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", str(tmp_path)]) == 2
    assert "made by jointledger init" in capsys.readouterr().err
    assert main(["status", str(tmp_path)]) == 2
    assert "made by jointledger init" in capsys.readouterr().err


def _jointledger(*args: str) -> list[str]:
    return [sys.executable, "-m", "ledger_node.cli", *args]


class _Lines:
    """The lines a process prints, collected by a thread, waited for by content."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                assert left > 0, f"no {text!r} in:\n" + "\n".join(self.lines[-40:])
                self._changed.wait(left)

    def index(self, text: str) -> int:
        return next(i for i, line in enumerate(self.lines) if text in line)


def test_up_starts_the_consortium_status_reads_it_and_sigint_stops_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    base = _free_ports(4)
    assert main(["init", str(site), "--platform", "unionpay", "--platform", "wechatpay",
                 "--chain-port", str(base), "--first-node-port", str(base + 1)]) == 0
    capsys.readouterr()
    up = subprocess.Popen(_jointledger("up", str(site)), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    lines = _Lines(up)
    try:
        lines.wait_for("[up]", 30)
        lines.wait_for("all 4 processes up", 180)
        assert any(line.startswith("[chain]") and "deployed" in line for line in lines.lines)
        assert any(line.startswith("[unionpay]") and "serving on https" in line
                   for line in lines.lines)

        assert main(["status", str(site)]) == 0
        table = capsys.readouterr().out
        assert table.splitlines()[0].split()[:3] == ["NODE", "ROLE", "STATE"]
        assert "all 3 nodes up" in table
        assert main(["status", str(site), "--json"]) == 0
        nodes = {node["name"]: node for node in json.loads(capsys.readouterr().out)["nodes"]}
        assert nodes["unionpay"]["state"] == "ok" and nodes["unionpay"]["lag"] == 0
        assert nodes["unionpay"]["url"] == f"https://127.0.0.1:{base + 1}"
        assert nodes["pboc"]["role"] == "regulator" and nodes["pboc"]["state"] == "ok"

        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=120) == 0
        lines.wait_for("chain stopped (status 0)", 10)
        assert lines.index("stopping pboc") < lines.index("stopping unionpay") \
            < lines.index("stopping chain")
        assert "unionpay stopped (status 0)" in "\n".join(lines.lines)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()

    assert main(["status", str(site)]) == 1  # everything is down now, and says so
    table = capsys.readouterr().out
    assert "DOWN: unionpay, wechatpay, pboc" in table
    assert main(["status", str(site), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["down"] == ["unionpay", "wechatpay", "pboc"]


def test_up_exits_non_zero_when_a_process_dies_at_start(tmp_path: Path) -> None:
    # An external chain that was never deployed on: the nodes have no deployment.json and
    # exit at start, so up stops and fails without waiting for the start timeout.
    site = tmp_path / "site"
    base = _free_ports(2)
    assert main(["init", str(site), "--platform", "unionpay", "--rpc-url",
                 "http://127.0.0.1:9", "--first-node-port", str(base)]) == 0
    result = subprocess.run(_jointledger("up", str(site), "--start-timeout", "60"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "[up]" in result.stdout and "unionpay exited with status" in result.stdout
    assert "[unionpay]" in result.stdout  # its own error, prefixed


def test_every_config_key_is_documented_in_config_md() -> None:
    from ledger_node.chain import consortium
    from ledger_node.platform import config as platform_config
    from ledger_node.protocol.aml import AmlConfig
    from ledger_node.regulator import config as regulator_config

    page = (Path(__file__).parent.parent / "docs/config.md").read_text()
    keys: set[str] = set(consortium._MEMBER_KEYS) | set(AmlConfig().to_json()) | {"threshold"}
    for sections in (platform_config._SECTIONS, regulator_config._SECTIONS):
        for section, names in sections.items():
            assert f"[{section}]" in page
            keys |= set(names or ())
    missing = sorted(key for key in keys if f"`{key}`" not in page and f"\n{key} =" not in page)
    assert not missing, f"docs/config.md does not document {missing}"
