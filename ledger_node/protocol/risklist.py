"""The shared risk-device list as a member sees it: a local copy synced from chain events.

:class:`RiskList` follows the contract's risk-list events block by block (additions,
removals, key epochs, key deliveries), opens this member's list-key ring with its SM2
key(s), and checks fingerprints against the local copy (one HMAC-SM3 per epoch that has
entries, then a dictionary lookup). Members add and remove entries through it as well.
:func:`distribute_list_key` and :func:`deliver_list_key` are the regulator's side.
docs/risklist.md has the design.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from ledger_node.chain.adapter import Address, ChainEvent, LedgerChain, Role, TxOutcome
from ledger_node.crypto import gmcrypto
from ledger_node.errors import (
    InvalidFingerprint,
    InvalidListKey,
    ListKeyUnavailable,
    RiskDeviceAlreadyListed,
    RiskDeviceNotListed,
    RiskListError,
)
from ledger_node.protocol.riskdevice import (
    EntryFunction,
    ListKeyRing,
    RiskReason,
    entry_function,
    normalise_fingerprint,
    open_ring,
    parse_reason,
    seal_ring,
)

KEY_HOLDER_ROLES: Final = (Role.PLATFORM, Role.REGULATOR)
"""Who receives the list key: every active platform and regulator (auditors do not)."""

MAX_SYNC_SPAN: Final = 50_000
"""Blocks per ``eth_getLogs`` while syncing (nodes cap the range of one query)."""

T = TypeVar("T")


@dataclass(frozen=True)
class RiskHit:
    """A listed device: its normalised fingerprint, entry, reason, adder, epoch and block."""

    fingerprint: str
    entry: bytes
    reason: RiskReason
    adder: Address
    epoch: int
    block_number: int


@dataclass(frozen=True)
class SyncReport:
    """What one :meth:`RiskList.sync` read: blocks, additions, removals, epochs."""

    from_block: int
    to_block: int
    added: int
    removed: int
    epoch: int
    key_epoch: int


@dataclass(frozen=True)
class _Entry:
    adder: Address
    reason: RiskReason
    epoch: int
    block_number: int


class RiskList:
    """One member's synced copy of the risk-device list.

    ``chain`` is bound to the deployment; it sends as the member when entries are added or
    removed. ``sm2_keys`` are the member's SM2 private keys, current first, then retired ones
    (rings delivered before a rotation were sealed to the old key). ``member`` defaults to
    the chain's sending account. Thread-safe: checks may run while another thread
    syncs (the chain adapter serialises what must be).
    """

    def __init__(self, chain: LedgerChain,
                 sm2_keys: gmcrypto.SM2PrivateKey | Sequence[gmcrypto.SM2PrivateKey], *,
                 member: Address | None = None) -> None:
        self._chain = chain
        self._keys = (sm2_keys,) if isinstance(sm2_keys, gmcrypto.SM2PrivateKey) \
            else tuple(sm2_keys)
        if not self._keys:
            raise ValueError("RiskList needs at least one SM2 private key")
        self._member = member if member is not None else chain.address
        self._deployment = chain.deployment
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._entries: dict[bytes, _Entry] = {}
        self._per_epoch: Counter[int] = Counter()
        self._ring = ListKeyRing(())
        self._hashers: dict[int, EntryFunction] = {}
        self._delivered: set[int] = set()
        self._epoch = 0
        self._epoch_open = False
        self._synced_block = self._deployment.deploy_block - 1
        self._synced_at = 0.0
        self._check_epochs: tuple[tuple[int, EntryFunction], ...] = ()
        self._blind_epochs: tuple[int, ...] = ()

    # ------------------------------------------------------------------ state

    @property
    def member(self) -> Address:
        """The member whose key ring this copy uses."""
        return self._member

    @property
    def synced_block(self) -> int:
        """The last block whose events are in the copy."""
        return self._synced_block

    @property
    def epoch(self) -> int:
        """The current list-key epoch on chain, as of :attr:`synced_block`."""
        return self._epoch

    @property
    def epoch_open(self) -> bool:
        """Whether the current epoch takes new entries, as of :attr:`synced_block`."""
        return self._epoch_open

    @property
    def key_epoch(self) -> int:
        """The newest epoch whose key this member holds (0: none delivered yet)."""
        return self._ring.epoch

    def __len__(self) -> int:
        """The number of entries listed, as of :attr:`synced_block`."""
        return len(self._entries)

    # ------------------------------------------------------------------ sync

    def sync(self) -> SyncReport:
        """Apply every risk-list event since :attr:`synced_block` up to the chain's head,
        then open a newly delivered key ring, if any.

        Raises :class:`~ledger_node.errors.ChainError` when the chain fails (the copy stays
        as it was, consistent up to its :attr:`synced_block`) and :class:`InvalidListKey`
        when a delivered ring does not open or rewrites older keys.
        """
        with self._sync_lock:
            start = self._synced_block + 1
            head = self._chain.block_number()
            added = removed = 0
            for low in range(start, head + 1, MAX_SYNC_SPAN):
                high = min(head, low + MAX_SYNC_SPAN - 1)
                events = self._chain.risk_list_events(low, high)
                a, r = self._apply(events, high)
                added, removed = added + a, removed + r
            self._refresh_ring()
            self._synced_at = time.monotonic()
            return SyncReport(start, head, added, removed, self._epoch, self._ring.epoch)

    def sync_if_older(self, max_age_s: float) -> None:
        """Sync unless the last sync finished less than ``max_age_s`` seconds ago."""
        if time.monotonic() - self._synced_at >= max_age_s:
            self.sync()

    def _apply(self, events: Iterable[ChainEvent], to_block: int) -> tuple[int, int]:
        added = removed = 0
        with self._lock:
            for e in events:
                args = e.args
                if e.name == "RiskDeviceAdded":
                    entry = bytes(args["entry"])
                    old = self._entries.get(entry)
                    if old is not None:  # cannot happen on one chain; keep counts right
                        self._per_epoch[old.epoch] -= 1
                    self._entries[entry] = _Entry(str(args["adder"]),
                                                  RiskReason(int(args["reason"])),
                                                  int(args["epoch"]), e.block_number)
                    self._per_epoch[int(args["epoch"])] += 1
                    added += 1
                elif e.name == "RiskDeviceRemoved":
                    gone = self._entries.pop(bytes(args["entry"]), None)
                    if gone is not None:
                        self._per_epoch[gone.epoch] -= 1
                        removed += 1
                elif e.name == "ListEpochOpened":
                    self._epoch, self._epoch_open = int(args["epoch"]), True
                elif e.name == "ListEpochClosed":
                    if int(args["epoch"]) == self._epoch:
                        self._epoch_open = False
                elif e.name == "ListKeySet" and str(args["account"]).lower() == \
                        self._member.lower():
                    self._delivered.add(int(args["epoch"]))
            self._synced_block = to_block
            self._index()
        return added, removed

    def _refresh_ring(self) -> None:
        """Open the newest ring delivered to this member, if newer than the one held."""
        newest = max(self._delivered, default=0)
        if newest <= self._ring.epoch:
            return
        ciphertext = self._chain.list_key(self._member, newest)
        if ciphertext is None:
            raise InvalidListKey(f"a ListKeySet event names epoch {newest} but the chain "
                                 "holds no key ring for this member")
        ring = open_ring(self._keys, ciphertext, chain_id=self._deployment.chain_id,
                         contract=self._deployment.address, epoch=newest)
        if not ring.extends(self._ring):
            raise InvalidListKey(f"the key ring of epoch {newest} changes the keys of "
                                 "earlier epochs")
        with self._lock:
            self._ring = ring
            self._hashers = {e: self._hashers.get(e) or entry_function(ring.key(e))
                             for e in range(1, ring.epoch + 1)}
            self._index()

    def _index(self) -> None:
        """Recompute which epochs a check hashes under (call with ``_lock`` held)."""
        live = sorted(e for e, n in self._per_epoch.items() if n > 0)
        self._check_epochs = tuple((e, self._hashers[e]) for e in live if e in self._hashers)
        self._blind_epochs = tuple(e for e in live if e not in self._hashers)

    # ------------------------------------------------------------------ checks

    def check(self, fingerprint: str) -> RiskHit | None:
        """The listing of ``fingerprint``, or ``None`` if it is not listed (as of
        :attr:`synced_block`; call :meth:`sync` first to catch up).

        Raises :class:`InvalidFingerprint` for a malformed fingerprint and
        :class:`ListKeyUnavailable` when entries exist under an epoch whose key this member
        does not hold (the answer could be wrong, so none is given).
        """
        return self.check_many([fingerprint])[0]

    def check_many(self, fingerprints: Sequence[str]) -> list[RiskHit | None]:
        """:meth:`check` for each fingerprint, in order, against one state of the copy.

        A malformed fingerprint raises :class:`InvalidFingerprint` with its ``index``;
        nothing is returned for the others.
        """
        return [hit for _, hit in self.lookup_many(fingerprints)]

    def lookup_many(self, fingerprints: Sequence[str]) -> list[tuple[str, RiskHit | None]]:
        """As :meth:`check_many`, each result paired with the fingerprint's normal form."""
        normal = []
        for i, text in enumerate(fingerprints):
            try:
                normal.append(normalise_fingerprint(text))
            except InvalidFingerprint as exc:
                raise InvalidFingerprint(exc.reason, i) from None
        with self._lock:
            if self._blind_epochs:
                raise ListKeyUnavailable(self._blind_message())
            entries = self._entries
            epochs = self._check_epochs
            results: list[tuple[str, RiskHit | None]] = []
            for fp in normal:
                hit = None
                for _, entry_of in epochs:
                    entry = entry_of(fp)
                    found = entries.get(entry)
                    if found is not None:
                        hit = RiskHit(fp, entry, found.reason, found.adder, found.epoch,
                                      found.block_number)
                        break
                results.append((fp, hit))
            return results

    def _blind_message(self) -> str:
        epochs = ", ".join(str(e) for e in self._blind_epochs)
        return (f"entries are listed under list-key epoch(s) {epochs} but {self._member} "
                f"holds keys up to epoch {self._ring.epoch} only: the regulator has not "
                "delivered the newer key ring to it")

    # ------------------------------------------------------------------ writes

    def entry_for(self, fingerprint: str) -> tuple[int, bytes]:
        """The current epoch and the entry ``fingerprint`` gets under its key.

        Raises :class:`ListKeyUnavailable` if this member does not hold the current key.
        """
        normal = normalise_fingerprint(fingerprint)
        with self._lock:
            hasher = self._hashers.get(self._epoch)
            if self._epoch == 0 or hasher is None:
                raise ListKeyUnavailable(
                    f"{self._member} holds no key of the current list-key epoch "
                    f"{self._epoch} (it holds keys up to epoch {self._ring.epoch})")
            return self._epoch, hasher(normal)

    def add(self, fingerprint: str, reason: RiskReason | int | str
            ) -> tuple[RiskHit, TxOutcome]:
        """List ``fingerprint`` for ``reason`` under the current epoch's key, as this member;
        return the listing and the transaction's outcome.

        Syncs first. Raises :class:`InvalidFingerprint`, :class:`UnknownRiskReason`,
        :class:`RiskDeviceAlreadyListed` (under any epoch), :class:`ListKeyUnavailable`, and
        :class:`~ledger_node.errors.ContractRevert` for what the contract refuses (e.g.
        ``RiskList_EpochClosed`` until a regulator opens the next epoch).
        """
        hits, outcome = self.add_many([(fingerprint, reason)])
        return hits[0], outcome

    def add_many(self, items: Sequence[tuple[str, RiskReason | int | str]]
                 ) -> tuple[list[RiskHit], TxOutcome]:
        """List several fingerprints in one transaction (all or none); as :meth:`add`.

        A malformed item raises with its ``index``; a fingerprint given twice is
        :class:`RiskDeviceAlreadyListed`; no items is :class:`InvalidFingerprint`.
        """
        if not items:
            raise InvalidFingerprint("no fingerprints to add")
        reasons = [parse_reason(reason) for _, reason in items]
        self.sync()
        listed = self.check_many([fp for fp, _ in items])
        entries: list[bytes] = []
        epoch = 0
        for i, ((fingerprint, _), hit) in enumerate(zip(items, listed, strict=True)):
            if hit is not None:
                raise RiskDeviceAlreadyListed(
                    f"{hit.fingerprint} is already listed (entry {hit.entry.hex()}, epoch "
                    f"{hit.epoch}, by {hit.adder})")
            epoch, entry = self.entry_for(fingerprint)
            if entry in entries:
                raise RiskDeviceAlreadyListed(f"item {i} repeats an earlier fingerprint")
            entries.append(entry)
        if len(entries) == 1:
            outcome = self._chain.add_risk_device(entries[0], epoch,
                                     int(reasons[0]))
        else:
            outcome = self._chain.add_risk_devices(entries, epoch,
                                     [int(r) for r in reasons])
        self.sync()
        hits = self.check_many([fp for fp, _ in items])
        return [hit if hit is not None else RiskHit(
                    normalise_fingerprint(fp), entry, reason, self._chain.address, epoch,
                    outcome.block_number)  # removed again meanwhile by someone else
                for (fp, _), entry, reason, hit in zip(items, entries, reasons, hits,
                                                       strict=True)], outcome

    def _listed(self, fingerprint: str) -> RiskHit:
        self.sync()
        hit = self.check(fingerprint)
        if hit is None:
            raise RiskDeviceNotListed(f"{normalise_fingerprint(fingerprint)} is not listed")
        return hit

    def remove(self, fingerprint: str) -> tuple[RiskHit, TxOutcome]:
        """Remove ``fingerprint``'s entry, which this member added; return it and the outcome.

        Raises :class:`RiskDeviceNotListed`, and :class:`ContractRevert`
        ``RiskList_NotAdder`` for another member's entry (use :meth:`propose_removal`).
        """
        hit = self._listed(fingerprint)
        outcome = self._chain.remove_risk_device(hit.entry)
        self.sync()
        return hit, outcome

    def propose_removal(self, fingerprint: str) -> tuple[RiskHit, int, TxOutcome]:
        """Propose removing any member's entry of ``fingerprint`` by governance; return the
        entry, the proposal id and the outcome (it executes at once if M is 1)."""
        hit = self._listed(fingerprint)
        proposal_id, outcome = self._chain.propose_remove_risk_device(
                                              hit.entry)
        return hit, proposal_id, outcome


