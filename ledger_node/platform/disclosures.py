"""A platform's side of the disclosure workflow: requests on chain, sealed answers, fulfilment.

A regulator asks on chain for the opening of one commitment in a platform's log
(docs/disclosure.md). :class:`DisclosureDesk` lists the requests addressed to the platform,
checks and stores the sealed response its own system produced (this node never sees a
record), then logs the response's digest on chain with ``fulfilDisclosure``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ledger_node.chain.adapter import DisclosureRequest, LedgerChain, Role
from ledger_node.crypto import gmcrypto
from ledger_node.errors import (
    ChainError,
    CommitmentNotInLog,
    ContractRevert,
    DisclosureConflict,
    DisclosureNotAddressed,
    DisclosureNotAnswered,
    Forbidden,
    InvalidDisclosureResponse,
    InvalidKey,
    UnknownDisclosureRequest,
)
from ledger_node.log.leaf import Leaf
from ledger_node.platform.store import SQLiteStore, StoredDisclosureResponse
from ledger_node.protocol.disclosure import response_digest, response_fingerprint
from ledger_node.protocol.escrow import key_fingerprint

__all__ = ["DisclosureAnswer", "DisclosureDesk"]


@dataclass(frozen=True)
class DisclosureAnswer:
    """The node's answer to a disclosure request: the stored response, logged on chain.

    ``created`` is false when the request had already been answered with this response.
    """

    stored: StoredDisclosureResponse
    created: bool


class DisclosureDesk:
    """Disclosure requests addressed to one platform and the answers stored for them.

    ``chain`` sends as the platform's own account; ``log_size`` tells how many leaves are
    committed (a requested commitment must be one of them); ``leaf`` reads a leaf checked
    against its leaf hash and the tree (the node's own read), so a damaged row never names
    the leaf a request is about.
    """

    def __init__(self, *, platform: str, chain: LedgerChain, store: SQLiteStore,
                 log_size: Callable[[], int], leaf: Callable[[int], Leaf]) -> None:
        """Answer from ``store`` and ``chain``; nothing is read here."""
        self.platform = platform
        self.chain = chain
        self.platform_address = chain.address
        self._store = store
        self._log_size = log_size
        self._leaf = leaf
        self._disclosure_lock = threading.Lock()

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
        size = self._log_size()
        if (hint is not None and not isinstance(hint, bool) and isinstance(hint, int)
                and 0 <= hint < size and self._leaf(hint).commitment == request.commitment):
            return hint
        index = self._store.index_of_commitment(request.commitment)
        if index is None or index >= size or self._leaf(index).commitment != request.commitment:
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
