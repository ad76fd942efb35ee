"""Every CLI error path of issue 17 item 5, table-driven, through the real entry point
(``ledger_node.cli.main.main`` in this process): wrong receipts, wrong config, an
unreachable node or chain, a wrong role. Each case asserts the exit status, that nothing
went to standard output and no traceback escaped, and that the one line on standard error
says what was found, what was expected and what to try (the fragments listed per case).

One consortium for the module: ``jointledger init`` lays it out (with an auditor) on free
ports, its chain is served here over https with mutual TLS from the site's own CA and
deployed for its consortium file, as ``jointledger chain`` does; the nodes are not started,
so they are the unreachable ones. A timeout is not waited for here (no timed tests): the
advice for one is checked on the pure function, with the others' classifications.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger_node.chain.adapter import LedgerChain
from ledger_node.chain.consortium import DEV_FUNDING_WEI, deploy_consortium, load_consortium
from ledger_node.chain.rpc_server import ChainServer
from ledger_node.cli.advice import unreachable_advice
from ledger_node.cli.main import main
from ledger_node.demo.localsite import free_ports
from ledger_node.demo.run import sample_records
from ledger_node.log.checkpoint import log_id_for
from ledger_node.protocol.commitment import RecordOpening, new_salt, record_commitment
from ledger_node.tls import ServerTls


@dataclass(frozen=True)
class Site:
    """The laid-out consortium, its running chain, and files the cases use."""

    dir: Path
    chain_url: str
    closed_url: str
    """An https URL where nothing listens."""


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 (below the ephemeral range: see ``free_ports``)."""
    return free_ports(1)


