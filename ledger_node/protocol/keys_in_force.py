"""The keys in force: which platform a name is on chain, and the pairwise keys of every pair
of SM2 keys two platforms had registered during a window (key rotations read through the
chain adapter's :meth:`~ledger_node.chain.adapter.LedgerChain.key_history`).

Both sides of a reconciliation need them: the platform's SDK computing the tags its
counterparty's halves must carry, and the node or command verifying them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from ledger_node.chain.adapter import KeyPeriod, LedgerChain, Member, Role
from ledger_node.crypto import gmcrypto
from ledger_node.errors import PairwiseKeyUnavailable, UnknownCounterparty
from ledger_node.protocol.pairwise import PairwiseKey, pairwise_key

KEY_MARGIN: Final = timedelta(minutes=5)
"""Clock slack around the window when choosing the keys in force."""



def platform_member(chain: LedgerChain, name: str, *, not_address: str | None = None) -> Member:
    """The platform called ``name`` on chain, active or removed (an old window may still be
    reconciled with a removed platform).

    Raises :class:`UnknownCounterparty` if no platform has that name or if it is the member
    at ``not_address`` (the reconciling platform itself).
    """
    members = chain.members()
    found = [m for m in members if m.name == name]
    platforms = [m for m in found if m.role is Role.PLATFORM]
    if not platforms:
        known = sorted(m.name for m in members if m.role is Role.PLATFORM)
        what = (f"a {found[-1].role.name.lower()}, not a platform" if found
                else "not registered on chain")
        raise UnknownCounterparty(f"{name!r} is {what} (platforms: {', '.join(known)})")
    member = platforms[-1]
    if not_address is not None and member.address.lower() == not_address.lower():
        raise UnknownCounterparty(f"{name!r} is the reconciling platform itself")
    return member


def pairwise_keys_in_force(
    chain: LedgerChain,
    own: Member,
    own_keys: Sequence[gmcrypto.SM2PrivateKey],
    counterparty: Member,
    start: datetime,
    end: datetime,
) -> list[PairwiseKey]:
    """The pairwise keys of every pair of keys both platforms had registered in
    ``[start, end]`` (widened by :data:`KEY_MARGIN`), newest pair first.

    ``own_keys`` are the platform's SM2 private keys, current and retired. Raises
    :class:`PairwiseKeyUnavailable` if one of its keys in force is not among them.
    """
    low, high = start - KEY_MARGIN, end + KEY_MARGIN
    private = {key.public_key().raw: key for key in own_keys}
    own_periods = [p for p in chain.key_history(own) if p.overlaps(low, high)]
    peer_periods = [p for p in chain.key_history(counterparty) if p.overlaps(low, high)]
    keys: list[PairwiseKey] = []
    for period in reversed(own_periods):
        key = private.get(period.public_key)
        if key is None:
            raise PairwiseKeyUnavailable(
                f"{own.name}'s SM2 key {period.public_key.hex()[:16]}... was registered "
                f"during the window{_period_text(period)} but its private key was not given: "
                "pass the retired key too")
        for peer in reversed(peer_periods):
            derived = pairwise_key(key, own.address, counterparty.address, peer.public_key)
            if all(derived.secret != k.secret for k in keys):
                keys.append(derived)
    return keys


def _period_text(period: KeyPeriod) -> str:
    def when(value: int | None, default: str) -> str:
        return default if value is None else datetime.fromtimestamp(value, UTC).isoformat()

    return f" (from {when(period.since, 'admission')} until {when(period.until, 'now')})"


__all__ = ["KEY_MARGIN", "pairwise_keys_in_force", "platform_member"]
