"""The platform node without HTTP: one platform's log, composed of parts that each do one job.

:class:`PlatformNode` owns one platform's log (PROTOCOL §5, §9, §10). It opens the store,
rebuilds the in-memory :class:`~ledger_node.log.merkle.MerkleLog` from it, checks its
membership on chain at start and wires the parts, which share the store, the log and its
lock:

* :class:`~ledger_node.platform.intake.Intake` validates a signed batch in the caller's
  thread (size, digest, the platform's SM2 signature with the key registered on chain, the
  signer being this node's own active platform member), queues it and blocks until it is
  committed; it also keeps the membership cache.
* :class:`~ledger_node.platform.writer.GroupWriter`, the single writer thread, drains
  everything queued into ONE SQLite transaction (one fsync: group commit), then appends the
  new leaf hashes to the log and wakes the callers. An acknowledgement (returned receipts)
  therefore means: on disk, in the log, and will be anchored. A leaf already stored (same
  leaf hash), earlier in the same batch or in a batch committed in the same group, gets the
  existing index with ``duplicate=True`` and is not stored again.
* The :class:`~ledger_node.platform.sealer.Sealer` anchors signed checkpoints of the head;
  :class:`~ledger_node.platform.log_queries.LogQueries` serves leaves, statuses, batch
  evidence and proof bundles against the latest anchored checkpoint only, and checkpoints.
* :class:`~ledger_node.platform.disclosures.DisclosureDesk` answers regulators' disclosure
  requests; :class:`~ledger_node.platform.metrics.NodeMetrics` counts for ``/metrics``.
* :mod:`~ledger_node.platform.integrity` keeps damage in: the tree is checked against the
  roots the log signed when the store opens and against the chain's anchored root at
  :meth:`PlatformNode.start` and at each reconciliation; every leaf row is checked on its way
  out. A store behind the chain, or a damaged row found, stops intake
  (:class:`~ledger_node.platform.integrity.IntakeHalt`) until the operator repairs it.

The node's public methods are the whole interface (the HTTP routes use nothing else): the
store and the SM2 key stay inside; the node builds the risk-device list copy its key opens.
"""

from __future__ import annotations

import hmac
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ledger_node.chain.adapter import (
    AnchoredCheckpoint,
    DisclosureRequest,
    LedgerChain,
    Member,
    Role,
)
from ledger_node.crypto import gmcrypto
from ledger_node.errors import (
    ContractRevert,
    Forbidden,
    StoreBehindChain,
    StoreCorrupted,
    TreeMismatch,
)
from ledger_node.log.checkpoint import log_id_for
from ledger_node.log.leaf import Leaf, LeafSummary, Receipt
from ledger_node.log.merkle import ConsistencyProof, MerkleLog, TreeHead, hasher_for
from ledger_node.platform.chain_watch import ChainProbe, ChainStatus, ChainWatch
from ledger_node.platform.disclosures import DisclosureAnswer, DisclosureDesk
from ledger_node.platform.intake import Intake
from ledger_node.platform.integrity import IntakeHalt, LeafChecker, TrustedRoot, check_tree
from ledger_node.platform.log_queries import MAX_LEAF_RANGE, LeafStatus, LogQueries
from ledger_node.platform.metrics import NodeMetrics
from ledger_node.platform.sealer import Sealer, SealerCounters
from ledger_node.platform.store import (
    LEVEL_CHUNK,
    SQLiteStore,
    StoredBatch,
    StoredCheckpoint,
    StoredDisclosureResponse,
)
from ledger_node.platform.writer import GroupWriter, WriteQueue
from ledger_node.protocol.auth import BatchEvidence
from ledger_node.protocol.bundle import ProofBundle
from ledger_node.protocol.risklist import RiskList

__all__ = [
    "MAX_LEAF_RANGE",
    "BatchEvidence",
    "DisclosureAnswer",
    "LeafStatus",
    "NodeConfig",
    "PlatformNode",
    "Receipt",
    "StoredCheckpoint",
    "StoredDisclosureResponse",
]

