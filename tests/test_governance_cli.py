"""``jointledger governance propose|approve|execute|list`` through
:func:`ledger_node.cli.main.main`, on the embedded chain served as JSON-RPC: each member signs
with the key files its own node config names (a platform's serve config, or the regulator's).
Admitting, removing and rotating go through propose, approve (executing at the threshold)
and list; a threshold lowered under an open proposal's approvals is finished by ``execute``;
every refusal is asserted by its one-line message and exit status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger_node.chain.adapter import LedgerChain, Role
from ledger_node.chain.rpc_server import ChainServer
from ledger_node.cli import main as cli
from ledger_node.crypto import gmcrypto
from ledger_node.crypto.keyfiles import MemberKeys, new_member_keys, write_member_keys
from tests.api_support import Consortium, make_consortium

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
def chain_url() -> Iterator[str]:
    """The module's embedded chain, served as JSON-RPC."""
    with ChainServer(LedgerChain.embedded()) as server:
        yield server.url


@dataclass
class Site:
    """A fresh 2-of-3 consortium (unionpay, wechatpay, pboc; an auditor) and its configs."""

    root: Path
    consortium: Consortium
    chain_url: str

    def config(self, name: str) -> str:
        return str(self.root / f"{name}.toml")

    def reader(self) -> LedgerChain:
        return LedgerChain.from_rpc(self.chain_url).attach(self.consortium.deployment)


@pytest.fixture
def site(chain_url: str, tmp_path: Path) -> Site:
    c = make_consortium(LedgerChain.from_rpc(chain_url))
    c.deployment.save(tmp_path / "deployment.json")
    for party in (c.unionpay, c.wechatpay, c.pboc, c.auditor):
        write_member_keys(tmp_path / "keys", party.name, MemberKeys(party.sm2_key, party.account))
    for name in ("unionpay", "wechatpay", "auditor"):
        (tmp_path / f"{name}.toml").write_text(PLATFORM.format(name=name, rpc=chain_url))
    (tmp_path / "pboc.toml").write_text(REGULATOR.format(rpc=chain_url))
    return Site(tmp_path, c, chain_url)


