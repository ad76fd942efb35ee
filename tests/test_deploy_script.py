"""scripts/deploy.py on a separate JSON-RPC chain (anvil): members registered, file written."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from ledger_node.chain.adapter import ANVIL_FAUCET_KEY, Deployment, LedgerChain
from ledger_node.chain.consortium import load_consortium
from ledger_node.crypto.keyfiles import new_member_keys

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "deploy.py"


def deploy(*args: str) -> int:
    main = runpy.run_path(str(SCRIPT))["main"]
    return int(main(list(args)))


@pytest.fixture
def consortium_file(tmp_path: Path) -> Path:
    for name in ("unionpay", "wechatpay", "pboc", "cup"):
        new_member_keys(tmp_path / "keys", name)
    path = tmp_path / "consortium.toml"
    path.write_text("threshold = 3\n" + "".join(
        f'\n[[members]]\nname = "{n}"\nrole = "{r}"\nkeys = "keys"\n'
        for n, r in (("unionpay", "platform"), ("wechatpay", "platform"),
                     ("pboc", "regulator"), ("cup", "auditor"))))
    return path


@pytest.mark.anvil
def test_deploys_for_the_consortium(anvil_url: str, tmp_path: Path,
                                    consortium_file: Path) -> None:
    key = tmp_path / "deployer.key"
    key.write_text(ANVIL_FAUCET_KEY)
    out = tmp_path / "deployment.json"
    assert deploy("--rpc-url", anvil_url, "--deployer-key", str(key), "--consortium",
                  str(consortium_file), "--out", str(out), "--fund-ether", "5") == 0
    deployment = Deployment.load(out)
    chain = LedgerChain.from_rpc(anvil_url).attach(deployment)
    expected = load_consortium(consortium_file)
    assert chain.threshold() == 3
    assert [(m.address, m.role, m.public_key) for m in chain.members()] == [
        (m.address, m.role, m.public_key) for m in expected.members]
    assert all(chain.balance(m.address) >= 5 * 10**18 for m in expected.members)
    # An existing deployment file is never overwritten.
    assert deploy("--rpc-url", anvil_url, "--deployer-key", str(key), "--consortium",
                  str(consortium_file), "--out", str(out)) == 1


def test_bad_inputs_are_reported(tmp_path: Path, consortium_file: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "deployer.key"
    key.write_text("not a key")
    out = tmp_path / "deployment.json"
    assert deploy("--rpc-url", "http://127.0.0.1:9", "--deployer-key", str(key),
                  "--consortium", str(consortium_file), "--out", str(out)) == 1
    assert "cannot use deployer key" in capsys.readouterr().err
    key.write_text(ANVIL_FAUCET_KEY)
    assert deploy("--rpc-url", "http://127.0.0.1:9", "--deployer-key", str(key),
                  "--consortium", str(consortium_file), "--out", str(out)) == 1
    assert "ChainError" in capsys.readouterr().err
    assert deploy("--rpc-url", "http://127.0.0.1:9", "--deployer-key", str(key),
                  "--consortium", str(tmp_path / "none.toml"), "--out", str(out)) == 1
    assert "cannot read consortium file" in capsys.readouterr().err
    assert not out.exists()
