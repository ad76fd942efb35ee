"""One platform's log shards behind one SDK client: :class:`ShardedPlatformClient`.

A platform whose intake outgrows one node runs several log shards: each is a node process
with its own store and its own log (``log_id_for(platform, shard)``), anchored on chain
separately, possibly on another machine. The client spreads submissions over them:

* **Which shard.** A leaf's shard is fixed by its commitment (the first 8 bytes, modulo the
  number of shards; commitments are uniformly random under their fresh salts, so the shards
  get even shares). Resubmitting the same prepared records therefore reaches the same
  shards, and intake stays idempotent per leaf as with one node.
* **In parallel.** Each shard's chunks go out from a thread of its own (the shards are
  separate processes); retries stay per shard (each shard has its own
  :class:`~ledger_node.client.sdk.PlatformClient`).
* **Receipts.** Each :class:`~ledger_node.client.sdk.SubmittedRecord` names the log and shard its
  leaf went to; its proof bundle is fetched from that shard (:meth:`bundle`).
* **Reconciliation.** :meth:`reconcile` has each own shard's node match its records against
  every shard log of the counterparty, and merges the answers: a half found on any
  counterparty shard is found. A counterparty log on chain with no URL given is refused,
  not skipped (its halves would be reported missing).
* **Disclosures** are answered through the shard holding the leaf (:meth:`answer_disclosure`),
  where the regulator collects them.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Final, Self

from ledger_node.chain.adapter import LedgerChain, Member
from ledger_node.client.sdk import (
    CrossPlatformHint,
    DisclosureReceipt,
    PartyKinds,
    PlatformClient,
    PreparedRecord,
    Progress,
    SubmittedRecord,
    own_records,
    registered_platform,
)
from ledger_node.crypto import gmcrypto
from ledger_node.errors import InvalidBatch, InvalidConfig, UnknownLeaf
from ledger_node.log.checkpoint import log_id_for
from ledger_node.log.leaf import Leaf
from ledger_node.protocol.bundle import ProofBundle
from ledger_node.protocol.reconciliation import DEFAULT_GRACE, Status, Window
from ledger_node.protocol.record import PaymentRecord

_PRECEDENCE: Final = (Status.MATCHED, Status.AMOUNT_MISMATCH, Status.PENDING, Status.MISSING)
"""Which status wins when the counterparty's shards answer differently for one record."""


SHARD_SEARCH: Final = 4096
"""How many shard numbers :func:`shard_number` tries (a log id is a hash: no inverse)."""


@functools.lru_cache(maxsize=1024)
def shard_number(platform: str, log_id: bytes, *, limit: int = SHARD_SEARCH) -> int | None:
    """The shard whose log id (``log_id_for(platform, shard)``) is ``log_id``, trying shards
    ``0..limit-1`` (about 8 ms per 1,000); ``None`` if none is (not a shard log of
    ``platform``, or a shard number past ``limit``)."""
    for shard in range(limit):
        if log_id_for(platform, shard) == log_id:
            return shard
    return None


def shard_of(leaf: Leaf, shards: int) -> int:
    """The position (0..shards-1) of the shard ``leaf`` goes to: fixed by its commitment."""
    if shards < 1:
        raise ValueError("a platform has at least one shard")
    return int.from_bytes(leaf.commitment[:8], "big") % shards


