"""``jointledger verify``: bundles checked with no node running, on a separate chain (anvil)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger_node.cli.main import main


@pytest.fixture(scope="module")
def demo_out(anvil_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo run on anvil: its bundle (and the single-field disclosure of that record)
    stays checkable after the demo's processes are gone."""
    out = tmp_path_factory.mktemp("demo")
    scenario = out / "small.json"
    scenario.write_text(json.dumps({"payments": 300, "people": 100, "merchants": 20,
                                    "planted": []}))
    assert main(["demo", "--scenario", str(scenario), "--out", str(out / "out"),
                 "--rpc-url", anvil_url]) == 0
    return out / "out"


@pytest.mark.anvil
def test_bundle_verifies_against_the_chain(
    demo_out: Path, anvil_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["verify", str(demo_out / "bundle.json"), "--rpc-url", anvil_url,
                   "--deployment", str(demo_out / "deployment.json"),
                   "--disclosure", str(demo_out / "disclosure.json")])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "PASS  anchoring" in out and "PASS  disclosure" in out
    assert out.rstrip().splitlines()[-1].startswith("VALID")


@pytest.mark.anvil
def test_tampered_bundle_fails_with_the_reason(
    demo_out: Path, anvil_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = json.loads((demo_out / "bundle.json").read_text())
    bundle["leaf"]["commitment"] = "00" * 32
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(bundle))
    assert main(["verify", str(tampered), "--rpc-url", anvil_url, "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["valid"] is False
    failed = [c["name"] for c in verdict["checks"] if c["status"] == "failed"]
    assert failed == ["inclusion"]


@pytest.mark.anvil
def test_key_only_mode_says_anchoring_was_not_checked(
    demo_out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    owner = json.loads((demo_out / "bundle.json").read_text())["checkpoint"]["platform"]
    other = {"unionpay": "wechatpay", "wechatpay": "unionpay"}[owner]
    key = demo_out / "site" / "keys" / f"{owner}.sm2.pub.pem"
    assert main(["verify", str(demo_out / "bundle.json"), "--checkpoint-key", str(key)]) == 0
    out = capsys.readouterr().out
    assert "anchoring NOT checked" in out or "NOT checked" in out
    other_key = demo_out / "site" / "keys" / f"{other}.sm2.pub.pem"
    assert main(["verify", str(demo_out / "bundle.json"), "--checkpoint-key", str(other_key)]) == 1


def test_unusable_input_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bundle.json"
    assert main(["verify", str(bundle), "--rpc-url", "http://127.0.0.1:9"]) == 2
    assert "cannot read the bundle" in capsys.readouterr().err
    bundle.write_text("{not json")
    assert main(["verify", str(bundle), "--rpc-url", "http://127.0.0.1:9"]) == 2
    assert "is not JSON" in capsys.readouterr().err
    bundle.write_text(json.dumps({"format": "jointledger/proof-bundle/v1"}))
    assert main(["verify", str(bundle), "--rpc-url", "http://127.0.0.1:9"]) == 2
    assert "invalid proof bundle field 'hash': is missing" in capsys.readouterr().err
    assert main(["verify", str(bundle)]) == 2
    assert "give --rpc-url" in capsys.readouterr().err
