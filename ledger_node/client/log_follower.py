"""Follow a platform's Merkle log as a node serves it, verified against the chain.

The one owner of "is what this node serves the log the chain anchors?", used by the
regulator's ingest (:mod:`ledger_node.regulator.node`: whole leaves with escrows) and by
reconciliation's :class:`~ledger_node.reconcile.reconciler.VerifiedLog` (leaf summaries):

* :class:`LogFollower` fetches a log's leaves in pages (optionally a few pages ahead on a
  worker thread), rebuilds the RFC 9162 tree and, for every anchored checkpoint the leaves
  reach, checks its root and then its SM2 signature. It hands each verified range to its
  caller (who commits it) and stops at the first fault.
* :class:`RegisteredKeys` reads the keys a platform has had registered from the chain
  adapter's key history (:meth:`~ledger_node.chain.adapter.LedgerChain.key_history`), so a
  checkpoint signed before a key rotation still verifies after it.
* A fault is raised as a :class:`LogFault` subclass: its ``kind`` (``root-mismatch``,
  ``withheld``, ``wrong-log``, ``bad-checkpoint-signature``, ``unreachable``), the refused
  leaves ``[start, end)``, a ``detail`` (the wording the regulator records) and what was
  seen, for a caller that words it its own way.

It lives in the client layer because it reads nodes' logs, as the SDK does, and because the
regulator and reconciliation may not import each other (the layers contract in
pyproject.toml): the layer below both is the lowest that can reach the nodes and the chain.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Final, Generic, Protocol, TypeVar

import httpx

from ledger_node.chain.adapter import LedgerChain
from ledger_node.crypto import gmcrypto
from ledger_node.errors import (
    ApiError,
    InvalidCheckpoint,
    InvalidKey,
    InvalidLeaf,
    InvalidSignature,
    LedgerError,
)
from ledger_node.log.checkpoint import Checkpoint, SignedCheckpoint, verify_checkpoint_signature
from ledger_node.log.merkle import MerkleLog, hasher_for

MAX_PAGE: Final = 10_000
"""The most leaves a node serves for one request (``/leaves`` and ``/summaries``)."""

# Fault kinds (stable strings: they appear in the API, in reports and in case files).
FAULT_ROOT_MISMATCH: Final = "root-mismatch"
FAULT_WITHHELD: Final = "withheld"
FAULT_WRONG_LOG: Final = "wrong-log"
FAULT_BAD_SIGNATURE: Final = "bad-checkpoint-signature"
FAULT_UNREACHABLE: Final = "unreachable"

_NOT_SERVED_STATUSES: Final = (404, 416)  # the node says it does not have the range

ItemT = TypeVar("ItemT")


class Anchor(Protocol):
    """A checkpoint as anchored on chain: what the served leaves must reproduce.

    A :class:`~ledger_node.chain.adapter.AnchoredCheckpoint` read from events, or the
    regulator's stored copy. A ``signature`` of ``None`` (unknown) never verifies.
    """

    @property
    def tree_size(self) -> int:
        """How many leaves the checkpoint covers."""

    @property
    def root(self) -> bytes:
        """The anchored root."""

    @property
    def timestamp(self) -> int:
        """The platform's timestamp in the checkpoint (signed)."""

    @property
    def signature(self) -> bytes | None:
        """The platform's SM2 signature over the checkpoint."""

    @property
    def block_number(self) -> int:
        """The block that anchored it."""


@dataclass(frozen=True)
class ServedPage(Generic[ItemT]):
    """What a node served for one requested range of leaves.

    ``items`` are the leaves (or leaf summaries) in index order and ``size`` the log's size
    as the node read it. ``origin`` (platform, log id) and ``served`` (the range the node
    says it served) are checked when the source states them, and ``None`` otherwise.
    """

    items: Sequence[ItemT]
    hash_name: str
    size: int
    origin: tuple[str, bytes] | None = None
    served: tuple[int, int] | None = None