class ShardedPlatformClient:
    """A platform's client of all its log shards (see the module docstring)."""

    def __init__(self, shards: Sequence[PlatformClient]) -> None:
        """``shards``: one :class:`PlatformClient` per shard node, all of one platform and
        account, each of another log. Raises :class:`InvalidConfig` otherwise."""
        if not shards:
            raise InvalidConfig("a sharded client needs at least one shard")
        first = shards[0]
        if any((c.platform, c.account) != (first.platform, first.account) for c in shards):
            raise InvalidConfig("every shard client must act for the same platform and account")
        if len({c.log_id for c in shards}) != len(shards):
            raise InvalidConfig("two shard clients address the same log")
        self.shards = tuple(shards)
        self.platform = first.platform
        self.account = first.account
        self._by_log = {c.log_id: c for c in self.shards}

    @classmethod
    def connect(
        cls,
        urls: Mapping[int, str] | Sequence[str],
        platform: str,
        account: str,
        sm2_key: gmcrypto.SM2PrivateKey,
        **options: Any,
    ) -> Self:
        """Clients of shard nodes by URL: ``{shard number: url}``, or a list where shard ``i``
        is at ``urls[i]``. ``options`` are :class:`PlatformClient`'s (regulator key,
        counterparties, transport)."""
        numbered = dict(urls) if isinstance(urls, Mapping) else dict(enumerate(urls))
        return cls([PlatformClient(url, platform, account, sm2_key, shard=number, **options)
                    for number, url in sorted(numbered.items())])

    def close(self) -> None:
        """Close every shard client."""
        for client in self.shards:
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_shards(self) -> None:
        """Ask each node which log it serves; :class:`InvalidConfig` if one serves another
        log than its client addresses (a URL given for the wrong shard)."""
        for client in self.shards:
            served = bytes.fromhex(str(client.health()["log_id"]))
            if served != client.log_id:
                raise InvalidConfig(f"the node of shard {client.shard} serves log "
                                    f"{served.hex()}, not {client.log_id.hex()}")

    def shard_for_log(self, log_id: bytes) -> PlatformClient:
        """The client of the shard serving ``log_id``; :class:`UnknownLeaf` if none does."""
        client = self._by_log.get(log_id)
        if client is None:
            raise UnknownLeaf(f"log {log_id.hex()} is not one of {self.platform}'s shards here")
        return client

    # ------------------------------------------------------------------ intake

    def submit_records(
        self,
        records: Iterable[PaymentRecord],
        *,
        progress: Progress | None = None,
        kinds: Callable[[PaymentRecord], PartyKinds] | None = None,
        cross_platform: CrossPlatformHint | None = None,
    ) -> list[SubmittedRecord]:
        """Prepare ``records`` (as :meth:`PlatformClient.submit_records` does) and submit
        them over the shards; return each with its receipt, log and shard, in order."""
        prepared = self.shards[0].prepare_records(records, kinds=kinds,
                                                  cross_platform=cross_platform)
        return self.submit_prepared(prepared, progress=progress)

    def submit_prepared(self, prepared: Sequence[PreparedRecord], *,
                        progress: Progress | None = None) -> list[SubmittedRecord]:
        """Submit prepared records, each to its shard (:func:`shard_of`), all shards at once;
        return them with their receipts in order.

        Raises :class:`InvalidBatch` for an empty batch, and the first error of a shard
        (after its own retries) once every shard is done: the chunks acknowledged are
        durable, and resubmitting the same records is safe.
        """
        if not prepared:
            raise InvalidBatch("nothing to submit: a batch holds at least one leaf")
        groups: dict[int, list[int]] = {}
        for position, item in enumerate(prepared):
            groups.setdefault(shard_of(item.leaf, len(self.shards)), []).append(position)
        done = [0]
        lock = threading.Lock()

        def submit(shard: int) -> list[SubmittedRecord]:
            positions = groups[shard]
            seen = [0]

            def counted(acknowledged: int, _total: int) -> None:
                with lock:
                    done[0] += acknowledged - seen[0]
                    seen[0] = acknowledged
                    if progress is not None:
                        progress(done[0], len(prepared))

            return self.shards[shard].submit_prepared([prepared[i] for i in positions],
                                                      progress=counted)

        out: list[SubmittedRecord | None] = [None] * len(prepared)
        with ThreadPoolExecutor(max_workers=len(groups),
                                thread_name_prefix="shard-submit") as pool:
            futures = {shard: pool.submit(submit, shard) for shard in groups}
            errors = [f.exception() for f in futures.values()]
        for error in errors:
            if error is not None:
                raise error
        for shard, future in futures.items():
            for position, submitted in zip(groups[shard], future.result(), strict=True):
                out[position] = submitted
        return [item for item in out if item is not None]

    # ------------------------------------------------------------------ proofs

    def bundle(self, submitted: SubmittedRecord, *, wait: bool = True,
               timeout: float = 30.0) -> ProofBundle:
        """The proof bundle of a submitted record, from the shard its leaf went to."""
        return self.shard_for_log(submitted.log_id).bundle(submitted.receipt.index, wait=wait,
                                                           timeout=timeout)

    # ------------------------------------------------------------------ disclosures

    def answer_disclosure(self, request_id: int, submitted: SubmittedRecord,
                          regulator_key: gmcrypto.SM2PublicKey, *, chain_id: int,
                          contract: str) -> DisclosureReceipt:
        """Answer a regulator's disclosure request for a submitted record through the shard
        holding its leaf (where the regulator collects the answer): see
        :meth:`PlatformClient.answer_disclosure`."""
        return self.shard_for_log(submitted.log_id).answer_disclosure(
            request_id, submitted.prepared.opening, regulator_key, chain_id=chain_id,
            contract=contract, index=submitted.receipt.index)

    # ------------------------------------------------------------------ reconciliation

    def reconcile(
        self,
        counterparty: str,
        window: Window,
        submitted: Iterable[SubmittedRecord],
        *,
        counterparty_urls: Mapping[int, str] | Sequence[str],
        chain: LedgerChain,
        retired_keys: Sequence[gmcrypto.SM2PrivateKey] = (),
        grace: timedelta | float = DEFAULT_GRACE,
        as_of: datetime | None = None,
        matched_bundles: bool = False,
    ) -> dict[str, Any]:
        """Reconcile own submitted records with every shard log of ``counterparty``.

        ``counterparty_urls`` are the counterparty's shard nodes (``{shard: url}`` or a list
        by shard number). Each own shard's node matches that shard's records against each
        counterparty shard (:meth:`PlatformClient.reconcile`); per record the answers merge
        with the best status winning (matched, amount mismatch, pending, missing: a half is
        missing only if no shard holds it) and the counterparty leaves of every shard listed
        with their ``shard``. Returns ``{"platform", "counterparty", "window", "shards": [each
        pair's logs and counts], "counts", "skipped", "clean", "items"}``; each item carries
        its own ``shard`` and ``log_id``. Raises :class:`InvalidConfig` if the chain lists a
        log of the counterparty that no URL is given for (a half there would be reported
        missing), and what :meth:`PlatformClient.reconcile` raises.
        """
        peers = (dict(counterparty_urls) if isinstance(counterparty_urls, Mapping)
                 else dict(enumerate(counterparty_urls)))
        unread = unread_logs(chain, registered_platform(chain, counterparty, active_only=False),
                             {log_id_for(counterparty, number) for number in peers})
        if unread:
            raise InvalidConfig(f"{counterparty}'s {describe_logs(counterparty, unread)} on "
                                f"chain but not given in counterparty_urls: a half there would "
                                f"be reported missing")
        by_log: dict[bytes, list[SubmittedRecord]] = {}
        for record in submitted:
            by_log.setdefault(record.log_id, []).append(record)
        pairs: list[dict[str, Any]] = []
        items: list[dict[str, Any]] = []
        skipped: dict[str, int] = {}
        for log_id, records in sorted(by_log.items()):
            client = self.shard_for_log(log_id)
            merged: dict[int, dict[str, Any]] = {}
            for number, url in sorted(peers.items()):
                report = client.reconcile(
                    counterparty, window, own_records(records), counterparty_url=url,
                    chain=chain, retired_keys=retired_keys, grace=grace, as_of=as_of,
                    matched_bundles=matched_bundles, counterparty_shard=number)
                pairs.append({"shard": client.shard, "counterparty_shard": number,
                              "own_log": report.get("own_log"),
                              "counterparty_log": report.get("counterparty_log"),
                              "counts": report["counts"]})
                if number == min(peers):  # own records skipped: the same for every peer
                    for reason, count in report["skipped"].items():
                        skipped[reason] = skipped.get(reason, 0) + int(count)
                for answer in report["items"]:
                    _merge_item(merged, answer, number)
            items.extend(answer | {"shard": client.shard, "log_id": log_id.hex()}
                         for answer in merged.values())
        counts = {status.value: 0 for status in Status}
        for item in items:
            counts[item["status"]] += 1
        counts["duplicated_on_counterparty"] = sum(len(i["counterparty"]) > 1 for i in items)
        return {"platform": self.platform, "counterparty": counterparty,
                "window": window.to_json(), "shards": pairs, "counts": counts,
                "skipped": skipped,
                "clean": counts[Status.MISSING.value] + counts[Status.AMOUNT_MISMATCH.value] == 0,
                "items": items}


