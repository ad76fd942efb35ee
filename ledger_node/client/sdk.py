"""The platform SDK: runs inside the platform's own process and talks to its node over HTTP.

:class:`PlatformClient` turns payment records into leaves locally (fresh salt, commitment,
the AML escrow sealed for the regulator when given its key; match/amount tags may be passed in),
signs each batch with the platform's SM2 key and submits it in chunks of at most 10,000
leaves, retrying on connection errors and 5xx answers (safe: intake is idempotent per leaf).
Only public data leaves the process: commitments, escrows, tags, signatures. The records
and their salts stay with the caller, who needs them later to open or disclose a record.

For a record that is one half of a cross-platform payment (a :class:`CrossPlatform` hint:
the counterparty platform and this record's side) the leaf gets its match and amount tags
under the pairwise key this platform shares with the counterparty (:mod:`ledger_node.
pairwise`; the counterparty's key registered now is read once per chunk). The commitment is
unchanged. :meth:`NodeClient.summaries` reads any log's leaf summaries in bulk, for
reconciliation (:mod:`ledger_node.reconcile.reconciler`).

It also fetches proof bundles (waiting for anchoring), checkpoints, and asks the node to
verify bundles; member-only endpoints are called with SM2-signed requests. It answers the
regulator's disclosure requests: it seals the opening for the regulator
(:mod:`ledger_node.protocol.disclosure`) and has the node log the answer on chain.

:class:`RegulatorClient` is the regulator's side: whole leaves with escrows, the disclosure
requests addressed to a platform and their sealed answers; made with
:meth:`RegulatorClient.for_regulator_node`, the regulator's own node's API (traces, alerts,
faults, disclosure requests and collection, case files), which ``jointledger trace``,
``alerts``, ``faults``, ``disclose`` and ``casefile`` use.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Self, TypeVar

import httpx

from ledger_node.chain.adapter import LedgerChain, Member, Role
from ledger_node.crypto import gmcrypto
from ledger_node.errors import (
    ApiError,
    InvalidBatch,
    InvalidLeaf,
    InvalidRecord,
    ProofPending,
    UnknownCounterparty,
    UnknownDisclosureRequest,
    UnknownRegulator,
)
from ledger_node.jsonlimits import JsonTextRefused, check_json_body
from ledger_node.log.checkpoint import log_id_for
from ledger_node.log.leaf import Leaf, LeafSummary, Receipt
from ledger_node.protocol.aml import PartyKind
from ledger_node.protocol.auth import regulator_node_audience, sign_batch, sign_request
from ledger_node.protocol.bundle import ProofBundle, Verdict
from ledger_node.protocol.checks import Check, CheckStatus
from ledger_node.protocol.commitment import (
    FieldDisclosure,
    RecordOpening,
    Salt,
    new_salt,
    record_commitment,
    verify_opening,
)
from ledger_node.protocol.disclosure import response_digest, seal_disclosure_response
from ledger_node.protocol.escrow import EscrowSealer
from ledger_node.protocol.keys_in_force import pairwise_keys_in_force, platform_member
from ledger_node.protocol.pairwise import CrossPlatform, PairwiseKey, pairwise_key, record_tags
from ledger_node.protocol.reconciliation import (
    DEFAULT_GRACE,
    Expectation,
    OwnRecord,
    Skipped,
    Status,
    Window,
    check_grace,
    expectations_for,
    report_record_json,
)
from ledger_node.protocol.record import PaymentRecord, format_time
from ledger_node.tls import NO_CLIENT_TLS, ClientTls

MAX_CHUNK: Final = 10_000
PartyKinds = tuple[PartyKind, PartyKind]
"""A payment's (payer, payee) party kinds, for the AML payload of its escrow."""
_Item = TypeVar("_Item")
"""What a node answers a JSON array of (a leaf, a leaf summary)."""
_RETRY_STATUSES: Final = frozenset({500, 502, 503, 504})
MAX_RETRY_AFTER_S: Final = 30.0
"""The longest a client waits on a 429's ``Retry-After`` before retrying (a node asking for
longer is obeyed only this long; the retries stay bounded by ``retries``)."""
Progress = Callable[[int, int], None]
"""Called with (leaves acknowledged so far, total leaves) after each chunk."""
RegulatorKey = gmcrypto.SM2PublicKey | Callable[[], gmcrypto.SM2PublicKey]
"""The regulator's SM2 key, or a function returning the key registered now (see
:func:`registered_regulator_key`), called once per sealed batch."""
Counterparties = Callable[[str], Member]
"""A function returning the platform member of a name as registered now (address, SM2 key):
``lambda name: registered_platform(chain, name)``."""
CrossPlatformHint = Callable[[PaymentRecord], CrossPlatform | None]
"""Tells, per record, whether it is one half of a cross-platform payment (and which)."""


@dataclass(frozen=True)
class PreparedRecord:
    """A record made ready to submit: its salt and leaf. Keep it; only the leaf is sent."""

    record: PaymentRecord
    salt: Salt
    leaf: Leaf

    @property
    def opening(self) -> RecordOpening:
        """The whole-record opening of the leaf's commitment (for a verifier, on request)."""
        return RecordOpening(self.record, self.salt)


@dataclass(frozen=True)
class DisclosureReceipt:
    """A disclosure request answered: the sealed response and where its digest is on chain."""

    request_id: int
    response: bytes
    response_digest: bytes
    tx_hash: bytes
    block: int
    created: bool  # false: the node already held this answer


def registered_regulator_key(chain: LedgerChain, name: str | None = None
                             ) -> gmcrypto.SM2PublicKey:
    """The SM2 key the chain holds now for the active regulator (or the one called ``name``).

    Pass ``lambda: registered_regulator_key(chain)`` as a :class:`PlatformClient`'s
    ``regulator_key`` so that a governance key rotation takes effect at the next batch.
    Raises :class:`UnknownRegulator` if no active regulator matches, or if several do and
    no ``name`` picks one.
    """
    regulators = [m for m in chain.members()
                  if m.role is Role.REGULATOR and m.active and (name is None or m.name == name)]
    if not regulators:
        raise UnknownRegulator("no active regulator" + (f" named {name!r}" if name else "")
                               + " is registered on chain")
    if len(regulators) > 1:
        raise UnknownRegulator(
            f"{len(regulators)} active regulators are registered "
            f"({', '.join(sorted(m.name for m in regulators))}): name the one to seal for"
        )
    return gmcrypto.SM2PublicKey.from_raw(regulators[0].public_key)


