"""The sealer: turns the log's head into signed checkpoints and anchors them (PROTOCOL §5).

A background thread wakes every ``interval`` seconds, or as soon as ``seal_size`` leaves are
waiting, whichever comes first. When the log has grown past the last checkpoint it makes a
:class:`~ledger_node.log.checkpoint.Checkpoint` of the current head, signs it with the node's
SM2 key, saves it durably as ``"signed"`` and only then anchors it in one chain
transaction, after which it marks it ``"anchored"`` with the transaction hash and block.

Ordering and idempotency: at most one checkpoint is signed-but-unanchored at a time, and no
new one is made before it is anchored, so sizes go to the chain strictly increasing and
each once. A checkpoint whose anchoring may already have happened (a retry after a failure,
or one found ``"signed"`` in the store at start, e.g. after a crash between the transaction
and the store update) is first looked up on the chain; if the chain already holds that size
with the same root it is only marked anchored. Failures (chain down, revert) are counted and
retried with exponential backoff; they never stop the thread.

Reconciliation with the chain (docs/node.md, "External chains"): at start, after every
failure and every :data:`RECONCILE_EVERY_S` the sealer compares the chain's latest
checkpoint of this log with the store's; the anchored checkpoints the chain no longer
holds (a rolled-back or reorganised chain) go back to ``"signed"`` and are anchored again,
oldest first, each at its own size, so every checkpoint the node ever served is on chain
again with the same root. An anchored checkpoint is *final* once its block has
``confirmations`` blocks on top of it, counting its own; until then each pass re-reads its
receipt, and a lost one triggers the same reconciliation.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ledger_node.chain.adapter import AnchoredCheckpoint, LedgerChain
from ledger_node.crypto import gmcrypto
from ledger_node.errors import AnchorConflict, ChainError
from ledger_node.log.checkpoint import Checkpoint, sign_checkpoint
from ledger_node.log.merkle import TreeHead
from ledger_node.platform.integrity import IntakeHalt
from ledger_node.platform.store import SQLiteStore, StoredCheckpoint

_log = logging.getLogger(__name__)

MAX_BACKOFF_S: Final = 5.0
_SCAN_PAGE: Final = 1000  # checkpoints read at once when looking for unconfirmed ones
RECONCILE_EVERY_S: Final = 30.0
"""How often an idle sealer compares the chain with the store anyway (a rolled-back chain
is noticed even when nothing new is anchored and nothing fails)."""


@dataclass(frozen=True)
class SealerCounters:
    """A snapshot of what the sealer did so far."""

    checkpoints_signed: int
    checkpoints_anchored: int
    anchoring_failures: int
    last_anchored_size: int
    last_error: str | None  # the latest failure, kept after recovery
    failing: bool  # the latest attempt failed (anchoring is stalled until one succeeds)
    final_size: int = 0  # the largest anchored size with enough confirmations
    confirmations: int = 1
    checked_head: int | None = None  # the chain head at the latest confirmation check
    lost_anchorings: int = 0  # anchorings found missing from the chain and sent again


class Sealer:
    """The sealing thread of one platform log.

    ``head`` returns the log's current size and root (called from the sealer thread);
    ``on_anchored`` is told of every checkpoint once it is marked anchored, and
    ``on_rolled_back`` of the latest checkpoint still anchored (``None``: none) when the chain
    turns out to have lost anchorings, so that nothing is served against a lost transaction
    until it is anchored again.
    ``confirmations``: how many blocks, its own included, make an anchoring final (1: as
    soon as it is mined). ``on_chain`` is given the chain's latest anchored checkpoint of
    the log at every reconciliation (the node compares it with its tree and halts intake if
    the store is behind or disagrees); while ``halt`` forbids anchoring, nothing is sealed
    or anchored.
    """

    def __init__(
        self,
        *,
        store: SQLiteStore,
        chain: LedgerChain,
        key: gmcrypto.SM2PrivateKey,
        platform: str,
        log_id: bytes,
        hash_name: str,
        head: Callable[[], TreeHead],
        on_anchored: Callable[[StoredCheckpoint], None],
        on_rolled_back: Callable[[StoredCheckpoint | None], None] | None = None,
        interval: float = 0.2,
        seal_size: int = 10_000,
        confirmations: int = 1,
        on_chain: Callable[[AnchoredCheckpoint | None], None] | None = None,
        halt: IntakeHalt | None = None,
    ) -> None:
        """Prepare the sealer; nothing runs before :meth:`start`."""
        self._on_chain = on_chain
        self._halt = halt if halt is not None else IntakeHalt()
        if interval <= 0:
            raise ValueError(f"seal interval must be positive, got {interval}")
        if seal_size < 1:
            raise ValueError(f"seal size must be at least 1, got {seal_size}")
        if confirmations < 1:
            raise ValueError(f"confirmations must be at least 1, got {confirmations}")
        self._confirmations = confirmations
        self._store = store
        self._chain = chain
        self._key = key
        self._platform = platform
        self._log_id = log_id
        self._hash_name = hash_name
        self._head = head
        self._on_anchored = on_anchored
        self._on_rolled_back = on_rolled_back
        self._interval = interval
        self._seal_size = seal_size
        self._cond = threading.Condition()
        self._stopping = False
        self._pending_leaves = 0
        self._thread: threading.Thread | None = None
        self._signed = 0
        self._anchored = 0
        self._failures = 0
        self._last_error: str | None = None
        self._failing = False
        anchored = store.latest_checkpoint("anchored")
        self._last_anchored_size = anchored.tree_size if anchored is not None else 0
        # Mined is final with one confirmation; with more, finality is read from the chain.
        self._final_size = self._last_anchored_size if confirmations == 1 else 0
        self._checked_head: int | None = None
        self._lost = 0
        self._unconfirmed: list[StoredCheckpoint] = []  # anchored, not final yet, oldest first
        self._reconcile_due = True  # compare with the chain before the first anchoring
        self._next_reconcile = 0.0
        self._scan_unconfirmed = confirmations > 1
        pending = store.pending_checkpoints()
        # One is pending by construction, several after a rollback; the oldest first.
        self._unanchored: list[StoredCheckpoint] = pending
        self._recheck = bool(pending)  # anchoring may have happened before a crash

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the sealing thread (re-anchoring any checkpoint left signed first)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="jointledger-sealer", daemon=True)
        self._thread.start()

    def stop(self, *, final_seal: bool = True) -> None:
        """Stop the thread; with ``final_seal`` try once more to seal and anchor the head.

        The final attempt's failure is counted and logged, not raised: what is left signed
        is re-anchored at the next start.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if final_seal:
            try:
                self.seal_once()
            except Exception as exc:  # the node must stop cleanly whatever the chain does
                self._failed(exc)

    def notify(self, new_leaves: int) -> None:
        """Tell the sealer that ``new_leaves`` more leaves were committed to the log."""
        with self._cond:
            self._pending_leaves += new_leaves
            if self._pending_leaves >= self._seal_size:
                self._cond.notify_all()

    def counters(self) -> SealerCounters:
        """A snapshot of the sealer's counters."""
        return SealerCounters(self._signed, self._anchored, self._failures,
                              self._last_anchored_size, self._last_error, self._failing,
                              self._final_size, self._confirmations, self._checked_head,
                              self._lost)

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        backoff = 0.0
        due = time.monotonic() + self._interval  # seals start every interval, not after one
        while True:
            with self._cond:
                while not self._stopping:
                    wait = (due if not backoff else due + backoff) - time.monotonic()
                    if wait <= 0 or (not backoff and self._pending_leaves >= self._seal_size):
                        break
                    self._cond.wait(wait)
                if self._stopping:
                    return
            due = time.monotonic() + self._interval
            try:
                self.seal_once()
                self._failing = False
                backoff = 0.0
            except Exception as exc:  # chain down, revert, conflict: count, back off, retry
                self._failed(exc)
                backoff = min(MAX_BACKOFF_S, max(self._interval, backoff * 2))

    def _failed(self, exc: BaseException) -> None:
        self._failing = True
        self._reconcile_due = True  # the chain may have lost or moved on: look again first
        self._failures += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        _log.warning("anchoring failed (%d so far): %s", self._failures, self._last_error)

    def seal_once(self) -> StoredCheckpoint | None:
        """Anchor what is pending, then seal and anchor the head if it grew.

        Returns the newest checkpoint anchored by this call, or ``None`` if nothing was to
        be done. Raises whatever the chain or store raised (:class:`ChainError` and
        subclasses, :class:`AnchorConflict`); the checkpoint then stays ``"signed"``.
        """
        done: StoredCheckpoint | None = None
        now = time.monotonic()
        if self._reconcile_due or now >= self._next_reconcile:
            self._reconcile()
            self._reconcile_due = False
            self._next_reconcile = now + RECONCILE_EVERY_S
        if not self._halt.anchoring_allowed:  # the chain holds what the store lacks
            return None
        if self._unconfirmed:
            self._confirm()
        while self._unanchored:  # each re-checked: after a rollback old sends may still land
            done = self._anchor(self._unanchored[0], recheck=self._recheck)
            self._unanchored.pop(0)
        self._recheck = False
        with self._cond:
            self._pending_leaves = 0
        head = self._head()
        if head.size <= self._last_anchored_size:
            return done
        checkpoint = Checkpoint(self._platform, self._log_id, head.size, head.root,
                                int(time.time()), self._hash_name)
        signed = sign_checkpoint(self._key, checkpoint)
        stored = StoredCheckpoint(checkpoint, signed.signature, "signed", time.time())
        self._store.save_checkpoint(stored)
        self._signed += 1
        self._unanchored.append(stored)
        # A failure below may hide a transaction that did get mined: check before resending.
        self._recheck = True
        done = self._anchor(stored, recheck=False)
        self._unanchored.pop(0)
        self._recheck = False
        return done

    def _anchor(self, stored: StoredCheckpoint, *, recheck: bool) -> StoredCheckpoint:
        """Anchor ``stored`` (unless the chain already has it) and mark it anchored."""
        if recheck:
            found = self._find_on_chain(stored)
            if found is not None:
                tx_hash, block_number = found
                return self._mark(stored, tx_hash, block_number)
        cp = stored.checkpoint
        outcome = self._chain.anchor_checkpoint(
            cp.log_id, cp.tree_size, cp.root, cp.timestamp, stored.signature
        )
        return self._mark(stored, outcome.tx_hash, outcome.block_number)

    def _mark(self, stored: StoredCheckpoint, tx_hash: bytes, block: int) -> StoredCheckpoint:
        marked = self._store.mark_anchored(stored.tree_size, tx_hash, block, time.time())
        self._anchored += 1
        self._failing = False
        self._last_anchored_size = marked.tree_size
        if self._confirmations == 1:
            self._final_size = marked.tree_size
        else:
            self._unconfirmed.append(marked)
        self._on_anchored(marked)
        return marked

    # ------------------------------------------------------------------ reconciliation

    def _reconcile(self) -> None:
        """Put back to ``"signed"`` every anchored checkpoint above the chain's latest size.

        The chain is the truth about what is anchored: what the store says is anchored but
        the chain does not hold was lost (the chain rolled back or reorganised); it is
        anchored again, oldest first, each at its own size (the contract takes any
        increasing size, and re-anchoring every lost size keeps every checkpoint the node
        served verifiable). Anything held on chain is never sent again.

        First the chain's latest checkpoint goes to ``on_chain`` (the node halts intake if
        the store is behind it or disagrees). While the store has nothing anchored, nothing
        can have been lost: a failed read then only skips that comparison (the node made it
        at start).
        """
        nothing_anchored = self._store.latest_checkpoint("anchored") is None
        try:
            on_chain = self._chain.latest_checkpoint(self._log_id)
        except ChainError:
            if nothing_anchored:
                return
            raise
        if self._on_chain is not None:
            self._on_chain(on_chain)
        if nothing_anchored:
            return
        head = self._chain.block_number()
        chain_size = 0 if on_chain is None else on_chain.tree_size
        lost = self._store.checkpoints("anchored", after=chain_size)
        if lost:
            _log.warning("the chain holds log %s up to size %d, the store has anchored up to "
                         "%d: anchoring %d lost checkpoint(s) again", self._log_id.hex()[:16],
                         chain_size, lost[-1].tree_size, len(lost))
            back = [self._store.mark_unanchored(cp.tree_size) for cp in lost]
            waiting = {cp.tree_size: cp for cp in self._unanchored + back}
            self._unanchored = [waiting[size] for size in sorted(waiting)]
            self._recheck = True
            self._lost += len(lost)
            self._unconfirmed = [cp for cp in self._unconfirmed if cp.tree_size <= chain_size]
            still = self._store.latest_checkpoint("anchored")
            self._last_anchored_size = 0 if still is None else still.tree_size
            if self._on_rolled_back is not None:
                self._on_rolled_back(still)
        self._final_size = min(self._final_size, chain_size)
        self._checked_head = head
        if self._scan_unconfirmed:  # once per start: which anchored ones are not final yet
            self._scan_unconfirmed = False
            self._find_unconfirmed(head)

    def _find_unconfirmed(self, head: int) -> None:
        """Sort the store's anchored checkpoints into final and not yet final at ``head``."""
        after, unconfirmed, final = 0, [], 0
        while True:
            page = self._store.checkpoints("anchored", after=after, limit=_SCAN_PAGE)
            for cp in page:
                if self._is_deep(cp, head):
                    final = cp.tree_size
                else:
                    unconfirmed.append(cp)
            if len(page) < _SCAN_PAGE:
                break
            after = page[-1].tree_size
        known = {cp.tree_size for cp in self._unconfirmed}
        self._unconfirmed = sorted(self._unconfirmed + [c for c in unconfirmed
                                                        if c.tree_size not in known],
                                   key=lambda c: c.tree_size)
        self._final_size = max(self._final_size, final)

    def _is_deep(self, stored: StoredCheckpoint, head: int) -> bool:
        """Whether ``stored``'s block has enough confirmations at chain head ``head``."""
        block = stored.block_number
        return block is not None and head >= block + self._confirmations - 1

    def _confirm(self) -> None:
        """Check the anchored, not yet final checkpoints against the chain as it is now.

        One still mined where the store says becomes final once deep enough (after its root
        on chain is checked); one mined elsewhere (a reorganisation re-mined it) is updated;
        one the chain lost triggers :meth:`_reconcile`. Raises :class:`AnchorConflict` if
        the chain holds another root at its size.
        """
        head = self._chain.block_number()
        self._checked_head = head
        waiting: list[StoredCheckpoint] = []
        for position, stored in enumerate(self._unconfirmed):
            tx_hash = stored.tx_hash
            assert tx_hash is not None  # anchored
            mined = self._chain.mined_transaction(tx_hash)
            if mined is None or not mined.succeeded:
                found = self._find_on_chain(stored)
                if found is None:  # lost: put it (and every later one) back, anchor again
                    self._unconfirmed = waiting + self._unconfirmed[position:]
                    self._reconcile()
                    return
                stored = self._store.mark_anchored(stored.tree_size, found[0], found[1],
                                                   time.time())
            elif mined.block_number != stored.block_number:  # re-mined in another block
                stored = self._store.mark_anchored(stored.tree_size, tx_hash,
                                                   mined.block_number, time.time())
                if stored.tree_size == self._last_anchored_size:
                    self._on_anchored(stored)  # the node serves bundles naming this block
            if self._is_deep(stored, head) and self._root_on_chain_matches(stored):
                self._final_size = max(self._final_size, stored.tree_size)
            else:
                waiting.append(stored)
        self._unconfirmed = waiting

    def _root_on_chain_matches(self, stored: StoredCheckpoint) -> bool:
        """True if the chain's checkpoint at ``stored``'s size has its root; raise
        :class:`AnchorConflict` if it holds another."""
        anchored = self._chain.checkpoint_at(self._log_id, stored.tree_size)
        if not hmac.compare_digest(anchored.root, stored.root):
            raise AnchorConflict(
                f"the chain holds root {anchored.root.hex()} at size {stored.tree_size} "
                f"of log {self._log_id.hex()}, the store {stored.root.hex()}"
            )
        return True

    def _find_on_chain(self, stored: StoredCheckpoint) -> tuple[bytes, int] | None:
        """Where the chain already anchored ``stored``, or ``None`` if it has not.

        Raises :class:`AnchorConflict` if the chain has passed that size without it or holds
        another root at it: the chain's history of this log is not the store's.
        """
        latest = self._chain.latest_checkpoint(self._log_id)
        if latest is None or latest.tree_size < stored.tree_size:
            return None
        history = self._chain.checkpoints(self._log_id)
        for anchored in history:
            if anchored.tree_size == stored.tree_size:
                if not hmac.compare_digest(anchored.root, stored.root):
                    raise AnchorConflict(
                        f"the chain holds root {anchored.root.hex()} at size {stored.tree_size} "
                        f"of log {self._log_id.hex()}, the store {stored.root.hex()}"
                    )
                if anchored.tx_hash is None:
                    raise AnchorConflict(f"no anchoring event for size {stored.tree_size}")
                return anchored.tx_hash, anchored.block_number
        raise AnchorConflict(
            f"the chain's log {self._log_id.hex()} is at size {latest.tree_size} without the "
            f"store's checkpoint of size {stored.tree_size}"
        )