def unread_logs(chain: LedgerChain, platform: Member, read: Iterable[bytes]) -> list[bytes]:
    """The logs ``platform`` owns on chain (:meth:`LedgerChain.logs_of`) not in ``read``."""
    known = set(read)
    return [log_id for log_id in chain.logs_of(platform.address) if log_id not in known]


def describe_logs(platform: str, log_ids: Sequence[bytes]) -> str:
    """``"shard 1 (log 3f2a…) is"`` / ``"shards 1, 2 (logs …) are"``, for messages."""
    shards = [shard_number(platform, log_id) for log_id in log_ids]
    names = ", ".join("?" if n is None else str(n) for n in shards)
    logs = ", ".join(log_id.hex()[:16] + "…" for log_id in log_ids)
    if len(log_ids) == 1:
        return f"shard {names} (log {logs}) is"
    return f"shards {names} (logs {logs}) are"


def _merge_item(merged: dict[int, dict[str, Any]], item: dict[str, Any], shard: int) -> None:
    """Fold one counterparty shard's answer for an own record into ``merged`` (by index)."""
    found = [entry | {"shard": shard} for entry in item["counterparty"]]
    earlier = merged.get(item["index"])
    if earlier is None:
        merged[item["index"]] = item | {"counterparty": found}
        return
    combined = earlier["counterparty"] + found
    if _PRECEDENCE.index(Status(item["status"])) < _PRECEDENCE.index(Status(earlier["status"])):
        merged[item["index"]] = item | {"counterparty": combined}
    else:
        earlier["counterparty"] = combined


__all__ = [
    "SHARD_SEARCH",
    "ShardedPlatformClient",
    "describe_logs",
    "shard_number",
    "shard_of",
    "unread_logs",
]