def _receipts(path: Path, platform: str, count: int, *, tamper: bool = False) -> Path:
    """A receipts file as ``jointledger submit`` writes it, of ``platform``'s records."""
    lines = []
    for index, record in enumerate(sample_records(platform, count, random.Random(3))):
        salt = new_salt()
        commitment = record_commitment(record, salt)
        opening = RecordOpening(record, salt).to_json()
        if tamper:
            opening["record"]["amount_fen"] += 1
        lines.append(json.dumps({
            "local_tx_id": record.local_tx_id, "log_id": log_id_for(platform, 0).hex(),
            "shard": 0, "index": index, "leaf_hash": "00" * 32, "duplicate": False,
            "commitment": commitment.hex(), "opening": opening}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _variant(site: Path, name: str, source: str, *replacements: tuple[str, str]) -> None:
    text = (site / source).read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    (site / name).write_text(text)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("cli-errors")
    directory = root / "site"
    chain_port, first_node_port = _free_port(), _free_port()
    assert main(["init", str(directory), "--platform", "unionpay", "--platform", "wechatpay",
                 "--auditor", "kpmg", "--chain-port", str(chain_port),
                 "--first-node-port", str(first_node_port)]) == 0
    assert main(["keys", "new", "--name", "mallory", "--dir", str(directory / "keys")]) == 0
    _variant(directory, "mallory.toml", "unionpay.toml",
             ("keys/unionpay.sm2.pem", "keys/mallory.sm2.pem"),
             ("keys/unionpay.account.key", "keys/mallory.account.key"))
    _variant(directory, "no-tls.toml", "unionpay.toml",
             ('[tls]\nca = "tls/ca.pem"\nclient_cert = "tls/unionpay.pem"\n'
              'client_key = "tls/unionpay.key"\n', ""))
    _variant(directory, "no-key-file.toml", "unionpay.toml",
             ("keys/unionpay.sm2.pem", "keys/gone.sm2.pem"))
    _variant(directory, "no-platform.toml", "unionpay.toml", ('platform = "unionpay"\n', ""))
    _variant(directory, "alipay.toml", "unionpay.toml",
             ('platform = "unionpay"', 'platform = "alipay"'))
    _variant(directory, "no-deployment.toml", "unionpay.toml",
             ('deployment = "deployment.json"', 'deployment = "gone.json"'))
    (directory / "broken.toml").write_text("[node\nplatform = unionpay\n")
    (directory / "changed-case.json").write_text('{"format": "jointledger/case-file/v1"}')
    records = sample_records("unionpay", 2, random.Random(5))
    (directory / "day.jsonl").write_text("".join(
        json.dumps(r.to_json() | {"payer_kind": "person", "payee_kind": "institution"}) + "\n"
        for r in records))
    _receipts(directory / "unionpay.receipts.jsonl", "unionpay", 2)
    _receipts(directory / "wechatpay.receipts.jsonl", "wechatpay", 2)
    _receipts(directory / "tampered.receipts.jsonl", "unionpay", 1, tamper=True)

    chain = LedgerChain.embedded()
    deployment = deploy_consortium(chain.with_account(chain.dev_faucet()),
                                   load_consortium(directory / "consortium.toml"),
                                   fund_wei=DEV_FUNDING_WEI)
    deployment.save(directory / "deployment.json")
    tls = ServerTls(directory / "tls/chain.pem", directory / "tls/chain.key",
                    directory / "tls/ca.pem")
    try:
        with ChainServer(chain, port=chain_port, ssl_context=tls.context()) as server:
            yield Site(directory, server.url, f"https://127.0.0.1:{_free_port()}")
    finally:
        chain.close()


W = "2026-01-05T00:00:00Z 2026-01-06T00:00:00Z".split()
RECONCILE = ["reconcile", "--counterparty", "wechatpay", "--counterparty-url",
             "https://127.0.0.1:9", "--window", *W]

# (case id, argv with {site}, {chain} and {closed} to fill in, exit status, fragments)
CASES: list[tuple[str, list[str], int, list[str]]] = [
    # --- wrong receipts --------------------------------------------------------------------
    ("receipts of another platform", [*RECONCILE, "--config", "{site}/unionpay.toml",
                                      "--records", "{site}/wechatpay.receipts.jsonl"], 2,
     ["these are wechatpay's receipts", "Expected: unionpay's own receipts", "Try: give "
      "unionpay's receipts files"]),
    ("records given as receipts", [*RECONCILE, "--config", "{site}/unionpay.toml",
                                   "--records", "{site}/day.jsonl"], 2,
     ["day.jsonl:1: not a receipt: it has no index, commitment and opening (a record?)",
      "expected the receipts file jointledger submit wrote", "Try: --records "
      "RECORDS.receipts.jsonl, not the records file itself"]),
    ("a config given as receipts", [*RECONCILE, "--config", "{site}/unionpay.toml",
                                    "--records", "{site}/unionpay.toml"], 2,
     ["unionpay.toml:1: not JSON", "expected the receipts file jointledger submit wrote",
      "Try: --records RECORDS.receipts.jsonl"]),
    ("tampered receipts to reconcile", [*RECONCILE, "--config", "{site}/unionpay.toml",
                                        "--records", "{site}/tampered.receipts.jsonl"], 2,
     ["unusable opening or commitment", "a changed receipt cannot be used"]),
    ("missing receipts", [*RECONCILE, "--config", "{site}/unionpay.toml",
                          "--records", "{site}/gone.jsonl"], 2,
     ["gone.jsonl: cannot read (No such file or directory)", "expected the receipts file",
      "Try: --records"]),
    ("tampered receipt to disclose", ["disclose", "{site}/tampered.receipts.jsonl",
                                      "--field", "amount"], 2,
     ["the receipt's opening does not open its commitment", "expected the receipts file as "
      "jointledger submit wrote it", "Try: the original receipts file"]),
    ("records given to disclose", ["disclose", "{site}/unionpay.toml", "--field", "amount"],
     2, ["line 1 is not JSON", "expected the receipts file", "Try: RECORDS.receipts.jsonl"]),
    ("receipts given to verify", ["verify", "{site}/unionpay.receipts.jsonl",
                                  "--rpc-url", "{chain}"], 2,
     ["the bundle or case file", "is not JSON (Extra data", "expected one JSON document: a "
      "proof bundle", "Try: the file that command wrote, not a receipts (JSON lines)"]),
    ("receipts given to casefile verify", ["casefile", "verify",
                                           "{site}/unionpay.receipts.jsonl", "--config",
                                           "{site}/pboc-regulator.toml"], 2,
     ["cannot read the case file", "expected the JSON document jointledger casefile build "
      "wrote", "Try: the path given to casefile build --out"]),
    ("receipts given to submit", ["submit", "{site}/unionpay.receipts.jsonl", "--config",
                                  "{site}/unionpay.toml"], 2,
     ["unionpay.receipts.jsonl is a receipts file (line 1 holds a commitment and an opening)",
      "expected the records file", "Try: the records file the receipts were written for",
      "nothing was submitted"]),
    ("no records file", ["submit", "{site}/gone.jsonl", "--config", "{site}/unionpay.toml"],
     2, ["cannot read", "gone.jsonl: No such file or directory; expected the records file",
         "Try: check the path"]),
    ("a changed case file to verify", ["verify", "{site}/changed-case.json", "--rpc-url",
                                       "{chain}"], 2,
     ["case file case_id: is missing", "expected the document as jointledger wrote it",
      "Try: the file as written"]),
    ("a changed case file to casefile verify", ["casefile", "verify",
                                                "{site}/changed-case.json", "--config",
                                                "{site}/pboc-regulator.toml"], 2,
     ["changed-case.json: case file case_id: is missing", "a changed file cannot be "
      "verified"]),
    ("records given to disclose-field", ["disclose-field", "{site}/day.jsonl", "--field",
                                         "amount"], 2,
     ["line 1 is not a receipt", "expected an object with commitment and opening",
      "Try: RECORDS.receipts.jsonl"]),
    # --- wrong config ----------------------------------------------------------------------
    ("no config file", ["submit", "{site}/day.jsonl", "--config", "{site}/gone.toml"], 2,
     ["no config file at", "expected a platform node's config", "Try: check the path"]),
    ("not TOML", ["submit", "{site}/day.jsonl", "--config", "{site}/broken.toml"], 2,
     ["broken.toml is not valid TOML", "expected a platform node's config",
      "Try: fix the key named (every key with an example: docs/config.md)"]),
    ("a key missing", ["submit", "{site}/day.jsonl", "--config", "{site}/no-platform.toml"],
     2, ["node.platform is missing", "expected a platform node's config", "Try: fix the key"]),
    ("a key file not there", ["submit", "{site}/day.jsonl", "--config",
                              "{site}/no-key-file.toml"], 2,
     ["gone.sm2.pem", "expected a platform node's config", "Try: fix the key named"]),
    ("another member's records", ["submit", "{site}/day.jsonl", "--config",
                                  "{site}/alipay.toml"], 2,
     ["day.jsonl:1: platform 'unionpay' is not this config's platform 'alipay'",
      "expected alipay's own records", "try the --config of unionpay's node",
      "nothing was submitted"]),
    ("serve --name of another member", ["serve", "--role", "platform", "--name", "wechatpay",
                                        "--config", "{site}/unionpay.toml"], 2,
     ["--name 'wechatpay' but", "configures platform 'unionpay'", "expected the member the "
      "config is for", "Try: --name as the config names it"]),
    ("no deployment file", ["governance", "list", "--config", "{site}/no-deployment.toml"], 2,
     ["no deployment file at", "expected the one the chain writes", "Try: start the chain "
      "first"]),
    ("no config for governance", ["governance", "list", "--config", "{site}/gone.toml"], 2,
     ["no config file at", "expected a voting member's node config", "Try: check the path"]),
    ("not a consortium directory", ["status", "{site}/keys"], 2,
     ["run: cannot read it", "expected", "to be a directory made by jointledger init",
      "Try: jointledger init"]),
    ("no store for fsck", ["fsck", "--config", "{site}/unionpay.toml"], 2,
     ["no store at", "expected the store file of a stopped platform node",
      "Try: the config's [node] store"]),
    ("an existing member's keys", ["keys", "new", "--name", "unionpay", "--dir",
                                   "{site}/keys"], 1,
     ["unionpay.sm2.pem exists", "expected a name with no keys", "Try: another --name"]),
    # --- an unreachable node or chain ------------------------------------------------------
    ("node: connection refused", ["proof", "0", "--url", "{closed}"], 1,
     ["cannot reach the node at", "Connection refused", "expected the node listening there",
      "Try: start it (jointledger up DIR"]),
    ("regulator node: connection refused", ["alerts", "--config",
                                            "{site}/pboc-regulator.toml"], 1,
     ["cannot reach the regulator node at", "Connection refused", "Try: start it",
      "give its address with --url"]),
    ("platform node down at submit", ["submit", "{site}/day.jsonl", "--config",
                                      "{site}/unionpay.toml"], 1,
     ["cannot reach the platform node at", "expected the platform node listening there",
      "Try: start it", "correct [http] in the config, or give --url"]),
    ("chain: connection refused", ["governance", "list", "--config", "{site}/unionpay.toml",
                                   "--rpc-url", "{closed}"], 1,
     ["cannot reach the chain at", "Connection refused", "expected the chain listening there",
      "correct [chain] rpc_url (or --rpc-url)"]),
    ("chain: certificate not trusted", ["governance", "list", "--config",
                                        "{site}/no-tls.toml"], 1,
     ["cannot reach the chain at", "CERTIFICATE_VERIFY_FAILED", "expected its certificate to "
      "chain to a CA this command trusts", "Try: --ca DIR/tls/ca.pem"]),
    ("chain for risk: certificate not trusted", ["risk", "check", "imei:490154203237518",
                                                 "--config", "{site}/no-tls.toml"], 1,
     ["cannot reach the chain at", "CERTIFICATE_VERIFY_FAILED", "Try: --ca"]),
    ("server: client certificate required", ["proof", "0", "--url", "{chain}", "--ca",
                                              "{site}/tls/ca.pem"], 1,
     ["cannot reach the node at", "CERTIFICATE_REQUIRED", "it requires mutual TLS",
      "Try: --client-cert DIR/tls/NAME.pem"]),
    ("node URL that is the chain's", ["checkpoints", "--url", "{chain}", "--ca",
                                      "{site}/tls/ca.pem", "--client-cert",
                                      "{site}/tls/kpmg.pem", "--client-key",
                                      "{site}/tls/kpmg.key"], 1,
     ["answered 405", "expected a jointledger node's API there", "Try: the node's URL "
      "(jointledger status DIR lists them), not the chain's"]),
    ("regulator URL that is the chain's", ["faults", "--config", "{site}/pboc-regulator.toml",
                                           "--url", "{chain}"], 1,
     ["answered 405", "expected the regulator node's API at that URL", "Try: the regulator "
      "node's URL"]),
    ("http to an https server", ["trace", "--config", "{site}/pboc-regulator.toml", "--url",
                                 "{chain_http}", "--identity-key", "00" * 32], 1,
     ["cannot reach the regulator node at http://", "expected the regulator node to speak "
      "the URL's protocol", "Try: the URL's scheme and port"]),
    ("regulator node down at console-login", ["console-login", "--config",
                                              "{site}/pboc-regulator.toml"], 1,
     ["cannot reach the regulator node at", "Connection refused", "Try: start it"]),
    ("the chain's port taken", ["chain", "--port", "{chain_port}"], 2,
     ["cannot listen on 127.0.0.1:", "Address already in use", "expected a free port",
      "Try: another --port"]),
    # --- a wrong role -----------------------------------------------------------------------
    ("a platform running trace", ["trace", "--config", "{site}/unionpay.toml",
                                  "--identity-key", "00" * 32], 2,
     ["unionpay.toml is a platform node's config, but this command is the regulator's",
      "expected the regulator node's config", "Try: --config site/pboc-regulator.toml"]),
    ("a platform logging in to the console", ["console-login", "--config",
                                              "{site}/unionpay.toml"], 2,
     ["is a platform node's config, but this command is the regulator's", "Try: --config"]),
    ("the regulator submitting", ["submit", "{site}/day.jsonl", "--config",
                                  "{site}/pboc-regulator.toml"], 2,
     ["pboc-regulator.toml is the regulator node's config, but this command is the "
      "platform's", "expected a platform node's config", "Try: --config site/unionpay.toml"]),
    ("the regulator reconciling", [*RECONCILE, "--config", "{site}/pboc-regulator.toml",
                                   "--records", "{site}/unionpay.receipts.jsonl"], 2,
     ["is the regulator node's config, but this command is the platform's"]),
    ("the regulator's config for a platform's fsck", ["fsck", "--config",
                                                     "{site}/pboc-regulator.toml"], 2,
     ["is the regulator node's config, but this command is the platform's"]),
    ("a platform distributing list keys", ["risk", "distribute", "--config",
                                           "{site}/unionpay.toml"], 1,
     ["the contract refused it with Membership_NotRegulator", "is not an active regulator "
      "member", "expected the regulator's own config", "Try: --config with the regulator's "
      "node config"]),
    ("a platform's config as the regulator's", ["risk", "deliver", "--role", "regulator",
                                                "--config", "{site}/unionpay.toml"], 2,
     ["unionpay.toml is a platform node's config, but this command is the regulator's"]),
    ("a non-member proposing", ["governance", "propose", "remove", "wechatpay", "--config",
                                "{site}/mallory.toml"], 1,
     ["mallory.toml is not a member", "expected an active platform or regulator",
      "try the config of a voting member"]),
]


@pytest.mark.parametrize(("argv", "status", "fragments"),
                         [pytest.param(argv, status, fragments, id=name)
                          for name, argv, status, fragments in CASES])
def test_each_error_says_what_was_found_expected_and_what_to_try(
        site: Site, capsys: pytest.CaptureFixture[str], argv: list[str], status: int,
        fragments: list[str]) -> None:
    filled = [a.replace("{site}", str(site.dir)).replace("{chain_http}", site.chain_url.replace(
        "https://", "http://")).replace("{chain}", site.chain_url)
        .replace("{closed}", site.closed_url)
        .replace("{chain_port}", site.chain_url.rsplit(":", 1)[1]) for a in argv]
    got = main(filled)
    out, err = capsys.readouterr()
    assert got == status, err
    assert out == "" and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("jointledger ")]
    assert lines and err.startswith(f"jointledger {argv[0]}"), err
    for fragment in fragments:
        assert fragment.replace("{site}", str(site.dir)) in err, (fragment, err)
    assert "xpected" in err and "try" in err.lower(), err


@pytest.mark.parametrize(("detail", "advice"), [
    ("ReadTimeout: timed out", "expected an answer in time. Try again"),
    ("SSLError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
     "Try: --ca DIR/tls/ca.pem"),
    ("ReadError: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required",
     "Try: --client-cert"),
    ("ConnectError: [SSL: WRONG_VERSION_NUMBER] wrong version number",
     "to speak the URL's protocol"),
    ("ConnectError: [Errno 111] Connection refused", "Try: start it"),
])
def test_unreachable_advice_tells_the_causes_apart(detail: str, advice: str) -> None:
    line = unreachable_advice("the node", "https://node:8701", detail)
    assert line.startswith(f"cannot reach the node at https://node:8701 ({detail})")
    assert advice in line


def test_no_case_leaves_a_file_behind(site: Site) -> None:
    """Refused commands write nothing: no receipts of the refused submits, no report."""
    assert not list(site.dir.glob("*.receipts.jsonl.receipts.jsonl"))
    assert not (site.dir / "day.jsonl.receipts.jsonl").exists()
    assert not list(Path.cwd().glob("reconciliation-*.json"))
    assert os.access(site.dir, os.W_OK)