def registered_platform(chain: LedgerChain, name: str, *, active_only: bool = True) -> Member:
    """The platform member called ``name`` on chain (its address and SM2 key now).

    Raises :class:`UnknownCounterparty` if no platform has that name (or, with
    ``active_only``, none that is still active).
    """
    found = [m for m in chain.members() if m.role is Role.PLATFORM and m.name == name]
    if active_only:
        found = [m for m in found if m.active]
    if not found:
        known = sorted(m.name for m in chain.members() if m.role is Role.PLATFORM)
        raise UnknownCounterparty(f"no {'active ' if active_only else ''}platform named "
                                  f"{name!r} is registered on chain (platforms: "
                                  f"{', '.join(known) or 'none'})")
    return found[-1]


@dataclass(frozen=True)
class SummaryRange:
    """Leaf summaries ``[start, end)`` of a log as its node served them (no escrows).

    ``size`` is the log's size when the node read them; ``hash_name`` the log's hash.
    """

    log_id: bytes
    platform: str
    hash_name: str
    start: int
    end: int
    size: int
    summaries: list[LeafSummary]


@dataclass(frozen=True)
class SubmittedRecord:
    """A prepared record and the node's receipt for its leaf, with the log (and shard
    number) the leaf went to: ``receipt.index`` is an index in that log."""

    prepared: PreparedRecord
    receipt: Receipt
    log_id: bytes = b""
    shard: int = 0


