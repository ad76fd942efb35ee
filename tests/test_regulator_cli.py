"""The regulator's command line (issue 17, part 2): ``trace``, ``alerts``, ``faults``,
``disclose`` and ``casefile`` against a real regulator node served over HTTP (uvicorn on a
loopback port; tests/console_support.py builds its data), signing with the key files its
serve config names. Every command's table and ``--json`` output, and every error path:
unreachable node, wrong role, wrong key, unknown alert, unusable config and options. One
test runs the CLI as a separate process."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger_node.chain.rpc_server import ChainServer
from ledger_node.cli.main import main
from ledger_node.client.sdk import RegulatorClient
from ledger_node.crypto.gmcrypto import generate_private_key
from ledger_node.crypto.keyfiles import MemberKeys, write_member_keys
from ledger_node.protocol.auth import regulator_node_audience
from ledger_node.protocol.escrow import identity_key
from ledger_node.regulator.node import node_audience
from tests.console_support import (
    CASE_ID,
    STRUCTURING_IDENTITY,
    ConsoleSite,
    running_console_site,
)

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Setup:
    """The served regulator node and regulator configs pointing at it."""

    site: ConsoleSite
    config: Path  # pboc's own config: the right role and key
    chain_url: str
    tmp: Path

    def config_for(self, name: str, keys: MemberKeys, url: str | None = None) -> Path:
        """A regulator config signing with ``keys`` (written under ``name``)."""
        return _write_config(self.tmp / name, keys, url or self.site.base_url,
                             self.chain_url, self.site.data.consortium)


def _write_config(directory: Path, keys: MemberKeys, url: str, chain_url: str,
                  consortium: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_member_keys(directory, "member", keys)
    consortium.deployment.save(directory / "deployment.json")
    host, port = url.removeprefix("http://").rsplit(":", 1)
    config = directory / "pboc-regulator.toml"
    config.write_text(f"""
[regulator]
name = "pboc"
store = "unused.db"

[http]
host = "{host}"
port = {port}

[keys]
sm2 = "member.sm2.pem"
account = "member.account.key"

