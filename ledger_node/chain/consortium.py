"""The consortium file: who the initial members are, and deploying ``JointLedger`` for them.

TOML, paths relative to the file::

    threshold = 2                       # M of the M-of-N governance votes

    [[members]]
    name = "unionpay"
    role = "platform"                   # platform | regulator | auditor
    address = "0x…"                     # the member's chain account (public)
    sm2_public_key = "keys/unionpay.sm2.pub.pem"

    [[members]]
    name = "pboc"
    role = "regulator"
    keys = "keys"                       # or: a directory holding NAME.sm2.pub.pem and
                                        # NAME.account.key / NAME.address (``keys new``)

Only public material is read; a member's private keys never need to be here.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from eth_account import Account
from web3 import Web3

from ledger_node.chain.adapter import Deployment, LedgerChain, Member, Role
from ledger_node.crypto import gmcrypto
from ledger_node.errors import InvalidConfig, InvalidKey

_ROLES: Final = {"platform": Role.PLATFORM, "regulator": Role.REGULATOR, "auditor": Role.AUDITOR}
MEMBER_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_MEMBER_KEYS: Final = {"name", "role", "address", "sm2_public_key", "keys"}
"""A member name: lower case letters, digits, ``_`` and ``-``, a letter first, 32 at most."""
DEV_FUNDING_WEI: Final = 100 * 10**18


@dataclass(frozen=True)
class Consortium:
    """The initial members and the approval threshold."""

    threshold: int
    members: tuple[Member, ...]

    def member_named(self, name: str) -> Member:
        """The member called ``name``; raise ``KeyError`` if there is none."""
        for member in self.members:
            if member.name == name:
                return member
        raise KeyError(name)


def consortium_toml(members: Sequence[tuple[str, str]], threshold: int,
                    keys_dir: str = "keys") -> str:
    """The text of a consortium file for ``members`` (name, role), each member's public keys
    read from ``keys_dir`` (``jointledger keys new``), and the approval ``threshold``. The one
    writer of the format (``jointledger init``, the local site)."""
    return f"threshold = {threshold}\n" + "".join(
        f"\n[[members]]\nname = {json.dumps(name)}\nrole = {json.dumps(role)}\n"
        f"keys = {json.dumps(keys_dir)}\n" for name, role in members)


def load_consortium(path: Path) -> Consortium:
    """Read a consortium file; raise :class:`InvalidConfig` naming the problem."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidConfig(f"cannot read consortium file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(f"consortium file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"threshold", "members"})
    if unknown:
        raise InvalidConfig(f"{path}: unknown setting {unknown[0]!r}")
    entries = document.get("members")
    if not isinstance(entries, list) or not entries:
        raise InvalidConfig(f"{path}: needs at least one [[members]] entry")
    members = tuple(_member(path, i, entry) for i, entry in enumerate(entries))
    names = [m.name for m in members]
    addresses = [m.address for m in members]
    for label, values in (("name", names), ("address", addresses)):
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise InvalidConfig(f"{path}: member {label} {duplicates[0]} appears twice")
    threshold = document.get("threshold")
    voters = sum(1 for m in members if m.role in (Role.PLATFORM, Role.REGULATOR))
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise InvalidConfig(f"{path}: threshold must be an integer")
    if not 1 <= threshold <= voters:
        raise InvalidConfig(
            f"{path}: threshold {threshold} must be between 1 and the {voters} voting members"
        )
    return Consortium(threshold, members)


def deploy_consortium(
    chain: LedgerChain, consortium: Consortium, *, fund_wei: int | None = None
) -> Deployment:
    """Deploy ``JointLedger`` for ``consortium``, sent by ``chain``'s account.

    With ``fund_wei`` (development chains), each member's account first receives that much
    ether from the chain's development faucet so it can pay for its own transactions.
    Raises :class:`~ledger_node.errors.ChainError` subclasses on failure.
    """
    if fund_wei:
        faucet = chain.dev_faucet()
        for member in consortium.members:
            chain.fund(member.address, fund_wei, faucet)
    return chain.deploy(list(consortium.members), consortium.threshold)


def _member(path: Path, index: int, entry: Any) -> Member:
    where = f"{path}: members[{index}]"
    if not isinstance(entry, dict):
        raise InvalidConfig(f"{where} must be a table")
    unknown = sorted(set(entry) - _MEMBER_KEYS)
    if unknown:
        raise InvalidConfig(f"{where}: unknown setting {unknown[0]!r}")
    name = entry.get("name")
    if not isinstance(name, str) or not MEMBER_NAME.fullmatch(name):
        raise InvalidConfig(f"{where}: name must match [a-z][a-z0-9_-]{{0,31}}")
    role = _ROLES.get(str(entry.get("role")))
    if role is None:
        raise InvalidConfig(f"{where} ({name}): role must be one of {sorted(_ROLES)}")
    base = path.parent
    if "keys" in entry:
        if "address" in entry or "sm2_public_key" in entry:
            raise InvalidConfig(f"{where} ({name}): give keys, or address and sm2_public_key")
        keys_dir = base / str(entry["keys"])
        address = _address_from_keys(where, keys_dir, name)
        key_file = keys_dir / f"{name}.sm2.pub.pem"
    else:
        if "address" not in entry or "sm2_public_key" not in entry:
            raise InvalidConfig(f"{where} ({name}): needs address and sm2_public_key (or keys)")
        address = str(entry["address"])
        key_file = base / str(entry["sm2_public_key"])
    if not Web3.is_address(address):
        raise InvalidConfig(f"{where} ({name}): {address!r} is not a chain address")
    try:
        public_key = gmcrypto.public_key_from_pem(key_file.read_bytes())
    except OSError as exc:
        raise InvalidConfig(f"{where} ({name}): cannot read {key_file}: {exc.strerror}") from None
    except InvalidKey as exc:
        raise InvalidConfig(f"{where} ({name}): {key_file}: {exc}") from None
    return Member(Web3.to_checksum_address(address), role, name, public_key.raw)


def _address_from_keys(where: str, keys_dir: Path, name: str) -> str:
    """The member's address from NAME.address, else derived from NAME.account.key."""
    address_file = keys_dir / f"{name}.address"
    if address_file.exists():
        return address_file.read_text(encoding="ascii").strip()
    account_file = keys_dir / f"{name}.account.key"
    try:
        return str(Account.from_key(account_file.read_text(encoding="ascii").strip()).address)
    except OSError:
        raise InvalidConfig(f"{where} ({name}): no {address_file.name} or "
                            f"{account_file.name} in {keys_dir}") from None
    except (ValueError, TypeError):
        raise InvalidConfig(f"{where} ({name}): {account_file} is not an account key") from None