_logger = logging.getLogger(__name__)


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
        self._log_lock = threading.RLock()
        self._halt = IntakeHalt()
        try:
            self._log = self._open_log()
        except BaseException:
            self._store.close()
            raise
        latest_anchored = self._store.latest_checkpoint("anchored")
        self._checker = LeafChecker(name=str(config.store_path), hasher=self._hasher,
                                    tree=self._log, tree_lock=self._log_lock,
                                    on_damage=self._halt.halt)
        self._queue: WriteQueue = queue.Queue()  # intake → writer
        self._metrics = NodeMetrics()
        self._log_queries = LogQueries(
            store=self._store, log=self._log, log_lock=self._log_lock, hasher=self._hasher,
            hash_name=config.hash_name, log_id=self.log_id, deployment=self.deployment,
            latest_anchored=latest_anchored, checker=self._checker)
        self._intake = Intake(
            platform=config.platform, log_id=self.log_id, chain=chain, hasher=self._hasher,
            work=self._queue, metrics=self._metrics, max_batch=config.max_batch,
            validation_threads=config.validation_threads,
            member_cache_ttl=config.member_cache_ttl,
            member_stale_limit=config.member_stale_limit,
            member_refresh_wait=config.member_refresh_wait, halt=self._halt)
        self._chain_watch = ChainWatch(self._probe_chain, interval=config.chain_probe_interval,
                                       max_age=config.chain_status_max_age)
        self._sealer = Sealer(
            store=self._store, chain=chain, key=sm2_key, platform=config.platform,
            log_id=self.log_id, hash_name=config.hash_name, head=self._head,
            on_anchored=self._anchored_cb,
            on_rolled_back=self._rolled_back_cb, interval=config.seal_interval,
            seal_size=config.seal_size, confirmations=config.confirmations,
            on_chain=self._compare_with_chain, halt=self._halt,
        )
        self._writer = GroupWriter(
            work=self._queue, store=self._store, log=self._log, log_lock=self._log_lock,
            metrics=self._metrics, on_committed=self._sealer.notify,
            store_path=config.store_path, halt=self._halt, checker=self._checker)
        self._disclosures = DisclosureDesk(platform=config.platform, chain=chain,
                                           store=self._store, log_size=self._log_queries.size,
                                           leaf=self._log_queries.leaf)
        self._risk_list = RiskList(chain, sm2_key)
        self._started = False

    # ------------------------------------------------------------------ integrity at open

    def _open_log(self) -> MerkleLog:
        """The log of the stored leaves, checked before anything is served.

        The tree is resumed from the stored levels and must give the root of the latest
        anchored checkpoint and of every pending (signed) one: O(log n) digests each, never a
        rebuild. A mismatch is located by descending the stored levels; when the log came
        from stored levels it is rebuilt once from the leaf hashes (the levels are a cache)
        and checked again. Then the rows of the last, incomplete level chunk (fewer than
        :data:`LEVEL_CHUNK`: a whole store under that size) are checked row by row.
        Raises :class:`TreeMismatch` naming the first bad index, or
        :class:`~ledger_node.errors.LeafDamaged`: the node does not start.
        """
        store, name = self._store, str(self.config.store_path)
        log = store.load_log(self._hasher)
        trusted = self._signed_roots()
        rewrite_levels = False
        try:
            check_tree(log, store, trusted, name=name)
        except TreeMismatch as exc:
            if not store.leaves_from_levels:
                raise
            # levels that passed their CRCs yet give another root: distrust them, rebuild
            # from the leaf hashes (which must give the signed roots)
            _logger.warning("store %s: the stored Merkle levels do not give the checkpoints' "
                            "roots (%s); rebuilding them from the leaf hashes", name, exc)
            log = store.load_log(self._hasher, use_levels=False)
            check_tree(log, store, trusted, name=name)
            rewrite_levels = True
        last_chunk = log.size - log.size % LEVEL_CHUNK
        LeafChecker(name=name, hasher=self._hasher, tree=log).check(
            store.leaf_rows(last_chunk, log.size))
        store.save_levels(log, rewrite=rewrite_levels)
        return log

    def _signed_roots(self) -> list[TrustedRoot]:
        """The roots this log signed that the tree must give: the latest anchored checkpoint
        and every pending one (the latest signed is one of them)."""
        latest = self._store.latest_checkpoint("anchored")
        return [TrustedRoot(cp.tree_size, cp.root, f"the {cp.status} checkpoint")
                for cp in ([latest] if latest is not None else [])
                + self._store.pending_checkpoints()]

    def _compare_with_chain(self, on_chain: AnchoredCheckpoint | None, *,
                            at_start: bool = False) -> None:
        """Compare the chain's latest anchored checkpoint of this log with the tree.

        The chain past the store's size (leaves it anchored are missing here), or the store
        holding that size with another root, stops intake (:class:`StoreBehindChain`, HTTP
        503 ``store-behind-chain``) until the operator restores the store. At start the
        second case raises :class:`TreeMismatch` naming the first bad index instead: the
        node does not start on a store whose leaves are not the chain's.
        """
        if on_chain is None:
            return
        chain_size = on_chain.tree_size
        with self._log_lock:
            size = self._log.size
            root = self._log.root(chain_size) if chain_size <= size else None
        where = f"store {self.config.store_path}"
        if root is None:
            disagrees = at_start and not self._prefix_of_chain()
            self._halt.halt(StoreBehindChain(
                f"{where} holds {size} leaves but the chain's latest anchored checkpoint of "
                f"log {self.log_id.hex()} is at size {chain_size}"
                + (" and the store's anchored checkpoints are not the chain's" if disagrees
                   else "") + ": acknowledged leaves were lost. Nothing is acknowledged "
                "until they are restored (jointledger fsck STORE --config CONFIG "
                "--repair-from REGULATOR_URL)", chain_size=chain_size, store_size=size,
                disagrees=disagrees))
        elif not hmac.compare_digest(root, on_chain.root):
            if at_start:
                with self._log_lock:
                    check_tree(self._log, self._store, [TrustedRoot(
                        chain_size, on_chain.root,
                        "the chain's latest anchored checkpoint")], name=str(
                            self.config.store_path))
            self._halt.halt(StoreBehindChain(
                f"{where} holds {size} leaves, but its root at size {chain_size} is not the "
                f"root the chain anchored there for log {self.log_id.hex()}: the store is not "
                "the chain's log. Nothing is acknowledged until it is repaired (jointledger "
                "fsck STORE --config CONFIG --repair-from REGULATOR_URL)",
                chain_size=chain_size, store_size=size, disagrees=True))

    def _prefix_of_chain(self) -> bool:
        """Whether the store's latest anchored checkpoint is on chain with the same root."""
        latest = self._store.latest_checkpoint("anchored")
        if latest is None:
            return True
        try:
            there = self.chain.checkpoint_at(self.log_id, latest.tree_size)
        except ContractRevert:
            return False
        return hmac.compare_digest(there.root, latest.root)

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
        self._compare_with_chain(self.chain.latest_checkpoint(self.log_id), at_start=True)
        self._writer.start()
        self._sealer.start()
        self._chain_watch.start()
        self._intake.open()
        self._started = True

    def stop(self) -> None:
        """Stop intake, commit what is queued, try a final seal, close the store."""
        self._chain_watch.stop()
        if not self._started:
            self._store.close()
            return
        self._intake.close()  # queues the writer's stop behind every accepted batch
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

    def submit(self, leaves: Sequence[Leaf], evidence: BatchEvidence) -> list[Receipt]:
        """Append a signed batch; return one receipt per leaf, in order, once durable
        (:meth:`Intake.submit <ledger_node.platform.intake.Intake.submit>`)."""
        return self._intake.submit(leaves, evidence)

    def submit_signed(self, leaves: Sequence[Leaf], *, signer: str,
                      signature: bytes) -> list[Receipt]:
        """:meth:`submit` of a batch as it arrived over HTTP: the batch digest is computed
        once, both to verify ``signature`` and to store as the evidence."""
        return self._intake.submit_signed(leaves, signer=signer, signature=signature)

    def member(self, address: str, *, ttl: float | None = None) -> Member:
        """The chain's membership record of ``address``, cached for ``member_cache_ttl``
        or the caller's ``ttl`` and stale while read again
        (:meth:`Intake.member <ledger_node.platform.intake.Intake.member>`)."""
        return self._intake.member(address, ttl=ttl)

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

    # ------------------------------------------------------------------ the log

    def _head(self) -> TreeHead:
        """The log's current head, for the sealer."""
        return self._log_queries.head()

    def _anchored_cb(self, stored: StoredCheckpoint) -> None:
        self._log_queries.anchored(stored)
        self._metrics.anchored(stored.tree_size)

    def _rolled_back_cb(self, still_anchored: StoredCheckpoint | None) -> None:
        self._log_queries.rolled_back(still_anchored)

    def size(self) -> int:
        """The number of durably committed leaves in the log."""
        return self._log_queries.size()

    def find(self, leaf_hash: bytes) -> int | None:
        """The index of the committed leaf with ``leaf_hash``, or ``None``."""
        return self._log_queries.find(leaf_hash)

    def leaf(self, index: int) -> Leaf:
        """The leaf at ``index``; raise :class:`UnknownLeaf` if there is none."""
        return self._log_queries.leaf(index)

    def leaf_summary(self, index: int) -> LeafSummary:
        """The summary of leaf ``index`` (what its leaf hash is made of), checked."""
        return self._log_queries.summary(index)

    def leaves(self, start: int, end: int, *, limit: int = MAX_LEAF_RANGE) -> list[Leaf]:
        """The committed leaves ``[start, end)`` with their escrows, at most ``limit``,
        each checked (:meth:`LogQueries.leaves
        <ledger_node.platform.log_queries.LogQueries.leaves>`)."""
        return self._log_queries.leaves(start, end, limit=limit)

    def summaries(self, start: int, end: int, *,
                  limit: int = MAX_LEAF_RANGE) -> list[LeafSummary]:
        """The summaries of the committed leaves ``[start, end)``, each checked."""
        return self._log_queries.summaries(start, end, limit=limit)

    def leaf_batch(self, index: int) -> StoredBatch:
        """The signed batch leaf ``index`` arrived in (its non-repudiation evidence);
        raise :class:`UnknownLeaf` if there is no such leaf."""
        return self._log_queries.leaf_batch(index)

    def leaf_status(self, index: int) -> LeafStatus:
        """Where leaf ``index`` is and whether it is anchored; raise :class:`UnknownLeaf`."""
        return self._log_queries.leaf_status(index)

    def proof_bundle(self, index: int) -> ProofBundle | None:
        """The proof bundle of leaf ``index`` against the latest anchored checkpoint,
        ``None`` while it is pending; raise :class:`UnknownLeaf` if there is no such leaf."""
        return self._log_queries.proof_bundle(index)

    def checkpoints(self, *, after: int = 0, limit: int | None = None) -> list[StoredCheckpoint]:
        """The anchored checkpoints with ``tree_size > after``, oldest first, at most
        ``limit`` of them (default: all), with transaction and block."""
        return self._log_queries.checkpoints(after=after, limit=limit)

    def checkpoint(self, tree_size: int) -> StoredCheckpoint:
        """The anchored checkpoint of ``tree_size``; raise :class:`UnknownCheckpoint`."""
        return self._log_queries.checkpoint(tree_size)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The latest anchored checkpoint, or ``None`` before the first."""
        return self._log_queries.latest_checkpoint()

    def consistency_proof(self, size1: int, size2: int) -> ConsistencyProof:
        """The RFC 9162 consistency proof between two anchored checkpoints of this log
        (:class:`InvalidCheckpoint`, :class:`UnknownCheckpoint`)."""
        return self._log_queries.consistency_proof(size1, size2)

    # ------------------------------------------------------------------ disclosures

    def disclosure_request(self, request_id: int) -> DisclosureRequest:
        """Disclosure request ``request_id`` as the chain holds it
        (:class:`UnknownDisclosureRequest` if there is none)."""
        return self._disclosures.disclosure_request(request_id)

    def disclosure_requests(
        self,
    ) -> list[tuple[DisclosureRequest, StoredDisclosureResponse | None]]:
        """Every request addressed to this platform on chain, oldest first, each with the
        response stored here (``None`` if not answered)."""
        return self._disclosures.disclosure_requests()

    def answer_disclosure(self, request_id: int, response: bytes, *,
                          index: int | None = None) -> DisclosureAnswer:
        """Store a sealed answer to a disclosure request, then log its digest on chain
        (:meth:`DisclosureDesk.answer_disclosure
        <ledger_node.platform.disclosures.DisclosureDesk.answer_disclosure>`)."""
        return self._disclosures.answer_disclosure(request_id, response, index=index)

    def disclosure_response(self, request_id: int) -> StoredDisclosureResponse:
        """The answer to ``request_id`` stored here and logged on chain
        (:class:`DisclosureNotAnswered` if there is none yet)."""
        return self._disclosures.disclosure_response(request_id)

    # ------------------------------------------------------------------ the risk-device list

    def risk_list(self) -> RiskList:
        """This platform's copy of the shared risk-device list, built once by the node from
        its chain and its SM2 key (which opens the list-key ring delivered to the platform),
        so that the key never leaves the node. Not synced here: callers sync it as fresh as
        they need (:meth:`RiskList.sync_if_older`)."""
        return self._risk_list

    # ------------------------------------------------------------------ metrics

    def metrics(self) -> dict[str, float]:
        """Counters and latency summaries (seconds) for ``/metrics``."""
        return self._metrics.report(
            sealer=self._sealer.counters(), log_size=self._log_queries.size(),
            latest=self._log_queries.latest_checkpoint(),
            member_read_failures=self._intake.member_read_failures,
            chain_probe_failures=self._chain_watch.snapshot().failures)

    def intake_halted(self) -> StoreBehindChain | StoreCorrupted | None:
        """Why the node acknowledges nothing (the store is behind the chain or a damaged
        row was found), or ``None`` while it does (for health)."""
        return self._halt.reason

    def sealer_status(self) -> SealerCounters:
        """The sealer's counters, whether it is failing now and its latest error message."""
        return self._sealer.counters()

    def anchor_latencies(self) -> list[float]:
        """The recorded ack→anchored latencies (seconds), one per committed batch group."""
        return self._metrics.anchor_latencies()

    def ack_latencies(self) -> list[float]:
        """The recorded submit→ack latencies (seconds), one per submission."""
        return self._metrics.ack_latencies()

    # ------------------------------------------------------------------ test seam

    @property
    def store_for_tests(self) -> SQLiteStore:
        """Test seam: the node's open store, for tests that inspect it or inject a fault.

        Routes and tools use the node's methods (tests/test_architecture.py keeps the HTTP
        layer off this).
        """
        return self._store