# ---------------------------------------------------------------------- the regulator's side


def current_ring(chain: LedgerChain, sm2_keys: Sequence[gmcrypto.SM2PrivateKey],
                 member: Address) -> ListKeyRing:
    """The newest key ring delivered to ``member`` (an empty ring if none, before epoch 1).

    Raises :class:`ListKeyUnavailable` when epochs exist but none was delivered to it.
    """
    deployment = chain.deployment
    epoch = chain.list_epoch()
    for e in range(epoch, 0, -1):
        ciphertext = chain.list_key(member, e)
        if ciphertext is not None:
            return open_ring(sm2_keys, ciphertext, chain_id=deployment.chain_id,
                             contract=deployment.address, epoch=e)
    if epoch:
        raise ListKeyUnavailable(f"{member} was never delivered a list key; another "
                                 "regulator must deliver one to it first")
    return ListKeyRing(())


def key_holders(chain: LedgerChain) -> dict[Address, gmcrypto.SM2PublicKey]:
    """Every active platform and regulator with its registered SM2 key."""
    return {m.address: gmcrypto.SM2PublicKey.from_raw(m.public_key)
            for m in chain.members() if m.active and m.role in KEY_HOLDER_ROLES}


def _seal_for(holders: Mapping[Address, gmcrypto.SM2PublicKey], ring: ListKeyRing,
              chain: LedgerChain) -> dict[Address, bytes]:
    deployment = chain.deployment
    return {address: seal_ring(key, ring, deployment.chain_id, deployment.address)
            for address, key in holders.items()}


