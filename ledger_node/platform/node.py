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

from ledger_node.chain.adapter import DisclosureRequest, LedgerChain, Member, Role
from ledger_node.crypto import gmcrypto
from ledger_node.errors import Forbidden, StoreCorrupted
from ledger_node.log.checkpoint import log_id_for
from ledger_node.log.leaf import Leaf, Receipt
from ledger_node.log.merkle import ConsistencyProof, TreeHead, hasher_for
from ledger_node.platform.chain_watch import ChainProbe, ChainStatus, ChainWatch
from ledger_node.platform.disclosures import DisclosureAnswer, DisclosureDesk
from ledger_node.platform.intake import Intake
from ledger_node.platform.log_queries import MAX_LEAF_RANGE, LeafStatus, LogQueries
from ledger_node.platform.metrics import NodeMetrics
from ledger_node.platform.sealer import Sealer, SealerCounters
from ledger_node.platform.store import (
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
        try:
            self._log = self._store.load_log(self._hasher)
            latest_anchored = self._store.latest_checkpoint("anchored")
            rewrite_levels = False
            try:
                self._check_checkpoints(latest_anchored)
            except StoreCorrupted:
                if not self._store.leaves_from_levels:
                    raise
                # the stored levels passed their CRCs yet give another root: distrust them,
                # rebuild from the leaf hashes (which must give the checkpoints' roots)
                _logger.warning("store %s: the stored Merkle levels do not give the "
                                "checkpoints' roots; rebuilding them from the leaf hashes",
                                config.store_path)
                self._log = self._store.load_log(self._hasher, use_levels=False)
                self._check_checkpoints(latest_anchored)
                rewrite_levels = True
            self._store.save_levels(self._log, rewrite=rewrite_levels)
        except BaseException:
            self._store.close()
            raise
        self._log_lock = threading.RLock()
        self._queue: WriteQueue = queue.Queue()  # intake → writer
        self._metrics = NodeMetrics()
        self._log_queries = LogQueries(
            store=self._store, log=self._log, log_lock=self._log_lock, hasher=self._hasher,
            hash_name=config.hash_name, log_id=self.log_id, deployment=self.deployment,
            latest_anchored=latest_anchored)
        self._intake = Intake(
            platform=config.platform, log_id=self.log_id, chain=chain, hasher=self._hasher,
            work=self._queue, metrics=self._metrics, max_batch=config.max_batch,
            validation_threads=config.validation_threads,
            member_cache_ttl=config.member_cache_ttl,
            member_stale_limit=config.member_stale_limit,
            member_refresh_wait=config.member_refresh_wait)
        self._chain_watch = ChainWatch(self._probe_chain, interval=config.chain_probe_interval,
                                       max_age=config.chain_status_max_age)
        self._sealer = Sealer(
            store=self._store, chain=chain, key=sm2_key, platform=config.platform,
            log_id=self.log_id, hash_name=config.hash_name, head=self._head,
            on_anchored=self._anchored_cb,
            on_rolled_back=self._rolled_back_cb, interval=config.seal_interval,
            seal_size=config.seal_size, confirmations=config.confirmations,
        )
        self._writer = GroupWriter(
            work=self._queue, store=self._store, log=self._log, log_lock=self._log_lock,
            metrics=self._metrics, on_committed=self._sealer.notify,
            store_path=config.store_path)
        self._disclosures = DisclosureDesk(platform=config.platform, chain=chain,
                                           store=self._store, log_size=self._log_queries.size)
        self._risk_list = RiskList(chain, sm2_key)
        self._started = False

    def _check_checkpoints(self, latest: StoredCheckpoint | None) -> None:
        """``latest`` (the latest anchored checkpoint) and any pending checkpoint must be
        roots of the stored leaves.

        Raises :class:`StoreCorrupted` otherwise (leaves lost or altered since they were
        checkpointed): a node must not serve or anchor roots its leaves do not produce.
        """
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

    def leaves(self, start: int, end: int, *, limit: int = MAX_LEAF_RANGE) -> list[Leaf]:
        """The committed leaves ``[start, end)`` with their escrows, at most ``limit``
        (:meth:`LogQueries.leaves <ledger_node.platform.log_queries.LogQueries.leaves>`)."""
        return self._log_queries.leaves(start, end, limit=limit)

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
