"""Member key files: created with private modes, loaded back, never overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger_node.cli.main import main
from ledger_node.crypto import gmcrypto
from ledger_node.crypto.keyfiles import key_paths, load_member_keys, new_member_keys
from ledger_node.errors import InvalidKey


def test_new_keys_round_trip_with_private_modes(tmp_path: Path) -> None:
    keys = new_member_keys(tmp_path, "unionpay")
    private, public, account = key_paths(tmp_path, "unionpay")
    assert private.stat().st_mode & 0o777 == 0o600
    assert account.stat().st_mode & 0o777 == 0o600
    loaded = load_member_keys(private, account)
    assert loaded.sm2_key == keys.sm2_key and loaded.address == keys.address
    assert gmcrypto.public_key_from_pem(public.read_bytes()) == keys.sm2_key.public_key()


def test_existing_keys_are_never_overwritten(tmp_path: Path) -> None:
    new_member_keys(tmp_path, "unionpay")
    before = key_paths(tmp_path, "unionpay")[0].read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        new_member_keys(tmp_path, "unionpay")
    assert key_paths(tmp_path, "unionpay")[0].read_bytes() == before


def test_malformed_key_files_are_rejected(tmp_path: Path) -> None:
    new_member_keys(tmp_path, "pboc")
    private, _, account = key_paths(tmp_path, "pboc")
    with pytest.raises(InvalidKey, match="cannot read key file"):
        load_member_keys(tmp_path / "missing.pem", account)
    account.write_text("not-hex\n")
    with pytest.raises(InvalidKey, match="not a hex secp256k1 private key"):
        load_member_keys(private, account)
    private.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(InvalidKey):
        load_member_keys(private, account)


def test_cli_keys_new(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "--name", "wechatpay", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "member wechatpay: chain address 0x" in out
    assert main(["keys", "new", "--name", "wechatpay", "--dir", str(tmp_path)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err