def distribute_list_key(chain: LedgerChain,
                        sm2_keys: gmcrypto.SM2PrivateKey | Sequence[gmcrypto.SM2PrivateKey]
                        ) -> tuple[int, TxOutcome]:
    """As a regulator: draw a fresh list key, open the next epoch and deliver the extended
    ring to every active platform and regulator, this regulator included. Returns the new
    epoch and the outcome.

    Run it at the start, and after removing a key holder or rotating one's key (the
    contract closes the epoch then). Raises :class:`ListKeyUnavailable` when this regulator
    holds no ring of an existing epoch, :class:`InvalidListKey` if its ring does not open.
    """
    keys = (sm2_keys,) if isinstance(sm2_keys, gmcrypto.SM2PrivateKey) else tuple(sm2_keys)
    ring = current_ring(chain, keys, chain.address)
    if ring.epoch != chain.list_epoch():
        raise ListKeyUnavailable(f"{chain.address} holds the ring of epoch {ring.epoch}, not "
                                 f"of the current epoch {chain.list_epoch()}")
    new = ring.extended()
    outcome = chain.set_list_keys(new.epoch, _seal_for(key_holders(chain), new, chain))
    return new.epoch, outcome


def deliver_list_key(chain: LedgerChain,
                     sm2_keys: gmcrypto.SM2PrivateKey | Sequence[gmcrypto.SM2PrivateKey],
                     accounts: Sequence[Address] | None = None) -> tuple[int, TxOutcome | None]:
    """As a regulator: deliver the current epoch's ring to ``accounts`` (default: every
    active key holder without one, e.g. a newly admitted platform). Returns the epoch and
    the outcome (``None`` when nobody was missing)."""
    keys = (sm2_keys,) if isinstance(sm2_keys, gmcrypto.SM2PrivateKey) else tuple(sm2_keys)
    epoch = chain.list_epoch()
    ring = current_ring(chain, keys, chain.address)
    if epoch == 0 or ring.epoch != epoch:
        raise ListKeyUnavailable(f"{chain.address} holds no ring of the current epoch {epoch}")
    holders = key_holders(chain)
    if accounts is None:
        wanted = [a for a in holders if chain.list_key(a, epoch) is None]
    else:
        by_lower = {a.lower(): a for a in holders}
        wanted = []
        for account in accounts:
            if account.lower() not in by_lower:
                raise RiskListError(f"{account} is not an active platform or regulator: it "
                                    "may not hold the list key")
            wanted.append(by_lower[account.lower()])
    if not wanted:
        return epoch, None
    chosen = {address: holders[address] for address in wanted}
    return epoch, chain.set_list_keys(epoch, _seal_for(chosen, ring, chain))