def gov(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``jointledger governance ARGS``: exit status, stdout, stderr."""
    status = cli.main(["governance", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_admitting_an_auditor_takes_two_voters(site: Site, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    keys = new_member_keys(site.root / "keys", "cbirc")
    pub = str(site.root / "keys" / "cbirc.sm2.pub.pem")
    status, out, err = gov(capsys, "propose", "add", "cbirc", "--role", "auditor",
                           "--address", keys.address, "--public-key", pub,
                           "--config", site.config("unionpay"))
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        f"proposed: proposal 1, add auditor 'cbirc' {keys.address}",
        "1 of 2 approvals; it executes at the approval that reaches 2 (1 more): jointledger "
        "governance approve 1 --config <another voter's config>"]
    assert not site.reader().member(keys.address).active

    status, out, _ = gov(capsys, "list", "--config", site.config("pboc"))
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["id", "proposal", "proposer", "approvals", "state",
                                "approved", "by"]
    assert lines[2].split()[:2] == ["1", "add"] and "1/2  open" in lines[2]
    assert lines[2].rstrip().endswith("unionpay")
    assert lines[-1] == "1 proposal(s); threshold 2 of 3 voters"

    # The regulator's config approves: the approval reaching 2 executes the admission.
    status, out, _ = gov(capsys, "approve", "1", "--config", site.config("pboc"))
    assert status == 0
    assert out.splitlines()[1] == ("executed with 2 of 2 approvals: the change is in force "
                                   "on chain now")
    member = site.reader().member(keys.address)
    assert (member.role, member.name, member.active) == (Role.AUDITOR, "cbirc", True)
    assert member.public_key == keys.sm2_key.public_key().raw

    status, out, _ = gov(capsys, "list", "--json", "--config", site.config("wechatpay"))
    document = json.loads(out)
    assert (document["threshold"], document["voters"]) == (2, 3)
    [proposal] = document["proposals"]
    assert {k: proposal[k] for k in ("id", "kind", "name", "role", "approvals", "threshold",
                                     "executed", "state")} == {
        "id": 1, "kind": "add", "name": "cbirc", "role": "auditor", "approvals": 2,
        "threshold": 2, "executed": True, "state": "executed"}
    assert proposal["approvers"] == [site.consortium.unionpay.account.address,
                                     site.consortium.pboc.account.address]


def test_removing_a_platform_and_what_it_can_no_longer_do(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    c = site.consortium
    status, out, _ = gov(capsys, "propose", "remove", "wechatpay", "--json",
                         "--config", site.config("pboc"))
    assert status == 0
    document = json.loads(out)
    assert (document["kind"], document["account"], document["name"], document["state"]) == (
        "remove", c.wechatpay.account.address, "wechatpay", "open")
    status, out, _ = gov(capsys, "approve", "1", "--config", site.config("unionpay"))
    assert status == 0 and "executed with 2 of 2 approvals" in out
    assert not site.reader().member(c.wechatpay.account.address).active

    # The removed platform is no longer a voter, and cannot be removed twice.
    status, out, err = gov(capsys, "list", "--config", site.config("wechatpay"))
    assert status == 0 and "remove wechatpay" in out  # reading needs no vote
    status, _, err = gov(capsys, "propose", "remove", "unionpay",
                         "--config", site.config("wechatpay"))
    assert status == 1
    assert err == (f"jointledger governance propose: the account {c.wechatpay.account.address} "
                   f"of {site.config('wechatpay')} is 'wechatpay', a removed platform; expected "
                   "an active platform or regulator (only voters propose, approve and "
                   "execute): try the config of a voting member\n")
    status, _, err = gov(capsys, "propose", "remove", c.wechatpay.account.address.lower(),
                         "--config", site.config("pboc"))
    assert status == 1
    assert err.startswith("jointledger governance propose: member 'wechatpay' "
                          f"({c.wechatpay.account.address}) is already removed; expected an "
                          "active member")

    # Two voters left at threshold 2: removing another would leave fewer voters than M.
    status, _, err = gov(capsys, "propose", "remove", "unionpay", "--config",
                         site.config("pboc"))
    assert status == 1
    assert err == ("jointledger governance propose: the contract refused it with "
                   "Governance_InvalidThreshold(2, 1); the action would leave fewer voters "
                   "than the threshold: lower the threshold first (a threshold-change "
                   "proposal)\n")

    # Re-admission is a new add of the same address (the member record is kept).
    status, out, _ = gov(capsys, "propose", "add", "wechatpay", "--role", "platform",
                         "--address", c.wechatpay.account.address, "--public-key",
                         str(site.root / "keys" / "wechatpay.sm2.pub.pem"),
                         "--config", site.config("pboc"))
    assert status == 0 and out.startswith("proposed: proposal 2, add platform 'wechatpay'")
    gov(capsys, "approve", "2", "--config", site.config("unionpay"))
    assert site.reader().member(c.wechatpay.account.address).active
    assert len(site.reader().members()) == 4  # listed once


def test_rotating_a_platforms_key(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    c = site.consortium
    new_key = gmcrypto.generate_private_key()
    pem = site.root / "unionpay-2.sm2.pub.pem"
    pem.write_bytes(gmcrypto.public_key_to_pem(new_key.public_key()))
    status, out, _ = gov(capsys, "propose", "rotate", "unionpay", "--public-key", str(pem),
                         "--config", site.config("unionpay"))
    assert status == 0
    assert out.splitlines()[0] == (f"proposed: proposal 1, rotate unionpay's SM2 key to "
                                   f"{new_key.public_key().raw.hex()[:16]}…")
    status, out, _ = gov(capsys, "approve", "1", "--config", site.config("wechatpay"))
    assert status == 0 and "executed with 2 of 2" in out
    assert site.reader().member(c.unionpay.account.address).public_key == \
        new_key.public_key().raw

    # The same key again is refused before anything is sent.
    status, _, err = gov(capsys, "propose", "rotate", "unionpay", "--public-key", str(pem),
                         "--config", site.config("pboc"))
    assert status == 2
    assert err == (f"jointledger governance propose: {pem} holds unionpay's current SM2 key; "
                   "expected a new key (jointledger keys new makes one)\n")


def test_execute_finishes_a_proposal_once_the_threshold_is_lowered(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    keys = new_member_keys(site.root / "keys", "cbirc")
    pub = str(site.root / "keys" / "cbirc.sm2.pub.pem")
    gov(capsys, "propose", "add", "cbirc", "--role", "auditor", "--address", keys.address,
        "--public-key", pub, "--config", site.config("unionpay"))
    status, _, err = gov(capsys, "execute", "1", "--config", site.config("unionpay"))
    assert status == 1
    assert err == ("jointledger governance execute: proposal 1 has 1 of 2 approvals needed; "
                   "expected at least 2: another voter runs jointledger governance approve 1 "
                   "(which executes it at 2)\n")
    # Lower the threshold to 1 through the adapter (no command for it yet), then execute.
    c = site.consortium
    proposal_id, _ = c.as_party(c.pboc).propose_threshold_change(1)
    c.as_party(c.unionpay).approve(proposal_id)
    status, out, _ = gov(capsys, "list", "--config", site.config("pboc"))
    assert "1/1  ready" in out.splitlines()[2]
    status, out, _ = gov(capsys, "execute", "1", "--config", site.config("wechatpay"))
    assert status == 0
    assert out.splitlines() == [
        f"executed: proposal 1, add auditor 'cbirc' {keys.address}",
        "executed with 1 of 1 approvals: the change is in force on chain now"]


def test_refusals_say_what_was_found_and_what_to_try(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    c = site.consortium
    status, _, err = gov(capsys, "approve", "7", "--config", site.config("pboc"))
    assert (status, err) == (1, "jointledger governance approve: no proposal 7: the chain has "
                                "no proposals; try jointledger governance list --config "
                                f"{site.config('pboc')}\n")
    status, _, err = gov(capsys, "propose", "remove", "wechatpay",
                         "--config", site.config("auditor"))
    assert status == 1 and "is 'auditor', an auditor; expected an active platform" in err

    stranger = site.root / "stranger"
    new_member_keys(stranger / "keys", "stranger")
    (stranger / "deployment.json").write_text((site.root / "deployment.json").read_text())
    (stranger / "stranger.toml").write_text(PLATFORM.format(name="stranger", rpc="unused"))
    status, _, err = gov(capsys, "list", "--config", str(stranger / "stranger.toml"),
                         "--rpc-url", site.chain_url)  # --rpc-url overrides the config's
    assert status == 0
    status, _, err = gov(capsys, "approve", "1", "--config", str(stranger / "stranger.toml"),
                         "--rpc-url", site.chain_url)
    assert status == 1 and "is not a member; expected an active platform or regulator" in err

    gov(capsys, "propose", "remove", "wechatpay", "--config", site.config("unionpay"))
    status, _, err = gov(capsys, "approve", "1", "--config", site.config("unionpay"))
    assert (status, err) == (1, "jointledger governance approve: proposal 1 is already "
                                "approved by this member (unionpay); expected a voter that has "
                                "not approved it: ask another voter to run jointledger "
                                "governance approve\n")
    gov(capsys, "approve", "1", "--config", site.config("pboc"))
    for action in ("approve", "execute"):
        status, _, err = gov(capsys, action, "1", "--config", site.config("pboc"))
        assert (status, err) == (1, f"jointledger governance {action}: proposal 1 (remove "
                                    f"wechatpay {c.wechatpay.account.address}) was already "
                                    f"executed; expected an open proposal to {action}: nothing "
                                    "left to do (jointledger governance list --config "
                                    f"{site.config('pboc')} shows them)\n")

    # Reverts the command does not foresee are reported by the contract's error name.
    status, _, err = gov(capsys, "propose", "add", "again", "--role", "auditor", "--address",
                         c.auditor.account.address, "--public-key",
                         str(site.root / "keys" / "auditor.sm2.pub.pem"),
                         "--config", site.config("unionpay"))
    assert (status, err) == (1, "jointledger governance propose: the contract refused it with "
                                f"Membership_AlreadyMember('{c.auditor.account.address}',); "
                                "the address is an active member already (a removed member "
                                "is re-admitted by a new add): check jointledger governance "
                                "list and the member's address\n")


def test_unusable_input_is_exit_2(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    config = site.config("unionpay")
    status, _, err = gov(capsys, "propose", "remove", "nobody", "--config", config)
    assert status == 2 and err.startswith("jointledger governance propose: no member named "
                                          "'nobody' on chain; expected the name or address of "
                                          "one of: unionpay (0x")
    status, _, err = gov(capsys, "propose", "add", "x", "--role", "auditor", "--config", config)
    assert (status, err) == (2, "jointledger governance propose: governance propose add NAME "
                                "needs --role, --address and --public-key PEM\n")
    status, _, err = gov(capsys, "propose", "add", "x", "--role", "auditor", "--address",
                         "0x12", "--public-key", config, "--config", config)
    assert status == 2 and "--address '0x12' is not a chain address" in err
    status, _, err = gov(capsys, "propose", "add", "x", "--role", "auditor", "--address",
                         site.consortium.auditor.account.address, "--public-key", config,
                         "--config", config)
    assert status == 2 and f"--public-key {config} is not an SM2 public key PEM" in err
    status, _, err = gov(capsys, "list", "--config", str(site.root / "missing.toml"))
    assert status == 2 and "missing.toml" in err
    status, _, err = gov(capsys, "list", "--config", config, "--rpc-url",
                         "http://127.0.0.1:9")
    assert status == 1 and "does not answer" in err
    assert "correct [chain] rpc_url (or --rpc-url)" in err
