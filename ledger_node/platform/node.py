"""The platform node without HTTP: durable intake with group commit, the log, the sealer.

:class:`PlatformNode` owns one platform's log (PROTOCOL §5, §9, §10):

* :meth:`PlatformNode.submit` validates a signed batch in the caller's thread (size, digest,
  the platform's SM2 signature with the key registered on chain, the signer being this
  node's own active platform member), queues it and blocks until the single writer thread
  has committed it. The writer drains everything queued into ONE SQLite transaction (one
  fsync: group commit), then appends the new leaf hashes to the in-memory
  :class:`~ledger_node.log.merkle.MerkleLog` and wakes the callers. An acknowledgement
  (returned receipts) therefore means: on disk, in the log, and will be anchored.
* Idempotency: a leaf already stored (same leaf hash), earlier in the same batch or in a
  batch committed in the same group, gets the existing index with ``duplicate=True`` and is
  not stored again.
* The :class:`~ledger_node.platform.sealer.Sealer` anchors signed checkpoints of the head; proof
  bundles are served against the latest anchored checkpoint only.
"""

from __future__ import annotations

import hmac
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ledger_node.chain.adapter import DisclosureRequest, LedgerChain, Member, Role
from ledger_node.chain.member_cache import StaleWhileRevalidateMembers
from ledger_node.crypto import gmcrypto
from ledger_node.errors import (
    ChainError,
    CommitmentNotInLog,
    ContractRevert,
    DisclosureConflict,
    DisclosureNotAddressed,
    DisclosureNotAnswered,
    Forbidden,
    InvalidBatch,
    InvalidCheckpoint,
    InvalidDisclosureResponse,
    InvalidKey,
    InvalidLeaf,
    InvalidLeafRange,
    InvalidSignature,
    LeafRangeUnavailable,
    LedgerError,
    NodeStopped,
    StoreCorrupted,
    UnknownCheckpoint,
    UnknownDisclosureRequest,
    UnknownLeaf,
)
from ledger_node.log.checkpoint import log_id_for
from ledger_node.log.leaf import Leaf, LeafSummary, Receipt, batch_digest_from_data, leaves_data
from ledger_node.log.merkle import ConsistencyProof, TreeHead, hasher_for
from ledger_node.platform.chain_watch import ChainProbe, ChainStatus, ChainWatch
from ledger_node.platform.sealer import Sealer, SealerCounters
from ledger_node.platform.store import (
    NewBatch,
    SQLiteStore,
    StoredCheckpoint,
    StoredDisclosureResponse,
)
from ledger_node.protocol.auth import BatchEvidence
from ledger_node.protocol.bundle import ChainAnchor, ProofBundle
from ledger_node.protocol.disclosure import response_digest, response_fingerprint
from ledger_node.protocol.escrow import key_fingerprint

__all__ = [
    "BatchEvidence",
    "DisclosureAnswer",
    "LeafStatus",
    "NodeConfig",
    "PlatformNode",
    "Receipt",
    "StoredCheckpoint",
    "StoredDisclosureResponse",
]

_LATENCY_WINDOW: Final = 100_000  # latency samples kept for the p50/p99 summaries
_GROUP_LEAF_CAP: Final = 50_000  # at most this many leaves per group commit
_logger = logging.getLogger(__name__)
MAX_LEAF_RANGE: Final = 10_000
"""The most leaves :meth:`PlatformNode.leaves` returns at once."""


@dataclass(frozen=True)
class LeafStatus:
    """A leaf's place and whether a proof bundle is available for it yet.

    ``checkpoint_size`` is the size of the anchored checkpoint its bundle is made against
    (the latest anchored one), ``None`` while the leaf is pending.
    """

    index: int
    leaf_hash: bytes
    anchored: bool
    checkpoint_size: int | None


@dataclass(frozen=True)
class DisclosureAnswer:
    """The node's answer to a disclosure request: the stored response, logged on chain.

    ``created`` is false when the request had already been answered with this response.
    """

    stored: StoredDisclosureResponse
    created: bool