@dataclass(frozen=True)
class VerifiedRange(Generic[ItemT]):
    """Leaves ``[start, end)`` that reproduce ``anchor``'s root, whose ``checkpoint`` is
    signed by a key the platform has had registered."""

    start: int
    items: Sequence[ItemT]
    leaf_hashes: Sequence[bytes]
    anchor: Anchor
    checkpoint: SignedCheckpoint

    @property
    def end(self) -> int:
        """One past the last verified leaf: the checkpoint's tree size."""
        return self.start + len(self.items)


# ---------------------------------------------------------------------------- faults


class LogFault(LedgerError):
    """A node served a log that does not match the chain.

    ``kind`` is one of the ``FAULT_*`` strings, ``[start, end)`` the leaves refused and
    ``detail`` what happened, in the wording the regulator records. Subclasses keep what
    was seen as attributes.
    """

    def __init__(self, kind: str, start: int, end: int, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.start = start
        self.end = end
        self.detail = detail


class PageNotServed(LogFault):
    """Asking for a page failed: ``withheld`` if the node says it has no such range (404,
    416) or answered something that is not the range, ``unreachable`` otherwise. Refuses
    everything from the page to the newest anchored size."""

    def __init__(self, page: tuple[int, int], anchored_size: int, error: Exception) -> None:
        at, end = page
        not_served = isinstance(error, InvalidLeaf) or (
            isinstance(error, ApiError) and error.status in _NOT_SERVED_STATUSES)
        super().__init__(FAULT_WITHHELD if not_served else FAULT_UNREACHABLE, at, anchored_size,
                         f"the node did not serve leaves [{at}, {end}) that the chain anchors: "
                         f"{type(error).__name__}: {error}")
        self.page = page
        self.error = error


class PageIncomplete(LogFault):
    """The node served fewer or more leaves than asked, or another range (``withheld``)."""

    def __init__(self, page: tuple[int, int], served_count: int,
                 served_range: tuple[int, int] | None, node_size: int,
                 anchored_size: int) -> None:
        at, end = page
        super().__init__(FAULT_WITHHELD, at, end,
                         f"asked for leaves [{at}, {end}), the node served {served_count} (it "
                         f"reports size {node_size}; the chain anchors {anchored_size})")
        self.page = page
        self.served_count = served_count
        self.served_range = served_range


class ForeignLog(LogFault):
    """The node says the leaves are another platform's, or another log's (``wrong-log``)."""

    def __init__(self, page: tuple[int, int], platform: str, log_id: bytes,
                 served_platform: str, served_log_id: bytes) -> None:
        super().__init__(FAULT_WRONG_LOG, page[0], page[1],
                         f"asked for {platform}'s log {log_id.hex()}, the node serves "
                         f"{served_platform!r}'s {served_log_id.hex()}")
        self.page = page
        self.served_platform = served_platform
        self.served_log_id = served_log_id


class UnknownHash(LogFault):
    """The node names a tree hash this code does not know (``wrong-log``)."""

    def __init__(self, page: tuple[int, int], hash_name: str) -> None:
        super().__init__(FAULT_WRONG_LOG, page[0], page[1],
                         f"the node names hash {hash_name!r}")
        self.page = page
        self.hash_name = hash_name


class HashChanged(LogFault):
    """The node names another tree hash than the one the log was read with so far
    (``root-mismatch``: no anchored root can hold under both)."""

    def __init__(self, page: tuple[int, int], was: str, now: str) -> None:
        super().__init__(FAULT_ROOT_MISMATCH, page[0], page[1],
                         f"the node now says hash {now!r}, the log was verified with {was!r}")
        self.page = page
        self.was = was
        self.now = now


class AnchoredRootMismatch(LogFault):
    """The served leaves do not give the root anchored at ``anchor.tree_size``
    (``root-mismatch``).

    Refuses the leaves from ``start``, the last good checkpoint; the detail names the
    leaves from ``served_from``, where the page's unverified leaves began (an earlier
    checkpoint the same page reached may have been good).
    """

    def __init__(self, start: int, anchor: Anchor, computed: bytes, served_from: int) -> None:
        super().__init__(FAULT_ROOT_MISMATCH, start, anchor.tree_size,
                         f"leaves [{served_from}, {anchor.tree_size}) as served give root "
                         f"{computed.hex()}, the chain anchors {anchor.root.hex()} "
                         f"(block {anchor.block_number})")
        self.anchor = anchor
        self.computed = computed
        self.served_from = served_from


class UnsignedCheckpoint(LogFault):
    """The root matches but the anchored checkpoint verifies under no key the platform has
    had registered (``bad-checkpoint-signature``); refuses the leaves from ``start``, the
    last good checkpoint. ``malformed`` is set when the anchored fields do not even make a
    checkpoint of this log (e.g. an invalid platform name)."""

    def __init__(self, start: int, anchor: Anchor, platform: str,
                 malformed: InvalidCheckpoint | None = None) -> None:
        super().__init__(FAULT_BAD_SIGNATURE, start, anchor.tree_size,
                         f"the checkpoint at size {anchor.tree_size} anchored in block "
                         f"{anchor.block_number} is not signed by a key {platform} registered")
        self.anchor = anchor
        self.malformed = malformed


# ---------------------------------------------------------------------------- keys


class RegisteredKeys:
    """The SM2 keys each platform has had registered, newest first, from the chain
    adapter's key history (:meth:`~ledger_node.chain.adapter.LedgerChain.key_history`).

    Cached per platform address; read again once when a checkpoint verifies under none of
    them (the platform may have rotated its key since). A registered key that is not a
    point on the curve is skipped: it cannot have signed anything.
    """

    def __init__(self, chain: LedgerChain) -> None:
        """Read keys from ``chain`` (the adapter serialises what must be)."""
        self._chain = chain
        self._keys: dict[str, list[gmcrypto.SM2PublicKey]] = {}

    def of(self, address: str) -> list[gmcrypto.SM2PublicKey]:
        """Every usable key ``address`` has had registered, the current one first."""
        keys = self._keys.get(address)
        if keys is None:
            history = self._chain.key_history(self._chain.member(address))
            keys = []
            for raw in dict.fromkeys(period.public_key for period in reversed(history)):
                try:
                    keys.append(gmcrypto.SM2PublicKey.from_raw(raw))
                except InvalidKey:
                    continue
            self._keys[address] = keys
        return keys

    def signed(self, address: str, checkpoint: SignedCheckpoint) -> bool:
        """Whether ``checkpoint``'s signature verifies under a key ``address`` has had
        registered (re-reading the keys once before saying no)."""
        for attempt in range(2):
            for key in self.of(address):
                try:
                    verify_checkpoint_signature(key, checkpoint)
                    return True
                except InvalidSignature:
                    continue
            if attempt == 0:
                self._keys.pop(address, None)
        return False


# ---------------------------------------------------------------------------- the follower


PageFetch = Callable[[int, int], ServedPage[ItemT]]
"""Fetches leaves ``[start, end)`` of the followed log from a node."""


class LogFollower(Generic[ItemT]):
    """One platform log read from a node and verified against its anchored checkpoints.

    The follower owns the log's tree: the caller's (a log verified up to its size before,
    e.g. rebuilt from the regulator's store) or, for an empty log, a new one with the hash
    the node names. ``leaf_data`` encodes served items into the bytes each leaf hash is
    taken over (:func:`ledger_node.log.leaf.leaves_data` for whole leaves).

    After a :class:`LogFault` the tree may hold leaves that were never verified: rebuild it
    from what was verified, or drop the follower.
    """

    def __init__(
        self,
        platform: str,
        platform_address: str,
        log_id: bytes,
        keys: RegisteredKeys,
        leaf_data: Callable[[Sequence[ItemT]], list[bytes]],
        *,
        tree: MerkleLog | None = None,
        page_size: int = MAX_PAGE,
        ahead: int = 0,
        on_new_tree: Callable[[MerkleLog], None] | None = None,
    ) -> None:
        """Follow ``log_id`` of ``platform`` (at ``platform_address`` on chain).

        ``page_size`` leaves are asked for at once; ``ahead`` pages are fetched ahead on a
        worker thread while the current one is checked (0: fetch in the calling thread).
        ``on_new_tree`` is told when the follower starts a tree for the hash the node names.
        """
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        if ahead < 0:
            raise ValueError(f"ahead must not be negative, got {ahead}")
        self.platform = platform
        self.platform_address = platform_address
        self.log_id = log_id
        self._keys = keys
        self._leaf_data = leaf_data
        self._tree = tree
        self._verified = 0 if tree is None else tree.size
        self._page_size = page_size
        self._ahead = ahead
        self._on_new_tree = on_new_tree

    @property
    def tree(self) -> MerkleLog | None:
        """The log's tree (``None`` before the first page of an empty log)."""
        return self._tree

    @property
    def verified_size(self) -> int:
        """How many leaves are verified against an anchored checkpoint."""
        return self._verified

    def follow(self, anchors: Sequence[Anchor], fetch: PageFetch[ItemT],
               on_verified: Callable[[VerifiedRange[ItemT]], None]) -> int:
        """Verify the log from :attr:`verified_size` up to the largest of ``anchors``.

        ``anchors`` are the anchored checkpoints to check, by increasing size (those not
        above the verified size are skipped). Leaves are fetched in pages; after each page,
        every anchor it reaches is checked in order, root first, then signature, and the
        leaves up to the last good one go to ``on_verified`` before the next page is
        looked at. Returns how many leaves were verified. Raises a :class:`LogFault` at the
        first fault, after handing over everything verified before it.
        """
        anchors = [a for a in anchors if a.tree_size > self._verified]
        if not anchors:
            return 0
        target = anchors[-1].tree_size
        ranges = [(at, min(at + self._page_size, target))
                  for at in range(self._verified, target, self._page_size)]
        if self._ahead == 0:
            return self._verify(anchors, ((r, partial(fetch, *r)) for r in ranges), on_verified)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-follower") as pool:
            waiting: deque[Future[ServedPage[ItemT]]] = deque(
                pool.submit(fetch, *r) for r in ranges[:self._ahead])
            try:
                return self._verify(anchors, self._prefetched(pool, fetch, ranges, waiting),
                                    on_verified)
            finally:
                for future in waiting:
                    future.cancel()

    def _prefetched(self, pool: ThreadPoolExecutor, fetch: PageFetch[ItemT],
                    ranges: list[tuple[int, int]],
                    waiting: deque[Future[ServedPage[ItemT]]]
                    ) -> Iterator[tuple[tuple[int, int], Callable[[], ServedPage[ItemT]]]]:
        """Each range with the way to its page, keeping :attr:`_ahead` pages in flight."""
        for number, page in enumerate(ranges):
            future = waiting.popleft()
            if number + self._ahead < len(ranges):
                waiting.append(pool.submit(fetch, *ranges[number + self._ahead]))
            yield page, future.result

    def _verify(self, anchors: list[Anchor],
                pages: Iterator[tuple[tuple[int, int], Callable[[], ServedPage[ItemT]]]],
                on_verified: Callable[[VerifiedRange[ItemT]], None]) -> int:
        """Check each page as it comes (see :meth:`follow`); return the leaves verified."""
        target = anchors[-1].tree_size
        first = start = self._verified
        items: list[ItemT] = []  # fetched and hashed into the tree, not yet verified
        hashes: list[bytes] = []
        next_anchor = 0
        for page, receive in pages:
            served = self._receive(page, receive, target)
            tree = self._tree_for(page, served.hash_name)
            page_hashes = _leaf_hashes(tree, self._leaf_data(served.items))
            tree.extend_leaf_hashes(page_hashes)
            items.extend(served.items)
            hashes.extend(page_hashes)
            good: tuple[Anchor, SignedCheckpoint] | None = None
            failure: LogFault | None = None
            while next_anchor < len(anchors) and anchors[next_anchor].tree_size <= tree.size:
                anchor = anchors[next_anchor]
                checked = self._check(anchor, tree, start if good is None else
                                      good[0].tree_size, served_from=start)
                if isinstance(checked, LogFault):
                    failure = checked
                    break
                good = (anchor, checked)
                next_anchor += 1
            if good is not None:
                anchor, checkpoint = good
                count = anchor.tree_size - start
                on_verified(VerifiedRange(start, items[:count], hashes[:count], anchor,
                                          checkpoint))
                del items[:count]
                del hashes[:count]
                start = self._verified = anchor.tree_size
            if failure is not None:
                raise failure
        return start - first

    def _receive(self, page: tuple[int, int], receive: Callable[[], ServedPage[ItemT]],
                 anchored_size: int) -> ServedPage[ItemT]:
        """The page as served, or the fault of asking for it or of what came back."""
        try:
            served = receive()
        except (LedgerError, httpx.TransportError) as exc:
            raise PageNotServed(page, anchored_size, exc) from None
        if served.origin is not None and served.origin != (self.platform, self.log_id):
            raise ForeignLog(page, self.platform, self.log_id, *served.origin)
        at, end = page
        if len(served.items) != end - at or served.served not in (None, page):
            raise PageIncomplete(page, len(served.items), served.served, served.size,
                                 anchored_size)
        return served

    def _tree_for(self, page: tuple[int, int], hash_name: str) -> MerkleLog:
        """The tree to hash a page into: the log's, or a new one for an empty log whose
        node names another hash than assumed."""
        tree = self._tree
        if tree is not None and tree.hasher.name == hash_name:
            return tree
        if tree is not None and tree.size != 0:
            raise HashChanged(page, tree.hasher.name, hash_name)
        try:
            hasher = hasher_for(hash_name)
        except ValueError:
            raise UnknownHash(page, hash_name) from None
        tree = self._tree = MerkleLog(hasher)
        if self._on_new_tree is not None:
            self._on_new_tree(tree)
        return tree

    def _check(self, anchor: Anchor, tree: MerkleLog, start: int, *, served_from: int
               ) -> SignedCheckpoint | LogFault:
        """``anchor``'s checkpoint if the tree gives its root and a registered key signed
        it; otherwise the fault, refusing the leaves from ``start`` (the last good
        checkpoint; ``served_from``: see :class:`AnchoredRootMismatch`)."""
        root = tree.root(anchor.tree_size)
        if root != anchor.root:
            return AnchoredRootMismatch(start, anchor, root, served_from)
        try:
            checkpoint = Checkpoint(self.platform, self.log_id, anchor.tree_size, anchor.root,
                                    anchor.timestamp, tree.hasher.name)
        except InvalidCheckpoint as exc:
            return UnsignedCheckpoint(start, anchor, self.platform, exc)
        if anchor.signature is None:
            return UnsignedCheckpoint(start, anchor, self.platform)
        signed = SignedCheckpoint(checkpoint, anchor.signature)
        if not self._keys.signed(self.platform_address, signed):
            return UnsignedCheckpoint(start, anchor, self.platform)
        return signed


def _leaf_hashes(tree: MerkleLog, datas: list[bytes]) -> list[bytes]:
    """The leaf hashes of ``datas`` in one tight loop where the hasher has one (the same
    bytes as ``tree.hasher.hash_leaf(data)`` each)."""
    bulk = getattr(tree.hasher, "hash_leaves", None)
    if bulk is None:
        return [tree.hasher.hash_leaf(data) for data in datas]
    joined = bytes(bulk(datas))
    size = tree.hasher.digest_size
    return [joined[i:i + size] for i in range(0, len(joined), size)]


__all__ = [
    "FAULT_BAD_SIGNATURE",
    "FAULT_ROOT_MISMATCH",
    "FAULT_UNREACHABLE",
    "FAULT_WITHHELD",
    "FAULT_WRONG_LOG",
    "MAX_PAGE",
    "Anchor",
    "AnchoredRootMismatch",
    "ForeignLog",
    "HashChanged",
    "LogFault",
    "LogFollower",
    "PageFetch",
    "PageIncomplete",
    "PageNotServed",
    "RegisteredKeys",
    "ServedPage",
    "UnknownHash",
    "UnsignedCheckpoint",
    "VerifiedRange",
]