[chain]
deployment = "deployment.json"
rpc_url = "{chain_url}"
""")
    return config


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("regulator-cli")
    (tmp / "site").mkdir()
    with running_console_site(tmp / "site") as site:
        consortium = site.data.consortium
        with ChainServer(consortium.chain) as chain:
            pboc = consortium.pboc
            config = _write_config(tmp / "pboc", MemberKeys(pboc.sm2_key, pboc.account),
                                   site.base_url, chain.url, consortium)
            yield Setup(site, config, chain.url, tmp)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``jointledger ARGV`` in this process: exit status, stdout, stderr."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_the_sdk_and_the_node_sign_for_the_same_audience() -> None:
    assert regulator_node_audience("pboc") == node_audience("pboc")
    assert regulator_node_audience("pboc") != regulator_node_audience("cbirc")


def test_regulator_client_covers_the_regulator_api(setup: Setup) -> None:
    pboc = setup.site.data.consortium.pboc
    with RegulatorClient.for_regulator_node(setup.site.base_url, pboc.account.address,
                                            pboc.sm2_key) as client:  # name from /v1/health
        assert client.regulator_node_name == "pboc"
        traced = client.trace_identity(STRUCTURING_IDENTITY)
        assert traced["count"] == 4 and traced["platforms"] == ["unionpay", "wechatpay"]
        assert client.trace_identity(identity_key=identity_key(STRUCTURING_IDENTITY)
                                     )["records"] == traced["records"]
        commitment = bytes.fromhex(traced["records"][0]["leaf"]["commitment"])
        assert client.trace_commitment(commitment)["count"] == 1
        alerts = client.alerts()
        assert [a["id"] for a in alerts] == list(range(1, len(alerts) + 1))
        assert client.alerts(rule="structuring") and all(
            a["rule"].startswith("structuring") for a in client.alerts(rule="structuring"))
        assert client.alert(1)["evidence"]
        assert client.faults() == []
        assert client.ingest_status()["records"] == setup.site.data.record_count
        states = {d["request_id"]: d["collected"] for d in client.requested_disclosures()}
        data = setup.site.data
        assert states[data.fulfilled_request] is True
        assert states[data.pending_request] is False
        assert client.collect_disclosure(data.pending_request) is None
        case = client.case_file(CASE_ID, identities=[identity_key(STRUCTURING_IDENTITY)])
        assert case["format"] == "jointledger/case-file/v1" and case["disclosures"]
    with RegulatorClient("http://x", pboc.account.address, pboc.sm2_key, b"\0" * 32) as plain:
        with pytest.raises(TypeError, match="for_regulator_node"):
            _ = plain.regulator_node_name


# ------------------------------------------------------------------ alerts and faults


def test_alerts_table_and_json(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "alerts", "--config", str(setup.config))
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["id", "rule", "identity", "key", "direction", "total", "CNY",
                                "from", "(UTC)", "platforms", "records"]
    assert set(lines[1]) <= {"-", " "}
    structuring = next(line for line in lines if "structuring" in line)
    assert "unionpay,wechatpay" in structuring and "600,000.00" in structuring
    assert lines[-1].startswith(f"{len(lines) - 3} alert(s); --id N shows one")

    status, out, _ = run(capsys, "alerts", "--config", str(setup.config), "--json")
    document = json.loads(out)
    assert status == 0 and document["count"] == len(lines) - 3
    assert {"id", "rule", "identity", "total_fen", "refs"} <= set(document["alerts"][0])

    status, out, _ = run(capsys, "alerts", "--config", str(setup.config), "--json",
                         "--rule", "large_value")
    assert status == 0 and all(a["rule"].startswith("large_value")
                               for a in json.loads(out)["alerts"])


def test_one_alert_table_and_json(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "alerts", "--config", str(setup.config), "--id", "1")
    assert status == 0, err
    assert out.startswith("alert 1: ")
    assert "identity key  " in out and "window        " in out
    assert "time (UTC)" in out and "record(s) of evidence" in out
    status, out, _ = run(capsys, "alerts", "--config", str(setup.config), "--id", "1",
                         "--json")
    alert = json.loads(out)
    assert status == 0 and alert["id"] == 1
    assert len(alert["evidence"]) == len(alert["refs"])
    assert all("bundle" in record for record in alert["evidence"])


def test_unknown_alert_says_what_to_try(setup: Setup,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "alerts", "--config", str(setup.config), "--id", "999")
    assert status == 1 and out == ""
    assert f"the node at {setup.site.base_url} answered 404 Unknown alert" in err
    assert f"try jointledger alerts --config {setup.config} to list the ids" in err
    status, _, err = run(capsys, "alerts", "--config", str(setup.config), "--id", "0")
    assert status == 2 and "--id 0: alert ids start at 1" in err


def test_faults_table_and_json(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "faults", "--config", str(setup.config))
    assert status == 0, err
    assert out.splitlines()[0].split()[:4] == ["id", "kind", "platform", "log"]
    assert out.splitlines()[-1] == f"0 fault(s) on {setup.site.base_url}"
    status, out, _ = run(capsys, "faults", "--config", str(setup.config), "--json")
    assert status == 0 and json.loads(out) == {"faults": []}


# ------------------------------------------------------------------ trace


def test_trace_reads_the_identity_from_a_file_or_stdin_never_argv_by_default(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    identity_file = setup.tmp / "identity.txt"
    identity_file.write_text(f"\n{STRUCTURING_IDENTITY}\n")
    status, out, err = run(capsys, "trace", "--config", str(setup.config),
                           "--identity-file", str(identity_file))
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["time", "(UTC)", "platform", "index"]
    assert len(lines) == 2 + 4 + 1
    assert "150,000.00" in lines[2]
    key = identity_key(STRUCTURING_IDENTITY).hex()
    assert lines[-1] == (f"4 record(s) of identity key {key} on unionpay, wechatpay; "
                         "--json gives each with its proof bundle")
    assert STRUCTURING_IDENTITY not in out  # the table names keys, never the identity

    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{STRUCTURING_IDENTITY}\n"))
    status, out, _ = run(capsys, "trace", "--config", str(setup.config), "--identity",
                         "--json")
    document = json.loads(out)
    assert status == 0 and document["identity_key"] == key and document["count"] == 4
    assert all("bundle" in record for record in document["records"])

    status, out, err = run(capsys, "trace", "--config", str(setup.config), "--identity-arg",
                           STRUCTURING_IDENTITY, "--json")
    assert status == 0 and json.loads(out)["count"] == 4
    assert "other users of this machine can see it (ps)" in err

    monkeypatch.setattr(sys, "stdin", io.StringIO("\n\n"))
    status, out, err = run(capsys, "trace", "--config", str(setup.config), "--identity")
    assert status == 2 and out == ""
    assert "no identity in standard input (found only blank lines" in err


def test_trace_by_identity_key_and_by_commitment(setup: Setup,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    key = identity_key(STRUCTURING_IDENTITY).hex()
    status, out, _ = run(capsys, "trace", "--config", str(setup.config), "--identity-key",
                         key, "--json")
    records = json.loads(out)["records"]
    assert status == 0 and len(records) == 4
    commitment = records[0]["leaf"]["commitment"]
    status, out, err = run(capsys, "trace", "--config", str(setup.config), "--commitment",
                           commitment)
    assert status == 0, err
    assert out.splitlines()[-1] == f"1 record(s) of commitment {commitment} on unionpay; " \
                                   "--json gives each with its proof bundle"
    status, out, _ = run(capsys, "trace", "--config", str(setup.config), "--commitment",
                         commitment, "--json")
    assert json.loads(out)["records"][0]["ref"] == records[0]["ref"]
    status, _, err = run(capsys, "trace", "--config", str(setup.config), "--commitment",
                         "abc")
    assert status == 2 and "--commitment 'abc' is not 64 hex digits (32 bytes)" in err


def test_trace_never_takes_the_identity_as_a_bare_argument(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["trace", "--config", str(setup.config), "--identity", STRUCTURING_IDENTITY])
    assert exited.value.code == 2
    assert "unrecognized arguments: mallory" in capsys.readouterr().err


# ------------------------------------------------------------------ disclosures


def test_disclosure_workflow(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    data = setup.site.data
    config = str(setup.config)
    status, out, err = run(capsys, "disclose", "status", "--config", config)
    assert status == 0, err
    assert out.splitlines()[0].split() == ["id", "platform", "commitment", "case", "id",
                                           "state", "transaction"]
    fulfilled = next(line for line in out.splitlines()
                     if line.split()[0] == str(data.fulfilled_request))
    assert " collected " in fulfilled

    target = data.submitted["unionpay"][0]
    commitment = target.prepared.leaf.commitment.hex()
    case = (b"\x42" * 32).hex()
    status, out, err = run(capsys, "disclose", "request", "--config", config, "--commitment",
                           commitment, "--case-id", case, "--json")
    assert status == 0, err
    made = json.loads(out)
    assert made["platform"] == "unionpay" and made["commitment"] == commitment
    request_id = made["request_id"]

    status, out, err = run(capsys, "disclose", "collect", "--config", config, "--id",
                           str(request_id))
    assert status == 3 and out == ""
    assert (f"disclosure request {request_id} is not fulfilled on chain yet (the platform "
            "has not answered)") in err and "--wait SECONDS" in err

    c = data.consortium
    data.clients["unionpay"].answer_disclosure(
        request_id, target.prepared.opening, c.pboc.sm2_key.public_key(),
        chain_id=c.chain.chain_id, contract=c.chain.deployment.address,
        index=target.receipt.index)
    opening_file = setup.tmp / "opening.json"
    status, out, err = run(capsys, "disclose", "collect", "--config", config, "--id",
                           str(request_id), "--wait", "30", "--out", str(opening_file))
    assert status == 0, err
    assert out.startswith(f"disclosure request {request_id} collected and verified: unionpay/")
    assert "the escrow agrees with the opening" in out
    assert target.prepared.record.payer_identity not in out  # only in the file
    assert stat.S_IMODE(os.stat(opening_file).st_mode) == 0o600
    assert json.loads(opening_file.read_text())["opening"]["record"][
        "local_tx_id"] == target.prepared.record.local_tx_id

    status, out, _ = run(capsys, "disclose", "collect", "--config", config, "--id",
                         str(request_id), "--json")
    assert status == 0 and json.loads(out)["request_id"] == request_id
    status, out, _ = run(capsys, "disclose", "status", "--config", config, "--id",
                         str(request_id), "--json")
    assert json.loads(out)["disclosures"][0]["collected"] is True

    status, _, err = run(capsys, "disclose", "status", "--config", config, "--id", "9999")
    assert status == 1 and "this regulator made no disclosure request 9999" in err
    status, _, err = run(capsys, "disclose", "collect", "--config", config, "--id", "9999")
    assert status == 1 and "answered 404" in err
    assert f"try jointledger disclose status --config {config}" in err
    status, _, err = run(capsys, "disclose", "request", "--config", config)
    assert status == 2 and "needs --commitment HEX and --case-id HEX" in err
    status, _, err = run(capsys, "disclose", "request", "--config", config, "--commitment",
                         "00" * 32, "--case-id", case)
    assert status == 1 and "answered 404" in err and "is in no verified log" in err


# ------------------------------------------------------------------ case files


def test_casefile_build_and_verify(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(setup.config)
    out_file = setup.tmp / "case.json"
    status, out, err = run(capsys, "alerts", "--config", config, "--json")
    structuring = next(a for a in json.loads(out)["alerts"]
                       if a["rule"].startswith("structuring"))
    status, out, err = run(capsys, "casefile", "build", "--config", config, "--case-id",
                           CASE_ID.hex(), "--alert", str(structuring["id"]), "--out",
                           str(out_file))
    assert status == 0, err
    assert out.splitlines()[0].split() == ["identities", "alerts", "records", "disclosures"]
    assert out.splitlines()[2].split()[0] == "1"
    assert f"written to {out_file} (mode 0600" in out
    assert stat.S_IMODE(os.stat(out_file).st_mode) == 0o600
    document = json.loads(out_file.read_text())
    assert document["identities"] == [identity_key(STRUCTURING_IDENTITY).hex()]
    assert document["disclosures"]

    identities = setup.tmp / "identities.txt"
    identities.write_text(f"{STRUCTURING_IDENTITY}\n\n")
    status, out, err = run(capsys, "casefile", "build", "--config", config, "--case-id",
                           CASE_ID.hex(), "--identity-file", str(identities), "--out",
                           str(setup.tmp / "case2.json"), "--json")
    summary = json.loads(out)
    assert status == 0 and summary["identities"] == 1 and summary["records"] >= 4

    status, out, err = run(capsys, "casefile", "verify", str(out_file), "--config", config)
    assert status == 0, out + err
    status, out, err = run(capsys, "casefile", "verify", str(out_file), "--config", config,
                           "--json")
    assert status == 0 and json.loads(out)["valid"] is True

    status, _, err = run(capsys, "casefile", "build", "--config", config, "--case-id",
                         CASE_ID.hex(), "--out", str(setup.tmp / "empty.json"))
    assert status == 2 and "nothing to put in the case file" in err
    status, _, err = run(capsys, "casefile", "verify", str(setup.tmp / "absent.json"),
                         "--config", config)
    assert status == 2 and "cannot read the case file" in err
    status, _, err = run(capsys, "casefile", "verify", str(out_file), "--config", config,
                         "--rpc-url", "http://127.0.0.1:9")
    assert status in (1, 2) and "127.0.0.1:9" in err


# ------------------------------------------------------------------ errors


def test_unreachable_node(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["faults"], ["alerts"], ["disclose", "status"], ["trace", "--identity-key",
                                                                   "00" * 32]):
        status, out, err = run(capsys, *argv, "--config", str(setup.config), "--url",
                               "http://127.0.0.1:9")
        assert status == 1 and out == ""
        assert "cannot reach the regulator node at http://127.0.0.1:9 (ConnectError" in err
        assert "[Errno 111] Connection refused); expected the regulator node listening there. " \
               "Try: start it (jointledger up DIR, then jointledger status DIR), or give its " \
               "address with --url" in err


def test_wrong_role_and_wrong_key(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    c = setup.site.data.consortium
    platform = setup.config_for("as-unionpay", MemberKeys(c.unionpay.sm2_key,
                                                          c.unionpay.account))
    status, out, err = run(capsys, "alerts", "--config", str(platform))
    assert status == 1 and out == ""
    assert "answered 403" in err
    assert f"account {c.unionpay.account.address}" in err
    assert "is not an active regulator member on chain: use the regulator's own config" in err

    wrong_key = setup.config_for("wrong-key", MemberKeys(generate_private_key(),
                                                         c.pboc.account))
    status, out, err = run(capsys, "faults", "--config", str(wrong_key))
    assert status == 1 and "answered 401" in err
    assert "[keys] sm2 the key registered on chain" in err


def test_unusable_config(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "faults", "--config", str(setup.tmp / "absent.toml"))
    assert status == 2 and f"no config file at {setup.tmp / 'absent.toml'}" in err
    assert "expected the regulator node's config ([regulator] name = NAME" in err
    status, _, err = run(capsys, "faults", "--config", str(setup.config), "--url", "ftp://x")
    assert status == 2 and "--url must be an http(s) URL, got 'ftp://x'" in err


def test_the_cli_as_a_separate_process(setup: Setup) -> None:
    """A real ``python -m ledger_node.cli`` process: the identity on stdin, never in argv."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}

    def cli(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ledger_node.cli", *argv], input=stdin,
                              capture_output=True, text=True, env=env, timeout=120,
                              check=False)

    traced = cli("trace", "--config", str(setup.config), "--identity", "--json",
                 stdin=STRUCTURING_IDENTITY + "\n")
    assert traced.returncode == 0, traced.stderr
    assert json.loads(traced.stdout)["count"] == 4
    listed = cli("alerts", "--config", str(setup.config))
    assert listed.returncode == 0 and "structuring" in listed.stdout
    refused = cli("alerts", "--config", str(setup.config), "--id", "999")
    assert refused.returncode == 1 and "404 Unknown alert" in refused.stderr