class NodeClient:
    """A read-only client of a node's public API: statuses, bundles, checkpoints, verify.

    Anyone may use it (auditors, the CLI); it holds no key and never signs.
    """

    def __init__(
        self,
        base_url: str,
        *,
        http: httpx.Client | None = None,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.2,
        tls: ClientTls = NO_CLIENT_TLS,
    ) -> None:
        """A client of the node at ``base_url``.

        ``http`` may be any ``httpx.Client`` (a FastAPI ``TestClient`` in tests); otherwise
        one is made for ``base_url``, trusting ``tls.ca`` for an https node (the system's
        CAs by default) and presenting ``tls.cert`` to a node that asks for a client
        certificate (mutual TLS). Failed requests (connection errors, 5xx) are retried
        ``retries`` times with exponential backoff starting at ``backoff`` seconds; a 429
        (the node's per-member limit) is retried after the ``Retry-After`` it names (at
        most :data:`MAX_RETRY_AFTER_S`), within the same ``retries``.
        """
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(
            base_url=base_url, timeout=timeout, verify=tls.ssl_context())
        self._retries = retries
        self._backoff = backoff

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads

    def leaf_status(self, index: int) -> dict[str, Any]:
        """The node's status document of leaf ``index`` (ApiError 404 if unknown)."""
        data: dict[str, Any] = self._send("GET", f"/v1/leaves/{index}").json()
        return data

    def find(self, leaf_hash: bytes) -> int | None:
        """The index of the leaf with ``leaf_hash``, or ``None`` if the node has none."""
        try:
            answer = self._send("GET", f"/v1/leaves/by-hash/{leaf_hash.hex()}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return int(answer.json()["index"])

    def bundle_json(self, index: int, *, wait: bool = True, timeout: float = 30.0,
                    poll: float = 0.05) -> dict[str, Any]:
        """The proof bundle document of leaf ``index``.

        With ``wait`` it polls while the node answers 202 (pending), at most ``timeout``
        seconds, then raises :class:`ProofPending`; without it a 202 raises at once.
        """
        deadline = time.monotonic() + timeout
        while True:
            answer = self._send("GET", f"/v1/leaves/{index}/bundle")
            if answer.status_code == 200:
                data: dict[str, Any] = answer.json()
                return data
            if not wait or time.monotonic() >= deadline:
                raise ProofPending(f"leaf {index} is not anchored yet "
                                   f"({answer.json().get('detail', '')})")
            hint = float(answer.headers.get("Retry-After", poll))
            time.sleep(max(0.0, min(hint, poll, deadline - time.monotonic())))

    def bundle(self, index: int, *, wait: bool = True, timeout: float = 30.0) -> ProofBundle:
        """The parsed proof bundle of leaf ``index`` (see :meth:`bundle_json`)."""
        return ProofBundle.from_json(self.bundle_json(index, wait=wait, timeout=timeout))

    def checkpoints(self, *, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Anchored checkpoints of the log larger than ``after``, oldest first."""
        answer = self._send("GET", "/v1/checkpoints", params={"after": after, "limit": limit})
        data: list[dict[str, Any]] = answer.json()["checkpoints"]
        return data

    def consistency(self, size1: int, size2: int) -> dict[str, Any]:
        """The node's consistency proof between two anchored sizes."""
        data: dict[str, Any] = self._send(
            "GET", "/v1/consistency", params={"from": size1, "to": size2}).json()
        return data

    def verify(
        self,
        bundle: ProofBundle | dict[str, Any],
        *,
        opening: RecordOpening | None = None,
        disclosure: FieldDisclosure | None = None,
    ) -> Verdict:
        """Ask the node to verify ``bundle`` against its chain.

        For a verdict that does not trust the node at all, call
        :func:`~ledger_node.protocol.bundle.verify_bundle` with your own chain client instead.
        """
        body: dict[str, Any] = {
            "bundle": bundle.to_json() if isinstance(bundle, ProofBundle) else bundle}
        if opening is not None:
            body["opening"] = opening.to_json()
        if disclosure is not None:
            body["disclosure"] = disclosure.to_json()
        data = self._send("POST", "/v1/verify",
                          content=json.dumps(body).encode()).json()
        return verdict_from_json(data)

    def health(self) -> dict[str, Any]:
        """The node's health document."""
        data: dict[str, Any] = self._send("GET", "/v1/health").json()
        return data

    def summaries(self, log_id: bytes, start: int, end: int) -> SummaryRange:
        """The summaries of leaves ``[start, end)`` (1..10,000) of ``log_id``: public data.

        Raises :class:`ApiError` for a problem answer (416 past the log's size, 404 for a
        log the node does not serve) and :class:`~ledger_node.errors.InvalidLeaf` if the
        answer is malformed or is not the range asked for.
        """
        data = self._send("GET", f"/v1/logs/{log_id.hex()}/summaries",
                          params={"start": start, "end": end}).json()
        try:
            served = SummaryRange(bytes.fromhex(data["log_id"]), str(data["platform"]),
                                  str(data["hash"]), int(data["start"]), int(data["end"]),
                                  int(data["size"]),
                                  _items_from_json(data["summaries"], LeafSummary.from_json,
                                                   "summaries"))
        except InvalidLeaf:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidLeaf("summaries", f"malformed summaries from the node: {exc!r}"
                              ) from None
        if (served.log_id, served.start, served.end) != (log_id, start, end) or len(
            served.summaries
        ) != end - start:
            raise InvalidLeaf("summaries", f"asked for [{start}, {end}) of {log_id.hex()}, "
                                           f"the node answered {len(served.summaries)} for "
                                           f"[{served.start}, {served.end}) of "
                                           f"{served.log_id.hex()}")
        return served

    # ------------------------------------------------------------------ transport

    def _send(self, method: str, path: str, *, content: bytes = b"",
              params: dict[str, Any] | None = None, signed: bool = False) -> httpx.Response:
        """Send one request, retrying connection errors, 5xx and 429; raise ApiError for
        4xx/5xx once the retries are spent."""
        headers = {"Content-Type": "application/json"} if content else {}
        attempt = 0
        while True:
            request = self._http.build_request(method, path, content=content or None,
                                               params=params, headers=headers)
            if signed:  # a fresh timestamp and nonce on every attempt: retries are not replays
                target = request.url.raw_path.decode("ascii")
                request.headers.update(self._signature_headers(method, target, content))
            try:
                response = self._http.send(request)
            except httpx.TransportError:
                if attempt >= self._retries:
                    raise
            else:
                _check_answer(response)
                if response.status_code < 400:
                    return response
                retryable = (response.status_code in _RETRY_STATUSES
                             or response.status_code == 429)
                if not retryable or attempt >= self._retries:
                    raise _api_error(response)
                if response.status_code == 429:  # the node's per-member limit: wait as told
                    time.sleep(_retry_after(response))
                    attempt += 1
                    continue
            time.sleep(self._backoff * 2**attempt)
            attempt += 1


    def _signature_headers(self, method: str, target: str, content: bytes) -> dict[str, str]:
        """The X-JL-* headers of a signed request; a read-only client cannot sign."""
        raise TypeError("a NodeClient holds no key: use PlatformClient for signed requests")


class PlatformClient(NodeClient):
    """A platform's client of its own node (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        platform: str,
        account: str,
        sm2_key: gmcrypto.SM2PrivateKey,
        log_id: bytes | None = None,
        *,
        shard: int = 0,
        http: httpx.Client | None = None,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.2,
        tls: ClientTls = NO_CLIENT_TLS,
        chunk_size: int = MAX_CHUNK,
        regulator_key: RegulatorKey | None = None,
        counterparties: Counterparties | None = None,
    ) -> None:
        """A client of the node at ``base_url`` acting as ``platform``.

        ``account`` is the platform's chain address (the batch signer); ``sm2_key`` its SM2
        private key, which never leaves this process. ``log_id`` defaults to the log of
        (``platform``, ``shard``). With ``regulator_key`` (the regulator's registered SM2
        key, or a function returning the key registered now, called once per chunk)
        :meth:`submit_records` seals each record's AML escrow for the regulator, one batch
        key per submitted chunk. ``counterparties`` (a function returning another platform's
        member record as registered now, e.g. ``lambda name: registered_platform(chain,
        name)``) lets :meth:`prepare` and :meth:`submit_records` tag cross-platform records.
        Transport options are :class:`NodeClient`'s.
        """
        if not 1 <= chunk_size <= MAX_CHUNK:
            raise ValueError(f"chunk_size must be in 1..{MAX_CHUNK}")
        super().__init__(base_url, http=http, timeout=timeout, retries=retries, backoff=backoff,
                         tls=tls)
        self.platform = platform
        self.account = account
        self.shard = shard
        self.log_id = log_id if log_id is not None else log_id_for(platform, shard)
        self._key = sm2_key
        self._chunk = chunk_size
        self._regulator_key = regulator_key
        self._counterparties = counterparties
        self._pairwise: dict[tuple[int, str, bytes], PairwiseKey] = {}

    # ------------------------------------------------------------------ local preparation

    def prepare(
        self,
        record: PaymentRecord,
        *,
        salt: Salt | None = None,
        match_tag: bytes | None = None,
        amount_tag: bytes | None = None,
        escrow: bytes = b"",
        sealer: EscrowSealer | None = None,
        kinds: PartyKinds | None = None,
        cross: CrossPlatform | None = None,
        pairwise: PairwiseKey | None = None,
    ) -> PreparedRecord:
        """Commit to ``record`` under a fresh (or given) salt and build its leaf, locally.

        With ``sealer`` the leaf's escrow is the record's AML payload sealed for the
        regulator (``kinds`` gives the payer's and payee's party kinds; otherwise they are
        read from the identity numbers). With ``cross`` the record is one half of a
        cross-platform payment: its leaf gets the match and amount tags of ``cross.side``
        under the key shared with ``cross.counterparty`` (``pairwise``, or derived now from
        the counterparty's key registered now). Raises :class:`InvalidRecord` if the record
        is another platform's or, with ``cross``, has no clearing reference,
        :class:`~ledger_node.errors.InvalidLeaf` for malformed tags or escrow (or tags given
        besides ``cross``), :class:`UnknownCounterparty` for a counterparty that is not
        another active platform, and :class:`~ledger_node.errors.InvalidIdentity` for an
        identity whose kind cannot be told.
        """
        if record.platform != self.platform:
            raise InvalidRecord("platform", f"record of {record.platform!r} submitted by "
                                            f"{self.platform!r}")
        if cross is not None:
            if match_tag is not None or amount_tag is not None:
                raise InvalidLeaf("match_tag", "give either cross (the SDK computes the tags) "
                                               "or explicit tags, not both")
            key = pairwise if pairwise is not None else self.pairwise_key(cross.counterparty)
            match_tag, amount_tag = record_tags(key, cross.side, record)
        salt = salt if salt is not None else new_salt()
        commitment = record_commitment(record, salt)
        if sealer is not None:
            payer_kind, payee_kind = kinds if kinds is not None else (None, None)
            escrow = sealer.seal_record(record, commitment, payer_kind=payer_kind,
                                        payee_kind=payee_kind)
        leaf = Leaf(commitment, escrow, match_tag, amount_tag)
        return PreparedRecord(record, salt, leaf)

    def pairwise_key(self, counterparty: str) -> PairwiseKey:
        """The key this platform shares with ``counterparty`` under both keys registered now.

        The counterparty's member record is read through ``counterparties`` on each call (a
        rotation takes effect at once); the ECDH is done once per (own key, counterparty
        key). Raises :class:`UnknownCounterparty` if ``counterparties`` was not given, or for
        this platform itself, and what ``counterparties`` raises for an unknown name.
        """
        if self._counterparties is None:
            raise UnknownCounterparty("this client was made without counterparties: it cannot "
                                      "read another platform's registered key")
        if counterparty == self.platform:
            raise UnknownCounterparty(f"{counterparty!r} is this platform itself")
        member = self._counterparties(counterparty)
        if member.role is not Role.PLATFORM:
            raise UnknownCounterparty(f"{counterparty!r} is a {member.role.name.lower()}, "
                                      "not a platform")
        cache_key = (self._key.d, member.address.lower(), member.public_key)
        key = self._pairwise.get(cache_key)
        if key is None:
            if len(self._pairwise) >= 64:
                self._pairwise.clear()
            key = self._pairwise[cache_key] = pairwise_key(self._key, self.account,
                                                           member.address, member.public_key)
        return key

    def sign_batch(self, leaves: Sequence[Leaf]) -> bytes:
        """The platform's DER SM2 signature over ``batch_digest(log_id, leaves)``."""
        return sign_batch(self._key, self.log_id, leaves)

    # ------------------------------------------------------------------ intake

    def submit_records(
        self,
        records: Iterable[PaymentRecord],
        *,
        progress: Progress | None = None,
        kinds: Callable[[PaymentRecord], PartyKinds] | None = None,
        cross_platform: CrossPlatformHint | None = None,
    ) -> list[SubmittedRecord]:
        """Prepare and submit ``records``; return each with its salt, leaf and receipt.

        With a regulator key each submitted chunk gets its own :class:`EscrowSealer`: one
        fresh SM4 key wrapped once with SM2, whatever the chunk's size; a key function is
        asked once per chunk, so a rotated key is used from the next chunk on. ``kinds``
        gives each record's (payer, payee) party kinds when the identities are not ID
        numbers. ``cross_platform`` tells which records are halves of cross-platform
        payments (see :meth:`prepare`); each counterparty's registered key is read once per
        chunk, so a rotation takes effect from the next chunk on. Every record is prepared
        (and checked) before anything is sent.
        """
        prepared = self.prepare_records(records, kinds=kinds, cross_platform=cross_platform)
        return self.submit_prepared(prepared, progress=progress)

    def prepare_records(
        self,
        records: Iterable[PaymentRecord],
        *,
        kinds: Callable[[PaymentRecord], PartyKinds] | None = None,
        cross_platform: CrossPlatformHint | None = None,
    ) -> list[PreparedRecord]:
        """Prepare ``records`` as :meth:`submit_records` does (one escrow sealer and one read
        of each counterparty's key per chunk), sending nothing."""
        items = list(records)
        prepared: list[PreparedRecord] = []
        for start in range(0, len(items), self._chunk):
            sealer = (EscrowSealer(self._current_regulator_key())
                      if self._regulator_key is not None else None)
            keys: dict[str, PairwiseKey] = {}
            for record in items[start:start + self._chunk]:
                cross = cross_platform(record) if cross_platform is not None else None
                key = None
                if cross is not None:
                    key = keys.get(cross.counterparty)
                    if key is None:
                        key = keys[cross.counterparty] = self.pairwise_key(cross.counterparty)
                prepared.append(self.prepare(
                    record, sealer=sealer, kinds=kinds(record) if kinds is not None else None,
                    cross=cross, pairwise=key))
        return prepared

    def submit_prepared(
        self, prepared: Sequence[PreparedRecord], *, progress: Progress | None = None
    ) -> list[SubmittedRecord]:
        """Submit prepared records; return them with their receipts, in order."""
        receipts = self.submit_leaves([p.leaf for p in prepared], progress=progress)
        return [SubmittedRecord(p, r, self.log_id, self.shard)
                for p, r in zip(prepared, receipts, strict=True)]

    def submit_leaves(
        self, leaves: Sequence[Leaf], *, progress: Progress | None = None
    ) -> list[Receipt]:
        """Submit ``leaves`` in signed chunks; return one receipt per leaf, in order.

        Each chunk is acknowledged only once the node committed it durably. Raises
        :class:`InvalidBatch` for an empty batch and :class:`ApiError` for a problem
        answer (4xx, or 5xx after the retries).
        """
        if not leaves:
            raise InvalidBatch("nothing to submit: a batch holds at least one leaf")
        path = f"/v1/logs/{self.log_id.hex()}/leaves"
        receipts: list[Receipt] = []
        for start in range(0, len(leaves), self._chunk):
            chunk = leaves[start:start + self._chunk]
            body = {
                "leaves": [leaf.to_json() for leaf in chunk],
                "signer": self.account,
                "signature": self.sign_batch(chunk).hex(),
            }
            content = json.dumps(body, separators=(",", ":")).encode()
            answer = self._send("POST", path, content=content)
            receipts.extend(
                Receipt(int(r["index"]), bytes.fromhex(r["leaf_hash"]), bool(r["duplicate"]))
                for r in answer.json()["receipts"]
            )
            if progress is not None:
                progress(len(receipts), len(leaves))
        return receipts

    # ------------------------------------------------------------------ reconciliation

    def reconcile(
        self,
        counterparty: str,
        window: Window,
        records: Iterable[OwnRecord],
        *,
        counterparty_url: str,
        chain: LedgerChain,
        retired_keys: Sequence[gmcrypto.SM2PrivateKey] = (),
        grace: timedelta | float = DEFAULT_GRACE,
        as_of: datetime | None = None,
        matched_bundles: bool = False,
        counterparty_shard: int = 0,
    ) -> dict[str, Any]:
        """Reconcile own records with ``counterparty`` through this platform's node.

        The tags the counterparty's halves must carry are computed here, under every
        pairwise key in force during the window (``retired_keys``: this platform's SM2 keys
        that governance rotated out), and sent with leaf indexes and payment times in
        signed ``POST /v1/reconciliation`` requests of at most 10,000; the node verifies
        the counterparty's log (read from ``counterparty_url``) against the chain and
        matches. ``records`` are :class:`~ledger_node.protocol.reconciliation.OwnRecord` values
        (:func:`own_records` makes them from submitted records). Returns the merged report
        document (docs/reconciliation.md). Raises what
        :func:`~ledger_node.protocol.keys_in_force.pairwise_keys_in_force` raises and
        :class:`ApiError`
        for a problem answer (502 ``counterparty-log-refused``, 404
        ``unknown-counterparty``, 422 ``invalid-window``).
        """
        grace = check_grace(grace)
        own = chain.member(self.account)
        peer = platform_member(chain, counterparty, not_address=self.account)
        keys = pairwise_keys_in_force(chain, own, [self._key, *retired_keys], peer,
                                      window.start, window.end + grace)
        expectations, skipped = expectations_for(records, keys, window,
                                                 own_anchored_size=2**63 - 1)
        base: dict[str, Any] = {
            "counterparty": counterparty, "counterparty_url": counterparty_url,
            "counterparty_shard": counterparty_shard, "window": window.to_json(),
            "grace_s": grace.total_seconds(), "matched_bundles": matched_bundles,
        }
        if as_of is not None:
            base["as_of"] = format_time(as_of)
        parts = []
        for start in range(0, max(len(expectations), 1), MAX_CHUNK):
            body = base | {"expectations": [
                {"index": e.index, "time": format_time(e.time),
                 "tags": [{"match_tag": t.match_tag.hex(), "amount_tag": t.amount_tag.hex()}
                          for t in e.tags]}
                for e in expectations[start:start + MAX_CHUNK]]}
            answer = self._send("POST", "/v1/reconciliation", signed=True,
                                content=json.dumps(body, separators=(",", ":")).encode())
            parts.append(answer.json())
        return _merge_reports(parts, skipped, expectations, keys)

    def _current_regulator_key(self) -> gmcrypto.SM2PublicKey:
        key = self._regulator_key
        assert key is not None
        return key if isinstance(key, gmcrypto.SM2PublicKey) else key()

    # ------------------------------------------------------------------ member-only reads

    def evidence(self, index: int) -> dict[str, Any]:
        """The signed batch evidence of leaf ``index`` (an SM2-signed, member-only request)."""
        data: dict[str, Any] = self._send("GET", f"/v1/leaves/{index}/evidence",
                                          signed=True).json()
        return data

    # ------------------------------------------------------------------ disclosures

    def disclosure_requests(self, pending_only: bool = True) -> list[dict[str, Any]]:
        """Disclosure requests addressed to this platform, as the node reads them on chain.

        With ``pending_only`` only those not yet fulfilled on chain. Each is the node's
        JSON (``id``, ``regulator``, ``platform``, ``commitment``, ``case_id``,
        ``requested_block``, ``fulfilled``, ``response_digest``, ``answered``).
        """
        data: list[dict[str, Any]] = self._send("GET", "/v1/disclosures", signed=True).json()
        return [r for r in data if not (pending_only and r["fulfilled"])]

    def answer_disclosure(
        self,
        request_id: int,
        opening: RecordOpening,
        regulator_key: gmcrypto.SM2PublicKey,
        *,
        chain_id: int,
        contract: str,
        index: int | None = None,
    ) -> DisclosureReceipt:
        """Seal ``opening`` for the requesting regulator and have the node log the answer.

        ``regulator_key`` is the requesting regulator's SM2 key as registered on chain;
        ``chain_id`` and ``contract`` the deployment the request is on; ``index`` where the
        leaf is, if known. The opening is checked against the request's commitment first
        (:class:`~ledger_node.errors.InvalidOpening`, nothing sent), and
        :class:`UnknownDisclosureRequest` is raised if the node lists no such request for
        this platform. The sealed bytes are fixed before sending, so retries are safe.
        Raises :class:`ApiError` for a problem answer (e.g. 409 if the request was
        answered with another response).
        """
        listed = [r for r in self.disclosure_requests(pending_only=False)
                  if r["id"] == request_id]
        if not listed:
            raise UnknownDisclosureRequest(request_id)
        commitment = bytes.fromhex(listed[0]["commitment"])
        verify_opening(commitment, opening)
        response = seal_disclosure_response(regulator_key, request_id, commitment, opening,
                                            chain_id=chain_id, contract=contract)
        body: dict[str, Any] = {"response": response.hex()}
        if index is not None:
            body["index"] = index
        answer = self._send("POST", f"/v1/disclosures/{request_id}/response",
                            content=json.dumps(body).encode(), signed=True)
        data = answer.json()
        digest = bytes.fromhex(data["response_digest"])
        if digest != response_digest(response):
            raise ApiError(answer.status_code, "about:blank", "Digest mismatch",
                           f"the node logged digest {digest.hex()} for a response of digest "
                           f"{response_digest(response).hex()}", data)
        return DisclosureReceipt(request_id, response, digest,
                                 bytes.fromhex(str(data["tx_hash"]).removeprefix("0x")),
                                 int(data["block"]), answer.status_code == 201)

    def _signature_headers(self, method: str, target: str, content: bytes) -> dict[str, str]:
        return sign_request(self._key, self.account, method, target, content,
                            audience=self.log_id)


@dataclass(frozen=True)
class LeafRange:
    """Whole leaves ``[start, end)`` of a log as its node served them, escrows included.

    ``size`` is the log's size when the node read them; ``hash_name`` the log's hash.
    """

    log_id: bytes
    platform: str
    hash_name: str
    start: int
    end: int
    size: int
    leaves: list[Leaf]


class RegulatorClient(NodeClient):
    """A regulator's client of one platform's node: leaves with escrows, disclosures.

    Every call is an SM2-signed request made as the regulator's chain ``account`` with its
    ``sm2_key``, addressed to the node's log (``log_id``; read from the node's health
    document on first use when not given).
    """

    def __init__(
        self,
        base_url: str,
        account: str,
        sm2_key: gmcrypto.SM2PrivateKey,
        log_id: bytes | None = None,
        *,
        http: httpx.Client | None = None,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.2,
        tls: ClientTls = NO_CLIENT_TLS,
    ) -> None:
        """A client of the node at ``base_url`` acting as the regulator ``account``.

        Transport options (``tls`` among them) are :class:`NodeClient`'s.
        """
        super().__init__(base_url, http=http, timeout=timeout, retries=retries, backoff=backoff,
                         tls=tls)
        self.account = account
        self._key = sm2_key
        self._log_id = log_id
        self._regulator_node: str | None = None  # set by for_regulator_node
        self._regulator_node_pending = False

    @classmethod
    def for_regulator_node(
        cls,
        base_url: str,
        account: str,
        sm2_key: gmcrypto.SM2PrivateKey,
        name: str | None = None,
        *,
        http: httpx.Client | None = None,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.2,
        tls: ClientTls = NO_CLIENT_TLS,
    ) -> Self:
        """A client of the regulator's **own** node (``jointledger serve --role
        regulator``): traces, alerts, faults, disclosures, case files.

        Its requests are signed for that node's audience
        (:func:`~ledger_node.protocol.auth.regulator_node_audience` of the node's ``name``;
        read from the node's ``/v1/health`` on first use when not given) instead of a
        platform log's id. Transport options are :class:`NodeClient`'s.
        """
        client = cls(base_url, account, sm2_key, http=http, timeout=timeout, retries=retries,
                     backoff=backoff, tls=tls)
        client._regulator_node = name
        client._regulator_node_pending = name is None
        return client

    @property
    def regulator_node_name(self) -> str:
        """The name of the regulator node this client signs for (asked of its health
        document when not given); ``TypeError`` for a client of a platform node."""
        if self._regulator_node is None:
            if not self._regulator_node_pending:
                raise TypeError("this RegulatorClient talks to a platform node: make one "
                                "with RegulatorClient.for_regulator_node for the regulator's "
                                "own node")
            health = self.health()
            if health.get("role") != "regulator":
                raise ApiError(200, "about:blank", "Not a regulator node",
                               f"the node answers role {health.get('role')!r} in its "
                               "/v1/health, expected 'regulator': check the URL", health)
            self._regulator_node = str(health["name"])
        return self._regulator_node

    # ------------------------------------------------ the regulator's own node

    def trace_identity(self, identity: str | None = None, *,
                       identity_key: bytes | None = None) -> dict[str, Any]:
        """Every record where ``identity`` (normalised and hashed on the node; it travels
        in the body, never in a URL) or ``identity_key`` pays or is paid, with proof
        bundles: ``{"identity_key", "count", "platforms", "records"}``."""
        if (identity is None) == (identity_key is None):
            raise ValueError("give exactly one of identity and identity_key")
        body = ({"identity": identity} if identity is not None
                else {"identity_key": (identity_key or b"").hex()})
        return self._regulator_call("POST", "/v1/trace/identity", body)

    def trace_commitment(self, commitment: bytes) -> dict[str, Any]:
        """The record(s) with this commitment, their payments and proof bundles."""
        return self._regulator_call("GET", f"/v1/trace/commitment/{commitment.hex()}")

    def alerts(self, rule: str | None = None) -> list[dict[str, Any]]:
        """The AML alerts (each with its lasting ``id``, from 1), of ``rule`` (or a rule
        under it, ``structuring`` for ``structuring.*``) when given."""
        params = None if rule is None else {"rule": rule}
        answer = self._send("GET", "/v1/alerts", params=params, signed=True).json()
        alerts: list[dict[str, Any]] = answer["alerts"]
        return alerts

    def alert(self, alert_id: int) -> dict[str, Any]:
        """One alert with its evidence (records with proof bundles); :class:`ApiError`
        404 ``unknown-alert`` for an id not raised (any more)."""
        return self._regulator_call("GET", f"/v1/alerts/{alert_id}")

    def faults(self) -> list[dict[str, Any]]:
        """Every fault the node recorded about the platform nodes' data."""
        faults: list[dict[str, Any]] = self._regulator_call("GET", "/v1/faults")["faults"]
        return faults

    def ingest_status(self) -> dict[str, Any]:
        """Per followed log: verified and anchored sizes; records and SM2 decryptions."""
        return self._regulator_call("GET", "/v1/ingest")

    def request_disclosure(self, commitment: bytes, case_id: bytes) -> dict[str, Any]:
        """Have the node log on chain a request that the platform holding ``commitment``
        open it for case ``case_id`` (32 bytes); the stored request (``request_id``,
        ``platform``, ``tx_hash`` …). :class:`ApiError` 404 for a commitment in no
        verified log."""
        return self._regulator_call("POST", "/v1/disclosures",
                                    {"commitment": commitment.hex(), "case_id": case_id.hex()})

    def requested_disclosures(self) -> list[dict[str, Any]]:
        """Every disclosure request this regulator made, each with ``collected``."""
        found: list[dict[str, Any]] = self._regulator_call(
            "GET", "/v1/disclosures")["disclosures"]
        return found

    def collect_disclosure(self, request_id: int, *, wait: float = 0.0,
                           poll: float = 1.0) -> dict[str, Any] | None:
        """Fetch, check and keep the platform's answer to ``request_id``: the verified
        opening, or ``None`` while the request is not fulfilled on chain (after polling up
        to ``wait`` seconds). :class:`ApiError` 422 ``disclosure-rejected`` names the
        failed check; 404 an unknown request."""
        deadline = time.monotonic() + wait
        while True:
            answer = self._send("POST", f"/v1/disclosures/{request_id}/collect", signed=True)
            if answer.status_code != 202:
                data: dict[str, Any] = answer.json()
                return data
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(poll, float(answer.headers.get("Retry-After", poll)), left))

    def case_file(self, case_id: bytes, *, identities: Sequence[bytes] = (),
                  refs: Sequence[str] = ()) -> dict[str, Any]:
        """A self-contained ``jointledger/case-file/v1`` document for case ``case_id``:
        alerts on ``identities`` (identity keys), their records plus ``refs``, and the
        case's collected disclosures (docs/casefile.md)."""
        return self._regulator_call("POST", "/v1/cases", {
            "case_id": case_id.hex(), "identities": [key.hex() for key in identities],
            "refs": list(refs)})

    def _regulator_call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """A signed call to the regulator node; its JSON answer."""
        content = b"" if body is None else json.dumps(body).encode()
        data: dict[str, Any] = self._send(method, path, content=content, signed=True).json()
        return data

    @property
    def log_id(self) -> bytes:
        """The log id of the node this client talks to (the audience of its signatures)."""
        if self._log_id is None:
            try:
                document = self.health()
            except ApiError as exc:  # 503 while the chain is down still names the log
                health = exc.document.get("health")
                if exc.status != 503 or not isinstance(health, dict):
                    raise
                document = health
            self._log_id = bytes.fromhex(str(document["log_id"]))
        return self._log_id

    def leaf_range(self, log_id: bytes, start: int, end: int) -> LeafRange:
        """Leaves ``[start, end)`` (1..10,000 of them) of ``log_id`` with their escrows.

        Raises :class:`ApiError` for a problem answer (416 past the log's size, 404 for a
        log the node does not serve, 403 for a member that is not a regulator) and
        :class:`~ledger_node.errors.InvalidLeaf` if the answer is malformed or is not the
        range asked for.
        """
        answer = self._send("GET", f"/v1/logs/{log_id.hex()}/leaves",
                            params={"start": start, "end": end}, signed=True)
        return _leaf_range_from_json(answer.json(), log_id, start, end)

    def leaves(self, log_id: bytes, start: int, end: int) -> list[Leaf]:
        """The leaves ``[start, end)`` of ``log_id`` with their escrows (see :meth:`leaf_range`)."""
        return self.leaf_range(log_id, start, end).leaves

    def disclosures(self) -> list[dict[str, Any]]:
        """Every disclosure request addressed to this node's platform, with its state."""
        data: list[dict[str, Any]] = self._send("GET", "/v1/disclosures", signed=True).json()
        return data

    def disclosure_response(self, request_id: int) -> bytes:
        """The sealed answer to disclosure request ``request_id`` as the node stores it.

        Open it with :func:`~ledger_node.protocol.disclosure.open_disclosure_response`, and compare
        :func:`~ledger_node.protocol.disclosure.response_digest` with the digest on chain. Raises
        :class:`ApiError` 404 while the request is not answered.
        """
        data = self._send("GET", f"/v1/disclosures/{request_id}/response", signed=True).json()
        return bytes.fromhex(str(data["response"]))

    def _signature_headers(self, method: str, target: str, content: bytes) -> dict[str, str]:
        audience = (regulator_node_audience(self.regulator_node_name)
                    if self._regulator_node is not None or self._regulator_node_pending
                    else self.log_id)
        return sign_request(self._key, self.account, method, target, content,
                            audience=audience)


class RegulatorCopyClient(NodeClient):
    """A platform's client of a regulator node: its own leaves read back from the
    regulator's verified copy (``GET /v1/logs/{log_id}/leaves`` of the regulator node), to
    restore a store that lost its tail or holds damaged rows.

    Every call is an SM2-signed request made as the platform's chain ``account`` with its
    ``sm2_key``, for the regulator node's ``audience``
    (:func:`ledger_node.regulator.node.node_audience` of its name). What it returns is only
    what the regulator says: check it against the anchored roots before using it.
    """

    def __init__(
        self,
        base_url: str,
        account: str,
        sm2_key: gmcrypto.SM2PrivateKey,
        audience: bytes,
        *,
        http: httpx.Client | None = None,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.2,
        tls: ClientTls = NO_CLIENT_TLS,
    ) -> None:
        """A client of the regulator node at ``base_url``, acting as the platform
        ``account``. Transport options are :class:`NodeClient`'s."""
        super().__init__(base_url, http=http, timeout=timeout, retries=retries, backoff=backoff,
                         tls=tls)
        self.account = account
        self._key = sm2_key
        self._audience = audience

    def leaf_range(self, log_id: bytes, start: int, end: int) -> LeafRange:
        """Leaves ``[start, end)`` (1..10,000) of ``log_id`` as the regulator verified them,
        escrows included; ``size`` is the regulator's verified size of the log.

        Raises :class:`ApiError` for a problem answer (416 past the verified size, 404 for a
        log the regulator does not follow, 403 for another platform's log) and
        :class:`~ledger_node.errors.InvalidLeaf` if the answer is malformed or is not the
        range asked for.
        """
        answer = self._send("GET", f"/v1/logs/{log_id.hex()}/leaves",
                            params={"start": start, "end": end}, signed=True)
        return _leaf_range_from_json(answer.json(), log_id, start, end)

    def _signature_headers(self, method: str, target: str, content: bytes) -> dict[str, str]:
        return sign_request(self._key, self.account, method, target, content,
                            audience=self._audience)


def _leaf_range_from_json(data: Any, log_id: bytes, start: int, end: int) -> LeafRange:
    """A served leaf range, checked to be the one asked for (:class:`InvalidLeaf` if not)."""
    try:
        served = LeafRange(bytes.fromhex(data["log_id"]), str(data["platform"]),
                           str(data["hash"]), int(data["start"]), int(data["end"]),
                           int(data["size"]),
                           _items_from_json(data["leaves"], Leaf.from_json, "leaves"))
    except InvalidLeaf:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidLeaf("leaves", f"malformed leaf range from the node: {exc!r}") from None
    if (served.log_id, served.start, served.end) != (log_id, start, end) or len(
        served.leaves
    ) != end - start:
        raise InvalidLeaf("leaves", f"asked for [{start}, {end}) of {log_id.hex()}, the "
                                    f"node answered {len(served.leaves)} leaves for "
                                    f"[{served.start}, {served.end}) of "
                                    f"{served.log_id.hex()}")
    return served


def own_records(submitted: Iterable[SubmittedRecord]) -> list[OwnRecord]:
    """Submitted records as reconciliation input: leaf index, record, the leaf's match tag."""
    return [OwnRecord(item.receipt.index, item.prepared.record, item.prepared.leaf.match_tag)
            for item in submitted]


def _merge_reports(parts: Sequence[dict[str, Any]], skipped: Skipped,
                   expectations: Sequence[Expectation], keys: Sequence[PairwiseKey]
                   ) -> dict[str, Any]:
    """One report from the node's answers to consecutive chunks of expectations, with the
    locally skipped counts added and each item's own record (known here) named."""
    report = dict(parts[-1])
    items = [item for part in parts for item in part["items"]]
    records = {e.index: e for e in expectations}
    for item in items:
        expected = records.get(item["index"])
        if expected is not None and expected.record is not None and expected.side is not None:
            item["side"] = expected.side.value
            item["record"] = report_record_json(expected.record)
            ids = {t.match_tag.hex(): t.key_id.hex() for t in expected.tags}
            for pair in item.get("expected", []):
                pair["key_id"] = ids.get(pair["match_tag"], "")
    report["items"] = items
    counts = {status.value: 0 for status in Status}
    for item in items:
        counts[item["status"]] += 1
    counts["duplicated_on_counterparty"] = sum(len(i["counterparty"]) > 1 for i in items)
    report["counts"] = counts
    merged = skipped.to_json()
    for part in parts:
        for reason, count in part["skipped"].items():
            merged[reason] = merged.get(reason, 0) + int(count)
    report["skipped"] = merged
    report["clean"] = all(bool(part["clean"]) for part in parts)
    report["pairwise_keys"] = [key.key_id.hex() for key in keys]
    return report


def _items_from_json(items: object, parse: Callable[[object], _Item], where: str
                     ) -> list[_Item]:
    """``[parse(item) for item in items]`` for the JSON array ``where`` of a node's answer.

    ``parse`` is the type's own reader (:meth:`Leaf.from_json`,
    :meth:`LeafSummary.from_json`), so every value is checked as it is everywhere else;
    its :class:`InvalidLeaf` is raised again naming the item, ``summaries[3].match_tag``.
    """
    if not isinstance(items, list):
        raise InvalidLeaf(where, "must be a JSON array")
    out: list[_Item] = []
    put = out.append
    for position, item in enumerate(items):
        try:
            put(parse(item))
        except InvalidLeaf as exc:
            place = f"{where}[{position}]"
            raise InvalidLeaf(place if exc.field == "leaf" else f"{place}.{exc.field}",
                              exc.reason) from None
    return out


def _retry_after(response: httpx.Response) -> float:
    """The seconds a 429 answer asks to wait (``Retry-After`` in seconds), 1 if it does not
    say, at most :data:`MAX_RETRY_AFTER_S`."""
    try:
        wanted = float(response.headers.get("Retry-After", "1"))
    except ValueError:
        wanted = 1.0
    return min(max(wanted, 0.0), MAX_RETRY_AFTER_S)


def _check_answer(response: httpx.Response) -> None:
    """Refuse an answer that is not UTF-8 JSON text of bounded depth before anything parses
    it: a node is another organisation's server (see :mod:`ledger_node.jsonlimits`)."""
    try:
        check_json_body(response.content, content_type=response.headers.get("content-type"))
    except JsonTextRefused as refused:
        raise ApiError(response.status_code, "about:blank", "Unusable answer",
                       f"{response.request.url} answered with a body this client refuses: "
                       f"{refused.reason}") from None


def _api_error(response: httpx.Response) -> ApiError:
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return ApiError(response.status_code, "about:blank", response.reason_phrase,
                        response.text[:500])
    return ApiError(response.status_code, str(document.get("type", "about:blank")),
                    str(document.get("title", response.reason_phrase)),
                    str(document.get("detail", "")), document)


def verdict_from_json(data: dict[str, Any]) -> Verdict:
    """Rebuild a :class:`~ledger_node.protocol.bundle.Verdict` from its JSON form."""
    checks = tuple(
        Check(str(c["name"]), bool(c["passed"]), str(c["detail"]), CheckStatus(c["status"]))
        for c in data["checks"]
    )
    root = data.get("root")
    return Verdict(bool(data["valid"]), bool(data["anchoring_checked"]), checks,
                   str(data.get("mode", "chain")), None if root is None else bytes.fromhex(root))
