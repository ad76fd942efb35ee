"""``jointledger serve --role regulator``: the config file and the checks made at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger_node.crypto import gmcrypto
from ledger_node.crypto.keyfiles import MemberKeys, write_member_keys
from ledger_node.errors import InvalidConfig
from ledger_node.regulator.config import build_regulator, load_regulator_config
from tests.api_support import Consortium

GOOD = """
[regulator]
name = "pboc"
store = "pboc-regulator.db"
follow_interval = 0.5
page_size = 5000

[platforms]
unionpay = "http://127.0.0.1:8701"

[aml]
cash_threshold_fen = 4000000
structuring_window_s = 3600

[http]
port = 0

[keys]
sm2 = "keys/pboc.sm2.pem"
account = "keys/pboc.account.key"

[chain]
deployment = "deployment.json"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "regulator.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads_with_paths_relative_to_it(tmp_path: Path) -> None:
    config = load_regulator_config(write(tmp_path, GOOD))
    assert config.regulator.name == "pboc"
    assert config.regulator.store_path == tmp_path.resolve() / "pboc-regulator.db"
    assert config.regulator.page_size == 5000 and config.regulator.follow_interval == 0.5
    assert config.regulator.aml.cash_threshold_fen == 4_000_000
    assert config.regulator.aml.structuring_window.total_seconds() == 3600
    assert config.platforms == {"unionpay": "http://127.0.0.1:8701"}
    assert config.port == 0 and config.retired_sm2 == ()


@pytest.mark.parametrize(("change", "message"), [
    (("[regulator]", "[regulatr]"), "unknown section [regulatr]"),
    (('name = "pboc"\n', ""), "regulator.name is missing"),
    (("page_size = 5000", "page_size = 0"), "page_size must be in 1..10000"),
    (("page_size = 5000", 'page_size = "big"'), "page_size has the wrong type"),
    (("follow_interval = 0.5", "follow_interval = 0"), "follow_interval must be positive"),
    (('unionpay = "http://127.0.0.1:8701"', 'unionpay = "ftp://x"'),
     "platforms.unionpay must be an http(s) URL"),
    (("cash_threshold_fen = 4000000", "cash_threshold_fen = -1"), "[aml]"),
    (("structuring_window_s = 3600", "window = 3"), "window"),
    (("port = 0", 'host = "0.0.0.0"'), "loopback only"),
    (("port = 0", "port = 70000"), "not a TCP port"),
    (('account = "keys/pboc.account.key"', "account = 5"), "keys.account has the wrong type"),
    (('sm2 = "keys/pboc.sm2.pem"', 'sm2 = "keys/pboc.sm2.pem"\nretired_sm2 = "old.pem"'),
     "keys.retired_sm2 has the wrong type"),
    (('deployment = "deployment.json"', 'deployment = "d.json"\nrpc = "x"'),
     "[chain] has unknown key 'rpc'"),
    (("[platforms]", "platforms = 3\n[other]"), "unknown section [other]"),
    (("[regulator]", "[regulator]\nextra = 1"), "[regulator] has unknown key 'extra'"),
])
def test_every_mistake_names_the_key(tmp_path: Path, change: tuple[str, str],
                                     message: str) -> None:
    with pytest.raises(InvalidConfig) as raised:
        load_regulator_config(write(tmp_path, GOOD.replace(*change)))
    assert message in str(raised.value)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="cannot read config file"):
        load_regulator_config(tmp_path / "absent.toml")
    with pytest.raises(InvalidConfig, match="is not valid TOML"):
        load_regulator_config(write(tmp_path, "[regulator\n"))
    with pytest.raises(InvalidConfig, match=r"\[keys\] is missing"):
        load_regulator_config(write(tmp_path, GOOD.split("[keys]")[0]))


def _site(tmp_path: Path, consortium: Consortium, name: str, keys: MemberKeys) -> Path:
    write_member_keys(tmp_path / "keys", name, keys, overwrite=True)
    consortium.deployment.save(tmp_path / "deployment.json")
    return write(tmp_path, GOOD.replace('name = "pboc"', f'name = "{name}"')
                 .replace("keys/pboc", f"keys/{name}"))


def test_start_checks_the_account_and_key_on_chain(tmp_path: Path,
                                                   consortium: Consortium) -> None:
    pboc = consortium.pboc
    path = _site(tmp_path, consortium, "pboc", MemberKeys(pboc.sm2_key, pboc.account))
    regulator = build_regulator(load_regulator_config(path), chain=consortium.chain)
    try:
        assert regulator.config.name == "pboc"
        assert regulator.chain.address == pboc.account.address
    finally:
        regulator.stop()

    other_key = MemberKeys(gmcrypto.generate_private_key(), pboc.account)
    path = _site(tmp_path, consortium, "pboc", other_key)
    with pytest.raises(InvalidConfig, match="is not the SM2 key pboc has registered"):
        build_regulator(load_regulator_config(path), chain=consortium.chain)

    auditor = consortium.auditor
    path = _site(tmp_path, consortium, "auditor",
                 MemberKeys(auditor.sm2_key, auditor.account))
    with pytest.raises(InvalidConfig, match="is not the active regulator 'auditor'"):
        build_regulator(load_regulator_config(path), chain=consortium.chain)
