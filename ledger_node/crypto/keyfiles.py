"""A member's key files: its SM2 key pair (PEM, OpenSSL-readable) and its chain account key.

Private keys stay with their owner: files are written with mode 0600 and never sent
anywhere. ``NAME.sm2.pem`` / ``NAME.sm2.pub.pem`` hold the SM2 pair; ``NAME.account.key``
holds the chain account's secp256k1 private key as hex (as Ethereum tools expect) and
``NAME.address`` its public address, for consortium files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger_node.crypto import gmcrypto
from ledger_node.errors import InvalidKey


@dataclass(frozen=True)
class MemberKeys:
    """A member's two private keys, loaded in its own process."""

    sm2_key: gmcrypto.SM2PrivateKey
    account: LocalAccount

    @property
    def address(self) -> str:
        """The member's checksummed chain address."""
        return str(self.account.address)


def key_paths(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """Return the (SM2 private, SM2 public, account) key file paths for member ``name``."""
    return (
        directory / f"{name}.sm2.pem",
        directory / f"{name}.sm2.pub.pem",
        directory / f"{name}.account.key",
    )


def new_member_keys(directory: Path, name: str, *, overwrite: bool = False) -> MemberKeys:
    """Create a fresh key set for ``name`` and write it to ``directory``.

    Raises ``FileExistsError`` rather than overwrite existing keys unless ``overwrite``.
    """
    keys = MemberKeys(gmcrypto.generate_private_key(), Account.create())
    write_member_keys(directory, name, keys, overwrite=overwrite)
    return keys


def write_member_keys(
    directory: Path, name: str, keys: MemberKeys, *, overwrite: bool = False
) -> None:
    """Write ``keys`` as ``name``'s key files in ``directory`` (private files mode 0600).

    Raises ``FileExistsError`` rather than overwrite existing keys unless ``overwrite``.
    """
    private, public, account_file = key_paths(directory, name)
    if not overwrite:
        for path in (private, public, account_file):
            if path.exists():
                raise FileExistsError(f"{path} exists; refusing to overwrite a key")
    directory.mkdir(parents=True, exist_ok=True)
    _write_private(private, gmcrypto.private_key_to_pem(keys.sm2_key))
    public.write_bytes(gmcrypto.public_key_to_pem(keys.sm2_key.public_key()))
    _write_private(account_file, (keys.account.key.hex() + "\n").encode("ascii"))
    (directory / f"{name}.address").write_text(keys.address + "\n", encoding="ascii")


def load_member_keys(sm2_pem: Path, account_key: Path) -> MemberKeys:
    """Load a member's SM2 private key (PEM) and account key (hex) from files.

    Raises :class:`InvalidKey` for unreadable or malformed files.
    """
    try:
        sm2_key = gmcrypto.private_key_from_pem(sm2_pem.read_bytes())
        account_hex = account_key.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise InvalidKey(f"cannot read key file: {exc}") from None
    try:
        account: LocalAccount = Account.from_key(account_hex)
    except (ValueError, TypeError) as exc:
        raise InvalidKey(f"{account_key} is not a hex secp256k1 private key: {exc}") from None
    return MemberKeys(sm2_key, account)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file readable by its owner only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)
