"""The main job (``jointledger demo``): runs end to end and every check passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger_node import gmcrypto
from ledger_node.cli import main
from ledger_node.demo import run_core_demo


def test_demo_on_the_embedded_chain_passes_every_check(tmp_path: Path) -> None:
    lines: list[str] = []
    assert run_core_demo(tmp_path, record_count=5, seed=7, echo=lines.append) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["records"] == 5
    assert all(report["checks"].values()) and len(report["checks"]) == 4
    bundle = json.loads((tmp_path / "bundle.json").read_text())
    assert bundle["tree_size"] == 5 and bundle["anchor"]["contract"] == report["contract"]
    assert json.loads((tmp_path / "verdict.json").read_text())["valid"] is True
    assert any("4 of 4 checks passed" in line for line in lines)
    for name in ("unionpay", "wechatpay", "pboc", "auditor"):
        key = gmcrypto.private_key_from_pem((tmp_path / "keys" / f"{name}.sm2.pem").read_bytes())
        assert key.public_key() == gmcrypto.public_key_from_pem(
            (tmp_path / "keys" / f"{name}.sm2.pub.pem").read_bytes()
        )
        assert (tmp_path / "keys" / f"{name}.sm2.pem").stat().st_mode & 0o077 == 0


@pytest.mark.anvil
def test_demo_runs_on_a_separate_json_rpc_node(tmp_path: Path, anvil_url: str) -> None:
    assert main(["demo", "--records", "3", "--out", str(tmp_path), "--rpc-url", anvil_url]) == 0
    assert json.loads((tmp_path / "deployment.json").read_text())["chainId"] == 31337


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["demo", "--records", "0", "--out", str(tmp_path)]) == 2
    assert "--records must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--records", "many"])
    assert exit_info.value.code == 2


def test_cli_reports_an_unreachable_chain(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["demo", "--out", str(tmp_path), "--rpc-url", "http://127.0.0.1:9"]) == 1
    assert "ChainError" in capsys.readouterr().err