@dataclass(frozen=True)
class NodeConfig:
    """A platform node's settings.

    ``member_cache_ttl``: how long (seconds) a signer's membership read from the chain is
    reused before it is read again (a removal or key rotation takes effect within it);
    ``member_stale_limit``: how old an entry may be used while it is read again or the chain
    cannot be read; ``member_refresh_wait``: how long a submission waits for that read when
    the chain answered the previous one (then it goes on with the entry it has).
    ``chain_probe_interval`` / ``chain_status_max_age``: the chain is probed in the
    background this often (seconds) for ``/v1/health``; a status older than the max age (a
    probe stuck in the RPC retries) counts as the chain not answering.
    ``validation_threads``: how many submissions hash and verify signatures at once (the
    rest queue): bounding it keeps the writer and sealer threads their share of the GIL.
    ``confirmations``: how many blocks, the anchoring's own included, make an anchored
    checkpoint final (1: mined is final, right for the embedded chain and Besu QBFT).
    """

    platform: str
    store_path: Path
    shard: int = 0
    hash_name: str = "sm3"
    seal_interval: float = 0.2
    seal_size: int = 10_000
    max_batch: int = 10_000
    member_cache_ttl: float = 1.0
    member_stale_limit: float = 60.0
    member_refresh_wait: float = 1.0
    chain_probe_interval: float = 2.0
    chain_status_max_age: float = 15.0
    validation_threads: int = 2
    confirmations: int = 1

    def __post_init__(self) -> None:
        """Refuse settings no node can run with (``ValueError`` naming them)."""
        if self.max_batch < 1 or self.validation_threads < 1:
            raise ValueError("max_batch and validation_threads must be at least 1")
        if self.seal_interval <= 0 or self.seal_size < 1 or self.confirmations < 1:
            raise ValueError("seal_interval must be positive, seal_size and confirmations at "
                             "least 1")
        if not 0 < self.chain_probe_interval < self.chain_status_max_age:
            raise ValueError("need 0 < chain_probe_interval < chain_status_max_age, got "
                             f"{self.chain_probe_interval} and {self.chain_status_max_age}")
        if min(self.member_cache_ttl, self.member_stale_limit, self.member_refresh_wait) < 0:
            raise ValueError("member_cache_ttl, member_stale_limit and member_refresh_wait "
                             "must not be negative")


@dataclass
class _Pending:
    """One validated batch waiting for the writer."""

    leaves: tuple[Leaf, ...]
    leaf_hashes: tuple[bytes, ...]
    evidence: BatchEvidence
    received_at: float  # wall clock, stored with the batch
    started: float  # monotonic, when submit() was called (for the ack latency)
    done: threading.Event = field(default_factory=threading.Event)
    receipts: list[Receipt] | None = None
    error: BaseException | None = None


def _percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``samples`` by nearest rank; 0.0 when empty."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


