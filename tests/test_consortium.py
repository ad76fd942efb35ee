"""Consortium files: members by address and key file or by key directory; every mistake named."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger_node.chain.adapter import LedgerChain, Role
from ledger_node.chain.consortium import DEV_FUNDING_WEI, deploy_consortium, load_consortium
from ledger_node.crypto.keyfiles import new_member_keys
from ledger_node.errors import InvalidConfig

GOOD = """
threshold = 2

[[members]]
name = "unionpay"
role = "platform"
keys = "keys"

[[members]]
name = "wechatpay"
role = "platform"
address = "{wechat_address}"
sm2_public_key = "keys/wechatpay.sm2.pub.pem"

[[members]]
name = "pboc"
role = "regulator"
keys = "keys"
"""


@pytest.fixture
def consortium_file(tmp_path: Path) -> Path:
    keys = {name: new_member_keys(tmp_path / "keys", name)
            for name in ("unionpay", "wechatpay", "pboc")}
    (tmp_path / "keys" / "pboc.address").unlink()  # derived from the account key instead
    path = tmp_path / "consortium.toml"
    path.write_text(GOOD.format(wechat_address=keys["wechatpay"].address))
    return path


def test_load_and_deploy(consortium_file: Path) -> None:
    consortium = load_consortium(consortium_file)
    assert consortium.threshold == 2
    assert [(m.name, m.role) for m in consortium.members] == [
        ("unionpay", Role.PLATFORM), ("wechatpay", Role.PLATFORM), ("pboc", Role.REGULATOR)]
    chain = LedgerChain.embedded()
    deployer = chain.with_account(chain.dev_faucet())
    deployment = deploy_consortium(deployer, consortium, fund_wei=DEV_FUNDING_WEI)
    reader = LedgerChain(chain.w3).attach(deployment)
    on_chain = {m.name: m for m in reader.members()}
    for member in consortium.members:
        assert on_chain[member.name].address == member.address
        assert on_chain[member.name].public_key == member.public_key
        assert reader.balance(member.address) == DEV_FUNDING_WEI
    assert reader.threshold() == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("threshold = 2", "threshold = 4"), "between 1 and the 3 voting"),
        (lambda t: t.replace("threshold = 2", 'threshold = "2"'), "must be an integer"),
        (lambda t: t.replace('role = "regulator"', 'role = "bank"'), "role must be one of"),
        (lambda t: t.replace('name = "pboc"', 'name = "PBOC"'), "name must match"),
        (lambda t: t.replace('name = "pboc"', 'name = "unionpay"'), "unionpay appears twice"),
        (lambda t: t + "\nextra = 1\n", "unknown setting 'extra'"),
        (lambda t: t.replace('keys = "keys"', 'keys = "nowhere"', 1), "no unionpay.address"),
        (lambda t: t.replace("keys/wechatpay.sm2.pub.pem", "keys/none.pem"), "cannot read"),
        (lambda t: t.replace('address = "0x', 'address = "0xzz'), "is not a chain address"),
        (lambda t: t.replace("[[members]]", "[[people]]"), "unknown setting 'people'"),
        (lambda t: "threshold = 1\n", r"at least one \[\[members\]\]"),
        (lambda t: t.replace("threshold = 2", "threshold = = 2"), "not valid TOML"),
    ],
)
def test_mistakes_are_named(consortium_file: Path, edit: object, message: str) -> None:
    consortium_file.write_text(edit(consortium_file.read_text()))  # type: ignore[operator]
    with pytest.raises(InvalidConfig, match=message):
        load_consortium(consortium_file)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="cannot read consortium file"):
        load_consortium(tmp_path / "absent.toml")
