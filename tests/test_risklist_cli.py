"""``jointledger risk`` through :func:`ledger_node.cli.main.main`, against a consortium on anvil
(the command reaches the chain over JSON-RPC with each member's own key files)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ledger_node.chain.adapter import LedgerChain
from ledger_node.cli import main as cli
from ledger_node.crypto.keyfiles import MemberKeys, write_member_keys
from ledger_node.demo.run import Party
from tests.api_support import Consortium, make_consortium

IMEI = "imei:490154203237518"
OTHER = "android_id:9774d56d682e549c"

PLATFORM = """
[node]
platform = "{name}"
store = "{name}.db"

[keys]
sm2 = "keys/{name}.sm2.pem"
account = "keys/{name}.account.key"

[chain]
deployment = "deployment.json"
rpc_url = "{rpc}"
"""

REGULATOR = """
[regulator]
name = "pboc"
store = "pboc-regulator.db"

[platforms]
unionpay = "http://127.0.0.1:8701"

[keys]
sm2 = "keys/pboc.sm2.pem"
account = "keys/pboc.account.key"

[chain]
deployment = "deployment.json"
rpc_url = "{rpc}"
"""


@pytest.fixture(scope="module")
def site(anvil_url: str, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Path, Consortium]:
    """Key files, configs and the deployment file of a consortium deployed on anvil."""
    root = tmp_path_factory.mktemp("risk-cli")
    c = make_consortium(LedgerChain.from_rpc(anvil_url))
    c.deployment.save(root / "deployment.json")
    for party in (c.unionpay, c.wechatpay, c.pboc):
        write_member_keys(root / "keys", party.name, MemberKeys(party.sm2_key, party.account))
    for name in ("unionpay", "wechatpay"):
        (root / f"{name}.toml").write_text(PLATFORM.format(name=name, rpc=anvil_url))
    (root / "pboc.toml").write_text(REGULATOR.format(rpc=anvil_url))
    return root, c


def risk(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["risk", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_the_list_from_the_command_line(site: tuple[Path, Consortium],
                                        capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root, c = site
    up, wc = str(root / "unionpay.toml"), str(root / "wechatpay.toml")
    status, out, _ = risk(root, capsys, "distribute", "--config", str(root / "pboc.toml"),
                          "--role", "regulator")
    assert status == 0 and "opened list-key epoch 1" in out
    status, out, _ = risk(root, capsys, "deliver", "--config", str(root / "pboc.toml"),
                          "--role", "regulator")
    assert status == 0 and "nobody (none missing)" in out

    status, out, _ = risk(root, capsys, "add", " IMEI:4901-5420-3237-518", "--reason",
                          "money_mule", "--config", up)
    assert status == 0 and out.startswith("added  " + IMEI) and "reason=money_mule" in out

    status, out, _ = risk(root, capsys, "check", IMEI, OTHER, "--config", wc)
    assert status == 3
    lines = out.splitlines()
    assert lines[0].startswith("LISTED  " + IMEI) and f"by={c.unionpay.account.address}" in out
    assert lines[1] == f"clean   {OTHER}"

    listing = root / "devices.txt"
    listing.write_text(f"# devices seen today\n{OTHER}\n\n")
    status, out, _ = risk(root, capsys, "check", "--from", str(listing), "--json", "--config", wc)
    assert status == 0 and json.loads(out) == {"fingerprint": OTHER, "listed": False}
    monkeypatch.setattr("sys.stdin", io.StringIO(IMEI + "\n"))
    status, out, _ = risk(root, capsys, "check", "--from", "-", "--json", "--config", wc)
    document = json.loads(out)
    assert status == 3 and (document["reason"], document["reason_code"]) == ("money_mule", 3)

    status, out, _ = risk(root, capsys, "status", "--config", wc, "--json")
    assert status == 0
    assert {k: json.loads(out)[k] for k in ("epoch", "epoch_open", "key_epoch", "entries")} == {
        "epoch": 1, "epoch_open": True, "key_epoch": 1, "entries": 1}

    # Another member's entry: only governance removes it.
    status, _, err = risk(root, capsys, "remove", IMEI, "--config", wc)
    assert status == 1 and "RiskList_NotAdder" in err
    status, out, _ = risk(root, capsys, "propose-removal", IMEI, "--config", wc)
    assert status == 0 and "proposal" in out
    proposal_id = int(out.split()[1])
    c.as_party(c.pboc).approve(proposal_id)
    status, out, _ = risk(root, capsys, "check", IMEI, "--config", up)
    assert status == 0 and out.startswith("clean")

    risk(root, capsys, "add", OTHER, "--reason", "2", "--config", up)
    status, out, _ = risk(root, capsys, "remove", OTHER, "--config", up)
    assert status == 0 and out.startswith(f"removed {OTHER}")


@pytest.mark.parametrize(("args", "message"), [
    (("check", "imei:123"), "15 digits"),
    (("check",), "at least one fingerprint"),
    (("add", IMEI), "give --reason"),
    (("add", IMEI, "--reason", "phishing"), "unknown risk reason 'phishing'"),
    (("add", IMEI, "--reason", "0"), "unknown risk reason"),
    (("check", IMEI, "--from", "no-such-file.txt"), "no-such-file.txt"),
])
def test_bad_input_exits_2(site: tuple[Path, Consortium], capsys: pytest.CaptureFixture[str],
                           args: tuple[str, ...], message: str) -> None:
    root, _ = site
    status, _, err = risk(root, capsys, *args, "--config", str(root / "unionpay.toml"))
    assert status == 2 and message in err, err


def test_unusable_configs_exit_2(site: tuple[Path, Consortium], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = site
    status, _, err = risk(root, capsys, "check", IMEI, "--config", str(tmp_path / "none.toml"))
    assert status == 2 and "no config file at" in err and "Try: check the path" in err
    broken = tmp_path / "broken.toml"
    broken.write_text((root / "unionpay.toml").read_text().replace("keys/", "missing/"))
    status, _, err = risk(root, capsys, "status", "--config", str(broken))
    assert status == 2 and "key files" in err


def test_a_platform_cannot_distribute(site: tuple[Path, Consortium],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    root, c = site
    party: Party = c.unionpay
    status, _, err = risk(root, capsys, "distribute", "--config",
                          str(root / f"{party.name}.toml"))
    assert status == 1 and "Membership_NotRegulator" in err