class PlatformNode:
    """One platform's node: durable store, in-memory Merkle log, writer and sealer threads."""

    def __init__(self, config: NodeConfig, chain: LedgerChain, sm2_key: gmcrypto.SM2PrivateKey
                 ) -> None:
        """Open the store and rebuild the log from it; threads start with :meth:`start`.

        ``chain`` must be attached to the deployment and send as this platform's own
        account. Raises :class:`~ledger_node.errors.StoreCorrupted` /
        :class:`~ledger_node.errors.StoreMismatch` for a bad store, :class:`ChainError` if
        the chain has no deployment or account, ``ValueError`` for a bad configuration.
        """
        self.config = config
        self.platform = config.platform
        self.log_id = log_id_for(config.platform, config.shard)
        self.hash_name = config.hash_name
        self.chain = chain
        self.platform_address = chain.address
        self.deployment = chain.deployment
        self._key = sm2_key
        self._hasher = hasher_for(config.hash_name)
        self._store = SQLiteStore(config.store_path, platform=config.platform,
                                  log_id=self.log_id, hash_name=config.hash_name)
        try:
            self._log = self._store.load_log(self._hasher)
            self._latest_anchored = self._store.latest_checkpoint("anchored")
            rewrite_levels = False
            try:
                self._check_checkpoints()
            except StoreCorrupted:
                if not self._store.leaves_from_levels:
                    raise
                # the stored levels passed their CRCs yet give another root: distrust them,
                # rebuild from the leaf hashes (which must give the checkpoints' roots)
                _logger.warning("store %s: the stored Merkle levels do not give the "
                                "checkpoints' roots; rebuilding them from the leaf hashes",
                                config.store_path)
                self._log = self._store.load_log(self._hasher, use_levels=False)
                self._check_checkpoints()
                rewrite_levels = True
            self._store.save_levels(self._log, rewrite=rewrite_levels)
        except BaseException:
            self._store.close()
            raise
        self._log_lock = threading.RLock()
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._intake_open = False
        self._intake_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._members = StaleWhileRevalidateMembers(
            self._read_member, ttl=config.member_cache_ttl,
            stale_limit=config.member_stale_limit, refresh_wait=config.member_refresh_wait)
        self._chain_watch = ChainWatch(self._probe_chain, interval=config.chain_probe_interval,
                                       max_age=config.chain_status_max_age)
        self._cpu_slots = threading.BoundedSemaphore(config.validation_threads)
        self._metrics_lock = threading.Lock()
        self._counts = {
            "submissions": 0, "leaves": 0, "duplicates": 0, "rejected": 0, "commits": 0,
            "committed_batches": 0, "store_errors": 0,
        }
        self._acks: deque[tuple[int, float]] = deque()  # (log size after batch, ack time)
        self._ack_latency: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._anchor_latency: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._sealer = Sealer(
            store=self._store, chain=chain, key=sm2_key, platform=config.platform,
            log_id=self.log_id, hash_name=config.hash_name, head=self._head,
            on_anchored=self._anchored_cb,
            on_rolled_back=self._rolled_back_cb, interval=config.seal_interval,
            seal_size=config.seal_size, confirmations=config.confirmations,
        )
        self._started = False
        self._disclosure_lock = threading.Lock()

    def _check_checkpoints(self) -> None:
        """The latest anchored and any pending checkpoint must be roots of the stored leaves.

        Raises :class:`StoreCorrupted` otherwise (leaves lost or altered since they were
        checkpointed): a node must not serve or anchor roots its leaves do not produce.
        """
        latest = self._latest_anchored
        for stored in ([latest] if latest is not None else []) + self._store.pending_checkpoints():
            size = stored.tree_size
            if size > self._log.size:
                raise StoreCorrupted(
                    f"store {self.config.store_path} has a {stored.status} checkpoint of size "
                    f"{size} but only {self._log.size} leaves"
                )
            if not hmac.compare_digest(self._log.root(size), stored.root):
                raise StoreCorrupted(
                    f"store {self.config.store_path}: the stored leaves do not produce the root "
                    f"of the {stored.status} checkpoint of size {size}"
                )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Check this node's membership on chain, then start the writer and sealer threads.

        Raises :class:`Forbidden` if the chain account is not an active platform whose
        registered SM2 key is this node's key, or if another member owns this log.
        """
        if self._started:
            return
        me = self.chain.member(self.platform_address)
        owner = self.chain.log_owner(self.log_id)
        if me.role != Role.PLATFORM or not me.active:
            raise Forbidden(f"{self.platform_address} is not an active platform member")
        if me.public_key != self._key.public_key().raw:
            raise Forbidden(
                f"the SM2 key registered on chain for {self.platform_address} is not this "
                "node's key"
            )
        if owner is not None and owner != self.platform_address:
            raise Forbidden(f"log {self.log_id.hex()} is owned by {owner} on chain")
        self._writer = threading.Thread(target=self._write_loop, name="jointledger-writer",
                                        daemon=True)
        self._writer.start()
        self._sealer.start()
        self._chain_watch.start()
        with self._intake_lock:
            self._intake_open = True
        self._started = True

    def stop(self) -> None:
        """Stop intake, commit what is queued, try a final seal, close the store."""
        self._chain_watch.stop()
        if not self._started:
            self._store.close()
            return
        with self._intake_lock:
            self._intake_open = False
            self._queue.put(None)  # after every accepted batch: the writer drains, then exits
        if self._writer is not None:
            self._writer.join()
        self._sealer.stop(final_seal=True)
        self._store.close()
        self._started = False

    def __enter__(self) -> PlatformNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ intake

    def size(self) -> int:
        """The number of durably committed leaves in the log."""
        return self._log.size

    def submit(self, leaves: Sequence[Leaf], evidence: BatchEvidence) -> list[Receipt]:
        """Append a signed batch; return one receipt per leaf, in order, once durable.

        Returns only after the batch is committed to disk and appended to the log (group
        commit with concurrent callers). Raises :class:`InvalidLeaf` / :class:`InvalidBatch`
        for bad input (``evidence.digest`` not the batch's digest among it),
        :class:`Forbidden` if the signer is not this node's active platform member,
        :class:`NodeStopped` when the node is not running, and
        :class:`~ledger_node.errors.StoreCorrupted` if the commit failed; nothing is stored
        in any of these cases.
        """
        if not isinstance(evidence, BatchEvidence):
            raise InvalidBatch("evidence must be a BatchEvidence")
        return self._submit(leaves, evidence.signer, evidence.signature, evidence.digest)

    def submit_signed(self, leaves: Sequence[Leaf], *, signer: str,
                      signature: bytes) -> list[Receipt]:
        """:meth:`submit` of a batch as it arrived over HTTP: the batch digest is computed
        once, here, both to verify ``signature`` and to store as the evidence."""
        return self._submit(leaves, signer, signature, None)

    def _submit(self, leaves: Sequence[Leaf], signer: str, signature: bytes,
                claimed_digest: bytes | None) -> list[Receipt]:
        if not self._intake_open:
            raise NodeStopped("the node is not accepting submissions (not started or stopping)")
        try:
            pending = self._validate(leaves, signer, signature, claimed_digest)
        except LedgerError:
            with self._metrics_lock:
                self._counts["rejected"] += 1
            raise
        with self._intake_lock:
            if not self._intake_open:
                raise NodeStopped("the node is not accepting submissions (not started or stopping)")
            self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.receipts is not None
        return pending.receipts

    def _validate(self, leaves: Sequence[Leaf], signer: str, signature: bytes,
                  claimed_digest: bytes | None) -> _Pending:
        started, received = time.monotonic(), time.time()
        if isinstance(leaves, (str, bytes)) or not isinstance(leaves, Sequence):
            raise InvalidBatch("leaves must be a sequence of Leaf")
        if not 1 <= len(leaves) <= self.config.max_batch:
            raise InvalidBatch(
                f"a batch holds 1..{self.config.max_batch} leaves, got {len(leaves)}"
            )
        for i, leaf in enumerate(leaves):
            if not isinstance(leaf, Leaf):
                raise InvalidLeaf(f"leaves[{i}]", f"must be a Leaf, got {type(leaf).__name__}")
        with self._cpu_slots:
            return self._validate_slot(leaves, signer, signature, claimed_digest, started,
                                       received)

    def _validate_slot(self, leaves: Sequence[Leaf], signer: str, signature: bytes,
                       claimed_digest: bytes | None, started: float,
                       received: float) -> _Pending:
        datas = leaves_data(leaves)
        digest = batch_digest_from_data(self.log_id, datas)
        if claimed_digest is not None and (not isinstance(claimed_digest, bytes)
                                           or not hmac.compare_digest(claimed_digest, digest)):
            raise InvalidBatch(
                f"evidence digest does not match batch_digest(log_id {self.log_id.hex()[:16]}…,"
                f" leaves): expected {digest.hex()}"
            )
        if not isinstance(signer, str) or signer.lower() != self.platform_address.lower():
            raise Forbidden(
                f"signer {signer!r} may not submit to log {self.log_id.hex()[:16]}…: it "
                f"belongs to {self.platform} ({self.platform_address})"
            )
        member = self._member(self.platform_address)
        if member.role != Role.PLATFORM or not member.active:
            raise Forbidden(f"signer {signer} is not an active platform member on chain")
        try:
            public_key = gmcrypto.SM2PublicKey.from_raw(member.public_key)
            if not isinstance(signature, bytes):
                raise InvalidSignature("signature must be bytes")
            gmcrypto.verify(public_key, digest, signature)
        except (InvalidSignature, InvalidKey) as exc:
            raise InvalidBatch(
                f"batch signature does not verify with the SM2 key registered on chain for "
                f"{signer}: {exc}"
            ) from None
        evidence = BatchEvidence(signer=signer, digest=digest, signature=signature)
        return _Pending(tuple(leaves), self._leaf_hashes(datas), evidence, received, started)

    def _leaf_hashes(self, datas: Sequence[bytes]) -> tuple[bytes, ...]:
        bulk = getattr(self._hasher, "hash_leaves", None)
        if bulk is None:
            hash_leaf = self._hasher.hash_leaf
            return tuple(hash_leaf(d) for d in datas)
        joined = bytes(bulk(datas))
        d = self._hasher.digest_size
        return tuple(joined[i:i + d] for i in range(0, len(joined), d))

    def _member(self, address: str) -> Member:
        """The chain's membership record of ``address`` for intake (see :meth:`member`)."""
        return self._members.get(address)

    def member(self, address: str, *, ttl: float | None = None) -> Member:
        """The chain's membership record of ``address``, cached for ``member_cache_ttl``
        (or the caller's ``ttl``, e.g. the HTTP authenticator's own).

        An older entry is read again in the background (one read per address at a time);
        the caller waits for it at most ``member_refresh_wait`` and only if the chain
        answered the previous read, else it goes on with the entry it has, so intake from
        known signers goes on while the chain does not answer. A missing entry (a signer's
        first submission) or one older than ``member_stale_limit`` is read in the caller's
        thread and raises :class:`ChainError` if the chain does not answer.
        """
        return self._members.get(address, ttl=ttl)

    def _read_member(self, address: str) -> Member:
        return self.chain.member(address)

    # ------------------------------------------------------------------ chain status

    def chain_status(self, *, wait: float = 0.0) -> ChainStatus:
        """The chain as the background probe last saw it; with ``wait`` > 0 a fresh probe is
        asked for and waited for at most ``wait`` seconds (never behind a probe stuck
        longer). Never waits on the chain beyond that."""
        return self._chain_watch.status(wait=wait)

    def _probe_chain(self) -> ChainProbe:
        """Read the chain's head and this log's latest checkpoint on chain."""
        chain = self.chain
        block = chain.block_number()
        latest = chain.latest_checkpoint(self.log_id)
        return ChainProbe(chain.chain_id, block,
                          None if latest is None else latest.tree_size)

    # ------------------------------------------------------------------ the writer

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            group = [first]
            leaves = len(first.leaves)
            while leaves < _GROUP_LEAF_CAP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
                leaves += len(item.leaves)
            self._commit_group(group)

    def _commit_group(self, group: list[_Pending]) -> None:
        """Deduplicate, store in one transaction, extend the log, wake the callers."""
        try:
            existing = self._store.indexes_of(h for p in group for h in p.leaf_hashes)
            next_index = self._log.size
            new_batches: list[NewBatch] = []
            results: list[list[Receipt]] = []
            seen = dict(existing)
            new_hashes: list[bytes] = []
            for pending in group:
                if not existing and seen.keys().isdisjoint(pending.leaf_hashes) and len(
                    set(pending.leaf_hashes)
                ) == len(pending.leaf_hashes):
                    # the common case, all new: no per-leaf bookkeeping
                    first = next_index
                    next_index += len(pending.leaf_hashes)
                    seen.update(zip(pending.leaf_hashes, range(first, next_index), strict=True))
                    results.append([Receipt(i, h, False) for i, h in
                                    zip(range(first, next_index), pending.leaf_hashes,
                                        strict=True)])
                    new_batches.append(NewBatch(
                        pending.evidence, pending.received_at, tuple(range(first, next_index)),
                        pending.leaves, pending.leaf_hashes,
                    ))
                    new_hashes.extend(pending.leaf_hashes)
                    continue
                receipts: list[Receipt] = []
                fresh_leaves: list[Leaf] = []
                fresh_hashes: list[bytes] = []
                for leaf, leaf_hash in zip(pending.leaves, pending.leaf_hashes, strict=True):
                    index = seen.get(leaf_hash)
                    if index is not None:
                        receipts.append(Receipt(index, leaf_hash, True))
                        continue
                    seen[leaf_hash] = next_index
                    receipts.append(Receipt(next_index, leaf_hash, False))
                    fresh_leaves.append(leaf)
                    fresh_hashes.append(leaf_hash)
                    next_index += 1
                results.append(receipts)
                if fresh_leaves:
                    new_batches.append(NewBatch(
                        pending.evidence, pending.received_at,
                        tuple(r.index for r in receipts), tuple(fresh_leaves),
                        tuple(fresh_hashes),
                    ))
                    new_hashes.extend(fresh_hashes)
            self._store.append_batches(new_batches)
            with self._log_lock:
                self._log.extend_leaf_hashes(new_hashes)
        except BaseException as exc:  # the store refused: nobody is acknowledged
            with self._metrics_lock:
                self._counts["store_errors"] += 1
            for pending in group:
                pending.error = exc
                pending.done.set()
            return
        now = time.monotonic()
        with self._metrics_lock:
            self._counts["commits"] += 1
            self._counts["committed_batches"] += len(new_batches)
            self._counts["submissions"] += len(group)
            self._counts["leaves"] += len(new_hashes)
            self._counts["duplicates"] += sum(r.duplicate for rs in results for r in rs)
            for pending, receipts in zip(group, results, strict=True):
                self._ack_latency.append(now - pending.started)
                fresh = [r.index for r in receipts if not r.duplicate]
                if fresh:  # ack→anchored is measured per batch that brought new leaves
                    self._acks.append((max(fresh) + 1, now))
        self._sealer.notify(len(new_hashes))
        for pending, receipts in zip(group, results, strict=True):
            pending.receipts = receipts
            pending.done.set()
        self._save_levels()

    def _save_levels(self) -> None:
        """Persist the Merkle level chunks this commit completed, after the acknowledgements.

        They only speed the next start up (it rebuilds what is missing), so a failure is
        logged, not raised: the leaves are already durable.
        """
        try:
            self._store.save_levels(self._log)
        except (StoreCorrupted, NodeStopped) as exc:
            _logger.warning("store %s: Merkle levels not saved: %s", self.config.store_path, exc)

    # ------------------------------------------------------------------ the log

    def _head(self) -> TreeHead:
        with self._log_lock:
            return self._log.head()

    def _anchored_cb(self, stored: StoredCheckpoint) -> None:
        now = time.monotonic()
        with self._metrics_lock:
            self._latest_anchored = stored
            while self._acks and self._acks[0][0] <= stored.tree_size:
                _, acked = self._acks.popleft()
                self._anchor_latency.append(now - acked)

    def _rolled_back_cb(self, still_anchored: StoredCheckpoint | None) -> None:
        # the chain lost the anchorings above this one: bundles and statuses fall back to
        # it (later leaves are pending again) until the sealer has anchored them again
        with self._metrics_lock:
            self._latest_anchored = still_anchored

    def find(self, leaf_hash: bytes) -> int | None:
        """The index of the committed leaf with ``leaf_hash``, or ``None``."""
        if not isinstance(leaf_hash, bytes) or len(leaf_hash) != self._hasher.digest_size:
            return None
        index = self._store.index_of(leaf_hash)
        return index if index is not None and index < self._log.size else None

    def _check_index(self, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or not (
            0 <= index < self._log.size
        ):
            raise UnknownLeaf(f"no leaf at index {index!r} (log size {self._log.size})")

    def leaf(self, index: int) -> Leaf:
        """The leaf at ``index``; raise :class:`UnknownLeaf` if there is none."""
        self._check_index(index)
        return self._store.leaf(index)

    def leaves(self, start: int, end: int, *, limit: int = MAX_LEAF_RANGE) -> list[Leaf]:
        """The committed leaves ``[start, end)`` with their escrows, in one store read.

        For the regulator, who rebuilds the log's roots and opens the escrows. Raises
        :class:`InvalidLeafRange` unless ``0 <= start < end`` and ``end - start <= limit``,
        and :class:`LeafRangeUnavailable` (an :class:`UnknownLeaf`) if ``end`` is past the
        log's size.
        """
        for name, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidLeafRange(f"{name} must be an integer, got {value!r}")
        if start < 0 or end <= start or end - start > limit:
            raise InvalidLeafRange(
                f"a range [start, end) holds 1..{limit} leaves from start >= 0, "
                f"got [{start}, {end})"
            )
        size = self._log.size
        if end > size:
            raise LeafRangeUnavailable(start, end, size)
        return self._store.leaves(start, end)

    def leaf_status(self, index: int) -> LeafStatus:
        """Where leaf ``index`` is and whether it is anchored; raise :class:`UnknownLeaf`."""
        self._check_index(index)
        with self._log_lock:
            leaf_hash = self._log.leaf_hash(index)
        latest = self._latest_anchored
        anchored = latest is not None and index < latest.tree_size
        return LeafStatus(index, leaf_hash, anchored,
                          latest.tree_size if anchored and latest is not None else None)

    def proof_bundle(self, index: int) -> ProofBundle | None:
        """The proof bundle of leaf ``index`` against the latest anchored checkpoint.

        Returns ``None`` while the leaf is pending (not below an anchored checkpoint).
        Raises :class:`UnknownLeaf` if there is no such leaf.
        """
        self._check_index(index)
        latest = self._latest_anchored
        if latest is None or index >= latest.tree_size:
            return None
        assert latest.tx_hash is not None and latest.block_number is not None
        with self._log_lock:
            proof = self._log.inclusion_proof(index, latest.tree_size)
        leaf = self._store.leaf(index)
        deployment = self.deployment
        return ProofBundle(
            hash_name=self.hash_name,
            leaf=LeafSummary.of(leaf),
            index=index,
            tree_size=latest.tree_size,
            path=proof.path,
            checkpoint=latest.signed(),
            anchor=ChainAnchor.of(deployment, latest.tx_hash, latest.block_number),
        )

    def checkpoints(self, *, after: int = 0, limit: int | None = None) -> list[StoredCheckpoint]:
        """The anchored checkpoints of this log, oldest first, with transaction and block.

        Only those with ``tree_size > after``, at most ``limit`` of them (default: all).
        """
        return self._store.checkpoints("anchored", after=after, limit=limit)

    def checkpoint(self, tree_size: int) -> StoredCheckpoint:
        """The anchored checkpoint of ``tree_size``; raise :class:`UnknownCheckpoint`."""
        try:
            stored = self._store.checkpoint_at(tree_size)
        except UnknownCheckpoint:
            stored = None
        if stored is None or not stored.anchored:
            raise UnknownCheckpoint(
                f"no anchored checkpoint of size {tree_size} in log {self.log_id.hex()[:16]}…"
            )
        return stored

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The latest anchored checkpoint, or ``None`` before the first."""
        return self._latest_anchored

    def consistency_proof(self, size1: int, size2: int) -> ConsistencyProof:
        """The RFC 9162 consistency proof between two anchored checkpoints of this log.

        Raises :class:`InvalidCheckpoint` unless ``size1 <= size2`` and
        :class:`UnknownCheckpoint` if either size is not an anchored checkpoint's.
        """
        for name, size in (("size1", size1), ("size2", size2)):
            if isinstance(size, bool) or not isinstance(size, int):
                raise InvalidCheckpoint(f"{name} must be an integer, got {size!r}")
        if size1 > size2:
            raise InvalidCheckpoint(f"size1 {size1} is larger than size2 {size2}")
        for size in (size1, size2):
            self.checkpoint(size)
        with self._log_lock:
            return self._log.consistency_proof(size1, size2)

    # ------------------------------------------------------------------ disclosures

    def disclosure_request(self, request_id: int) -> DisclosureRequest:
        """Disclosure request ``request_id`` as the chain holds it.

        Raises :class:`UnknownDisclosureRequest` if the chain has none with that id.
        """
        if isinstance(request_id, bool) or not isinstance(request_id, int) or not (
            1 <= request_id < 2**64
        ):
            raise UnknownDisclosureRequest(request_id)
        try:
            return self.chain.disclosure_request(request_id)
        except ContractRevert as exc:
            if exc.name == "Disclosure_UnknownRequest":
                raise UnknownDisclosureRequest(request_id) from None
            raise

    def disclosure_requests(
        self,
    ) -> list[tuple[DisclosureRequest, StoredDisclosureResponse | None]]:
        """Every request addressed to this platform on chain, oldest first, each with the
        response stored here (``None`` if not answered)."""
        events = self.chain.events("DisclosureRequested", platform=self.platform_address)
        requests = [self.chain.disclosure_request(int(e.args["requestId"])) for e in events]
        stored = {s.request_id: s for s in self._store.disclosure_responses()}
        return [(r, stored.get(r.id)) for r in sorted(requests, key=lambda r: r.id)]

    def answer_disclosure(self, request_id: int, response: bytes, *,
                          index: int | None = None) -> DisclosureAnswer:
        """Store a sealed answer to a disclosure request, then log its digest on chain.

        The response (``ledger_node.protocol.disclosure``) comes from the platform's own system,
        which holds the openings; this node never sees a record. Checks, in order: a
        different response already stored or logged on chain (:class:`DisclosureConflict`),
        the request exists (:class:`UnknownDisclosureRequest`) and is addressed to this
        platform (:class:`DisclosureNotAddressed`), the response's form and that it is
        sealed for the requesting regulator's registered key
        (:class:`InvalidDisclosureResponse`; :class:`Forbidden` if that regulator is no
        longer active), and the requested commitment is a leaf of this log
        (:class:`CommitmentNotInLog`; ``index`` is a hint where, else the log is scanned).
        The response is stored durably before ``fulfilDisclosure(request_id, SM3(response))``
        is sent from this platform's account. Answering again with the same bytes returns
        the stored answer (``created`` false), so a retry after a lost answer or a crash
        is safe.
        """
        digest = response_digest(response)
        with self._disclosure_lock:
            stored = self._store.disclosure_response(request_id)
            if stored is not None and stored.digest != digest:
                raise DisclosureConflict(
                    f"disclosure request {request_id} was already answered with a response of "
                    f"digest {stored.digest.hex()}"
                )
            if stored is not None and stored.fulfilled:
                return DisclosureAnswer(stored, created=False)
            request = self.disclosure_request(request_id)
            if request.platform.lower() != self.platform_address.lower():
                raise DisclosureNotAddressed(
                    f"disclosure request {request_id} is addressed to {request.platform}, not "
                    f"to {self.platform} ({self.platform_address})"
                )
            if request.fulfilled and request.response_digest != digest:
                raise DisclosureConflict(
                    f"disclosure request {request_id} was already fulfilled on chain with "
                    f"digest {request.response_digest.hex()}"
                )
            if stored is None:
                self._check_sealed_for(request, response)
                leaf_index = self._leaf_of_commitment(request, index)
                stored = self._store.save_disclosure_response(request_id, leaf_index, response,
                                                              digest, time.time())
            tx_hash, block = self._fulfil(request, digest)
            stored = self._store.mark_disclosure_fulfilled(request_id, tx_hash, block,
                                                           time.time())
            return DisclosureAnswer(stored, created=True)

    def disclosure_response(self, request_id: int) -> StoredDisclosureResponse:
        """The answer to ``request_id`` stored here and logged on chain.

        Raises :class:`DisclosureNotAnswered` if there is none (yet).
        """
        stored = self._store.disclosure_response(request_id)
        if stored is None:
            raise DisclosureNotAnswered(
                f"no answer to disclosure request {request_id} is stored here")
        if not stored.fulfilled:
            raise DisclosureNotAnswered(
                f"the answer to disclosure request {request_id} is not logged on chain yet")
        return stored

    def _check_sealed_for(self, request: DisclosureRequest, response: bytes) -> None:
        fingerprint = response_fingerprint(response)
        regulator = self.chain.member(request.regulator)
        if regulator.role is not Role.REGULATOR or not regulator.active:
            raise Forbidden(
                f"disclosure request {request.id} was made by {request.regulator}, which is no "
                "longer an active regulator: it is not answered"
            )
        try:
            expected = key_fingerprint(gmcrypto.SM2PublicKey.from_raw(regulator.public_key))
        except InvalidKey as exc:  # pragma: no cover - the contract stores valid keys
            raise ChainError(f"regulator {regulator.name}'s key on chain is not SM2: {exc}"
                             ) from None
        if fingerprint != expected:
            raise InvalidDisclosureResponse(
                f"sealed for the key with fingerprint {fingerprint.hex()}, but "
                f"{regulator.name}'s registered key has fingerprint {expected.hex()}"
            )

    def _leaf_of_commitment(self, request: DisclosureRequest, hint: int | None) -> int:
        size = self._log.size
        if (hint is not None and not isinstance(hint, bool) and isinstance(hint, int)
                and 0 <= hint < size and self._store.leaf(hint).commitment == request.commitment):
            return hint
        index = self._store.index_of_commitment(request.commitment)
        if index is None or index >= size:
            raise CommitmentNotInLog(
                f"disclosure request {request.id} names commitment {request.commitment.hex()}, "
                f"which is not a leaf of {self.platform}'s log"
            )
        return index

    def _fulfil(self, request: DisclosureRequest, digest: bytes) -> tuple[bytes, int]:
        """Send ``fulfilDisclosure`` unless the chain already holds ``digest`` for the
        request; return the fulfilling transaction and block."""
        if not request.fulfilled:
            try:
                outcome = self.chain.fulfil_disclosure(request.id, digest)
                return outcome.tx_hash, outcome.block_number
            except ContractRevert as exc:
                if exc.name != "Disclosure_AlreadyFulfilled":
                    raise
            request = self.disclosure_request(request.id)
            if request.response_digest != digest:
                raise DisclosureConflict(
                    f"disclosure request {request.id} was fulfilled on chain meanwhile with "
                    f"digest {request.response_digest.hex()}"
                )
        events = self.chain.events("DisclosureFulfilled", request.fulfilled_block,
                                   to_block=request.fulfilled_block, requestId=request.id)
        if not events:
            raise ChainError(f"disclosure request {request.id} is fulfilled on chain but no "
                             f"DisclosureFulfilled event is in block {request.fulfilled_block}")
        return events[-1].tx_hash, events[-1].block_number

    # ------------------------------------------------------------------ metrics

    def metrics(self) -> dict[str, float]:
        """Counters and latency summaries (seconds) for ``/metrics``."""
        sealer = self._sealer.counters()
        with self._metrics_lock:
            counts = dict(self._counts)
            acks = list(self._ack_latency)
            anchors = list(self._anchor_latency)
        latest = self._latest_anchored
        out: dict[str, float] = {k: float(v) for k, v in counts.items()}
        out.update({
            "log_size": float(self._log.size),
            "checkpoints_signed": float(sealer.checkpoints_signed),
            "checkpoints_anchored": float(sealer.checkpoints_anchored),
            "anchoring_failures": float(sealer.anchoring_failures),
            "anchoring_failing": 1.0 if sealer.failing else 0.0,
            "anchored_size": float(latest.tree_size if latest is not None else 0),
            "final_size": float(sealer.final_size),
            "lost_anchorings": float(sealer.lost_anchorings),
            "member_read_failures": float(self._members.failed_reads),
            "chain_probe_failures": float(self._chain_watch.snapshot().failures),
            "pending_leaves": float(self._log.size - (latest.tree_size if latest else 0)),
            "ack_latency_p50_seconds": _percentile(acks, 0.50),
            "ack_latency_p99_seconds": _percentile(acks, 0.99),
            "anchor_latency_p50_seconds": _percentile(anchors, 0.50),
            "anchor_latency_p99_seconds": _percentile(anchors, 0.99),
            "anchor_latency_samples": float(len(anchors)),
        })
        return out

    def sealer_status(self) -> SealerCounters:
        """The sealer's counters, whether it is failing now and its latest error message."""
        return self._sealer.counters()

    def anchor_latencies(self) -> list[float]:
        """The recorded ack→anchored latencies (seconds), one per committed batch group."""
        with self._metrics_lock:
            return list(self._anchor_latency)

    def ack_latencies(self) -> list[float]:
        """The recorded submit→ack latencies (seconds), one per submission."""
        with self._metrics_lock:
            return list(self._ack_latency)

    @property
    def store(self) -> SQLiteStore:
        """The node's store (read access for tools and tests)."""
        return self._store


    @property
    def sm2_key(self) -> gmcrypto.SM2PrivateKey:
        """The platform's SM2 private key the node signs checkpoints with (it also opens the
        platform's copy of the risk-device list key)."""
        return self._key
