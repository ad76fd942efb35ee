"""Intake of a platform log: validate a signed batch, queue it, wait for its durable commit.

:class:`Intake` checks a batch in the caller's thread (size, digest, the platform's SM2
signature with the key registered on chain, the signer being this node's own active
platform member), puts it on the writer's queue and blocks until the
:class:`~ledger_node.platform.writer.GroupWriter` has committed it, so returned receipts
mean durable. It also keeps the cache of chain membership that validation (and the HTTP
authenticator, through the node) reads.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Sequence

from ledger_node.chain.adapter import LedgerChain, Member, Role
from ledger_node.chain.member_cache import StaleWhileRevalidateMembers
from ledger_node.crypto import gmcrypto
from ledger_node.errors import (
    Forbidden,
    InvalidBatch,
    InvalidKey,
    InvalidLeaf,
    InvalidSignature,
    LedgerError,
    NodeStopped,
)
from ledger_node.log.leaf import Leaf, Receipt, batch_digest_from_data, leaves_data
from ledger_node.log.merkle import Hasher
from ledger_node.platform.integrity import IntakeHalt
from ledger_node.platform.metrics import NodeMetrics
from ledger_node.platform.writer import PendingBatch, WriteQueue
from ledger_node.protocol.auth import BatchEvidence

__all__ = ["Intake"]


class Intake:
    """Validation and queueing of signed batches for one log, closed until :meth:`open`.

    ``platform``/``chain.address`` are the log's owner, the only signer it accepts;
    ``hasher`` makes the leaf hashes the writer stores; ``validation_threads`` bounds how
    many submissions hash and verify at once (the rest wait), keeping the writer and sealer
    threads their share of the GIL. ``member_cache_ttl``, ``member_stale_limit`` and
    ``member_refresh_wait`` tune the membership cache (see :meth:`member`). While ``halt``
    is set (the store is behind the chain, or damaged) every submission is refused with its
    reason before any work is done.
    """

    def __init__(self, *, platform: str, log_id: bytes, chain: LedgerChain, hasher: Hasher,
                 work: WriteQueue, metrics: NodeMetrics, max_batch: int,
                 validation_threads: int, member_cache_ttl: float, member_stale_limit: float,
                 member_refresh_wait: float, halt: IntakeHalt | None = None) -> None:
        """Prepare a closed intake; nothing is accepted before :meth:`open`."""
        self._halt = halt if halt is not None else IntakeHalt()
        self.platform = platform
        self.log_id = log_id
        self.chain = chain
        self.platform_address = chain.address
        self._hasher = hasher
        self._queue = work
        self._metrics = metrics
        self._max_batch = max_batch
        self._intake_open = False
        self._intake_lock = threading.Lock()
        self._members = StaleWhileRevalidateMembers(
            self._read_member, ttl=member_cache_ttl,
            stale_limit=member_stale_limit, refresh_wait=member_refresh_wait)
        self._cpu_slots = threading.BoundedSemaphore(validation_threads)

    # ------------------------------------------------------------------ open and close

    def open(self) -> None:
        """Accept submissions (the writer must be running)."""
        with self._intake_lock:
            self._intake_open = True

    def close(self) -> None:
        """Refuse further submissions and queue the writer's stop behind every accepted one."""
        with self._intake_lock:
            self._intake_open = False
            self._queue.put(None)  # after every accepted batch: the writer drains, then exits

    # ------------------------------------------------------------------ submissions

    def submit(self, leaves: Sequence[Leaf], evidence: BatchEvidence) -> list[Receipt]:
        """Append a signed batch; return one receipt per leaf, in order, once durable.

        Returns only after the batch is committed to disk and appended to the log (group
        commit with concurrent callers). Raises :class:`InvalidLeaf` / :class:`InvalidBatch`
        for bad input (``evidence.digest`` not the batch's digest among it),
        :class:`Forbidden` if the signer is not this node's active platform member,
        :class:`NodeStopped` when the node is not running,
        :class:`~ledger_node.errors.StoreBehindChain` /
        :class:`~ledger_node.errors.LeafDamaged` while intake is halted, and
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
        self._halt.check()
        try:
            pending = self._validate(leaves, signer, signature, claimed_digest)
        except LedgerError:
            self._metrics.rejected()
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
                  claimed_digest: bytes | None) -> PendingBatch:
        started, received = time.monotonic(), time.time()
        if isinstance(leaves, (str, bytes)) or not isinstance(leaves, Sequence):
            raise InvalidBatch("leaves must be a sequence of Leaf")
        if not 1 <= len(leaves) <= self._max_batch:
            raise InvalidBatch(
                f"a batch holds 1..{self._max_batch} leaves, got {len(leaves)}"
            )
        for i, leaf in enumerate(leaves):
            if not isinstance(leaf, Leaf):
                raise InvalidLeaf(f"leaves[{i}]", f"must be a Leaf, got {type(leaf).__name__}")
        with self._cpu_slots:
            return self._validate_slot(leaves, signer, signature, claimed_digest, started,
                                       received)

    def _validate_slot(self, leaves: Sequence[Leaf], signer: str, signature: bytes,
                       claimed_digest: bytes | None, started: float,
                       received: float) -> PendingBatch:
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
        return PendingBatch(tuple(leaves), self._leaf_hashes(datas), evidence, received,
                            started)

    def _leaf_hashes(self, datas: Sequence[bytes]) -> tuple[bytes, ...]:
        bulk = getattr(self._hasher, "hash_leaves", None)
        if bulk is None:
            hash_leaf = self._hasher.hash_leaf
            return tuple(hash_leaf(d) for d in datas)
        joined = bytes(bulk(datas))
        d = self._hasher.digest_size
        return tuple(joined[i:i + d] for i in range(0, len(joined), d))

    # ------------------------------------------------------------------ membership

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

    @property
    def member_read_failures(self) -> int:
        """How many membership reads from the chain have failed (for ``/metrics``)."""
        return self._members.failed_reads

    def _read_member(self, address: str) -> Member:
        return self.chain.member(address)
