"""``jointledger reconcile``: a platform reconciles its records with another platform's logs.

It runs in the platform's own process, the only place that holds both the plaintext records
(the receipts ``jointledger submit`` writes: log, leaf index and opening per record) and the
platform's SM2 private keys (current and retired), from which the pairwise keys in force are
derived. Every log involved is read over its node's public summaries endpoint and verified
against the chain (:class:`~ledger_node.reconcile.reconciler.VerifiedLog`), so no node is trusted.

**Shards.** Either platform may run several log shards (docs/shards.md). The command is given
the node URLs of both (``--url``, ``--counterparty-url``, each a list) and asks each node
which log it serves (``/v1/health``). The own logs read are those the receipts name; the
counterparty's are every log the chain says it owns (``logsOf``): a counterparty half may be
on any of them, so a log on chain that no given node serves is an error, not a silent gap
(it would turn matched payments into "missing"). All counterparty shards are matched at once
(:func:`~ledger_node.reconcile.reconciler.reconcile_shards`).

The report (``jointledger/reconciliation-shards/v1``, docs/reconciliation.md) goes to a
private (0600) JSON file, a summary to stdout. Exit status: 0 when nothing is missing or
mismatched, 1 when something is, 2 for unusable input (window, receipts, counterparty, keys,
a log without a node), 3 when a node serves a log that does not match the chain, or a node
or the chain cannot be reached.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx

from ledger_node.chain.adapter import Deployment, LedgerChain, Member, Role
from ledger_node.client.sdk import NodeClient
from ledger_node.client.sharded import describe_logs, shard_number, unread_logs
from ledger_node.crypto.gmcrypto import SM2PrivateKey, private_key_from_pem
from ledger_node.crypto.keyfiles import load_member_keys
from ledger_node.errors import (
    ApiError,
    InvalidOpening,
    InvalidReconciliationInput,
    InvalidRecord,
    LogVerificationFailed,
)
from ledger_node.gcpause import gc_paused
from ledger_node.jsonlimits import JsonTextRefused, parse_json_text
from ledger_node.log.checkpoint import log_id_for
from ledger_node.protocol.commitment import RecordOpening, verify_opening
from ledger_node.protocol.keys_in_force import platform_member
from ledger_node.protocol.reconciliation import EXCEPTIONS, Window
from ledger_node.reconcile.reconciler import (
    FAULT_UNREACHABLE,
    FAULT_WRONG_LOG,
    VerifiedLog,
    reconcile_shards,
)
from ledger_node.tls import NO_CLIENT_TLS, ClientTls

Receipts = dict[bytes, list[tuple[int, RecordOpening]]]
"""Own records by log id: ``(leaf index, opening)`` in index order."""

Echo = Callable[[str], None]
EXIT_CLEAN: Final = 0
EXIT_FINDINGS: Final = 1
EXIT_UNUSABLE: Final = 2
EXIT_REFUSED: Final = 3
RECEIPTS_EXPECTED: Final = ("expected the receipts file jointledger submit wrote for this "
                            "platform (JSON lines; RECORDS.receipts.jsonl by default). Try: "
                            "--records RECORDS.receipts.jsonl, not the records file itself")
"""The expected-and-try half of every refusal of an unusable receipts file."""


def read_receipts(paths: Sequence[Path], *, default_log: bytes) -> Receipts:
    """The records of every receipt line in ``paths`` (``jointledger submit``'s JSONL:
    ``log_id``, ``index``, ``commitment``, ``opening``, other keys ignored), by log.

    A receipt without ``log_id`` (written before shards) is in ``default_log``. Each opening
    must open the line's commitment. A leaf listed twice with the same opening counts once.
    Raises :class:`InvalidReconciliationInput` naming the file and line of the first
    unreadable, malformed or contradictory receipt, or when no receipt is given.
    """
    found: dict[tuple[bytes, int], RecordOpening] = {}
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InvalidReconciliationInput(str(path), f"cannot read ({exc.strerror}); "
                                                        f"{RECEIPTS_EXPECTED}") from None
        except UnicodeDecodeError:
            raise InvalidReconciliationInput(str(path), f"is not UTF-8 text; "
                                                        f"{RECEIPTS_EXPECTED}") from None
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            where = f"{path}:{number}"
            log_id, index, opening = _receipt(where, text, default_log)
            known = found.setdefault((log_id, index), opening)
            if known != opening:
                raise InvalidReconciliationInput(where, f"leaf {index} has another receipt "
                                                        "with a different opening")
    if not found:
        raise InvalidReconciliationInput(", ".join(map(str, paths)) or "--records",
                                         "holds no receipts")
    out: Receipts = {}
    for (log_id, index), opening in sorted(found.items()):
        out.setdefault(log_id, []).append((index, opening))
    return out


def _receipt(where: str, text: str, default_log: bytes) -> tuple[bytes, int, RecordOpening]:
    try:
        data = parse_json_text(text)
    except JsonTextRefused as refused:
        raise InvalidReconciliationInput(where, refused.reason) from None
    except json.JSONDecodeError as exc:
        raise InvalidReconciliationInput(where, f"not JSON ({exc.msg}); {RECEIPTS_EXPECTED}"
                                         ) from None
    if not isinstance(data, dict):
        raise InvalidReconciliationInput(where, f"not a receipt (a JSON object); "
                                                f"{RECEIPTS_EXPECTED}")
    if not {"index", "commitment", "opening"} <= data.keys():
        raise InvalidReconciliationInput(where, "not a receipt: it has no index, commitment "
                                                f"and opening (a record?); {RECEIPTS_EXPECTED}")
    index = data.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidReconciliationInput(where, f"index {index!r} is not a leaf index")
    log_id = default_log
    if data.get("log_id") is not None:
        try:
            log_id = bytes.fromhex(str(data["log_id"]))
        except ValueError:
            log_id = b""
        if len(log_id) != 32:
            raise InvalidReconciliationInput(where, f"log_id {data['log_id']!r} is not a "
                                                    "32-byte hex log id")
    try:
        opening = RecordOpening.from_json(data.get("opening"))
        commitment = bytes.fromhex(str(data.get("commitment")))
        verify_opening(commitment, opening)
    except (InvalidRecord, InvalidOpening, ValueError) as exc:
        raise InvalidReconciliationInput(
            where, f"unusable opening or commitment ({exc}); expected each receipt as "
                   "jointledger submit wrote it, its opening opening its commitment. Try: the "
                   "receipts file as submit wrote it (a changed receipt cannot be used)"
        ) from None
    return log_id, index, opening


def load_retired_keys(paths: Sequence[Path]) -> list[SM2PrivateKey]:
    """The platform's retired SM2 private keys (PEM); :class:`InvalidKey` if unreadable."""
    keys = []
    for path in paths:
        try:
            keys.append(private_key_from_pem(path.read_bytes()))
        except OSError as exc:
            raise InvalidReconciliationInput(str(path), f"cannot read: {exc.strerror}") from None
    return keys


def serving_nodes(platform: str, nodes: Sequence[tuple[str, NodeClient]]
                  ) -> dict[bytes, NodeClient]:
    """Which log each of ``platform``'s nodes serves, from its ``/v1/health``.

    Raises :class:`LogVerificationFailed` (``unreachable``) for a node that cannot say, and
    (``wrong-log``) for a node of another platform; :class:`InvalidReconciliationInput` for
    two URLs serving one log.
    """
    out: dict[bytes, NodeClient] = {}
    urls: dict[bytes, str] = {}
    for url, node in nodes:
        health = _health(platform, url, node)
        try:
            served, log_id = str(health["platform"]), bytes.fromhex(str(health["log_id"]))
        except (KeyError, ValueError):
            raise LogVerificationFailed(platform, FAULT_WRONG_LOG, f"{url} names no log in "
                                        "its health document") from None
        if served != platform:
            raise LogVerificationFailed(platform, FAULT_WRONG_LOG, f"{url} serves {served!r}'s "
                                        f"log {log_id.hex()[:16]}…, not one of {platform}'s")
        if log_id in urls:
            raise InvalidReconciliationInput(url, f"serves the same log as {urls[log_id]} "
                                             f"({platform}'s {describe_logs(platform, [log_id])} "
                                             "given twice)")
        out[log_id], urls[log_id] = node, url
    return out


def others_receipts(platform: str, records: Receipts, members: Sequence[Member]
                    ) -> tuple[str, list[bytes]] | None:
    """The other platform whose shard logs ``records`` name, and those logs; ``None`` if
    the receipts name no log of another platform among ``members``.

    Why: another platform's receipts are the likeliest mistake behind a log of the receipts
    that is not ``platform``'s (the two platforms' submit write files of the same name), and
    the message should say so rather than ask for a node of a shard that does not exist.
    """
    for member in members:
        if member.role is not Role.PLATFORM or member.name == platform:
            continue
        theirs = [log_id for log_id in records if shard_number(platform, log_id) is None
                  and shard_number(member.name, log_id) is not None]
        if theirs:
            return member.name, theirs
    return None


def _health(platform: str, url: str, node: NodeClient) -> Mapping[str, Any]:
    try:
        return node.health()
    except ApiError as exc:
        held = exc.document.get("health")  # 503: the node's chain is down; it still says
        if exc.status == 503 and isinstance(held, dict):
            return held
        raise LogVerificationFailed(platform, FAULT_UNREACHABLE, f"{url} did not say which log "
                                    f"it serves: {exc}") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise LogVerificationFailed(platform, FAULT_UNREACHABLE, f"{url} did not say which log "
                                    f"it serves: {type(exc).__name__}: {exc}") from None


def _by_shard(platform: str, log_ids: Sequence[bytes]) -> list[bytes]:
    """``log_ids`` in shard order (logs of no known shard last)."""
    def order(log_id: bytes) -> tuple[int, bytes]:
        shard = shard_number(platform, log_id)
        return (2**32 if shard is None else shard, log_id)
    return sorted(log_ids, key=order)


def run_reconcile(
    *,
    platform: str,
    sm2_key: Path,
    account_key: Path,
    deployment: Path,
    rpc_url: str,
    urls: Sequence[str],
    counterparty: str,
    counterparty_urls: Sequence[str],
    window: Window,
    grace: timedelta,
    receipts: Sequence[Path],
    retired_keys: Sequence[Path] = (),
    shard: int = 0,
    as_of: datetime | None = None,
    out: Path | None = None,
    matched_bundles: bool = True,
    echo: Echo = print,
    chain: LedgerChain | None = None,
    tls: ClientTls = NO_CLIENT_TLS,
) -> int:
    """Reconcile ``platform``'s receipts with every shard log of ``counterparty``; write the
    report; return the exit status (see the module docstring).

    ``urls`` are the platform's own shard nodes, ``counterparty_urls`` the counterparty's;
    ``shard`` is the log of receipts that name none. Local input is read and checked before
    anything is fetched. ``chain`` replaces the one reached at ``rpc_url`` (tests); the
    chain and every node are reached with ``tls`` (CA bundle, client certificate). Raises
    :class:`InvalidReconciliationInput` (also for a log with no node given),
    :class:`~ledger_node.errors.InvalidKey`, :class:`~ledger_node.errors.UnknownCounterparty`,
    :class:`~ledger_node.errors.PairwiseKeyUnavailable` (unusable input),
    :class:`~ledger_node.errors.LogVerificationFailed` and other
    :class:`~ledger_node.errors.LedgerError` subclasses.
    """
    with ExitStack() as stack:
        stack.enter_context(gc_paused())  # from reading the receipts to the report
        records = read_receipts(receipts, default_log=log_id_for(platform, shard))
        keys = load_member_keys(sm2_key, account_key)
        retired = load_retired_keys(retired_keys)
        bound = chain if chain is not None else LedgerChain.from_rpc(
            rpc_url, **tls.requests_options()).attach(Deployment.load(deployment))
        own = bound.member(keys.address)
        if own.role is not Role.PLATFORM or own.name != platform:
            raise InvalidReconciliationInput("config", f"{keys.address} is registered as "
                                                       f"{own.role.name.lower()} {own.name!r}, not "
                                                       f"platform {platform!r}")
        peer = platform_member(bound, counterparty, not_address=keys.address)

        foreign = others_receipts(platform, records, bound.members())
        if foreign:
            owner, logs = foreign
            raise InvalidReconciliationInput(
                "--records " + ", ".join(map(str, receipts)),
                f"these are {owner}'s receipts ({owner}'s {describe_logs(owner, logs)} named "
                f"by them), "
                f"not {platform}'s. Expected: {platform}'s own receipts, as {platform}'s "
                f"jointledger submit --config (this config) wrote them, RECORDS.receipts.jsonl "
                f"by default. Try: give {platform}'s receipts files, or reconcile {owner}'s "
                f"records with {owner}'s config and --counterparty {platform}")

        def open_nodes(given: Sequence[str]) -> list[tuple[str, NodeClient]]:
            return [(url, stack.enter_context(NodeClient(url, tls=tls)))
                    for url in dict.fromkeys(given)]

        own_nodes = serving_nodes(platform, open_nodes(urls))
        peer_nodes = serving_nodes(peer.name, open_nodes(counterparty_urls))
        no_node = [log_id for log_id in records if log_id not in own_nodes]
        if no_node:
            raise InvalidReconciliationInput("--url", f"{platform}'s "
                                             f"{describe_logs(platform, no_node)} named by the "
                                             "receipts, but no node given serves it: give "
                                             "every own shard node")
        unread = unread_logs(bound, peer, peer_nodes)
        if unread:
            raise InvalidReconciliationInput("--counterparty-url", f"{peer.name}'s "
                                             f"{describe_logs(peer.name, unread)} on chain, but "
                                             "no node given serves it, and a half there would "
                                             "be reported missing: give every shard node of "
                                             f"{peer.name}")
        report = reconcile_shards(
            bound, own=own, own_keys=[keys.sm2_key, *retired],
            own_logs=[(VerifiedLog(bound, own, log_id, own_nodes[log_id]), records[log_id])
                      for log_id in _by_shard(platform, list(records))],
            counterparty=peer,
            counterparty_logs=[VerifiedLog(bound, peer, log_id, peer_nodes[log_id])
                               for log_id in _by_shard(peer.name, list(peer_nodes))],
            window=window, grace=grace, as_of=as_of, matched_bundles=matched_bundles)
        target = out or Path(f"reconciliation-{platform}-{peer.name}-"
                             f"{window.start:%Y%m%dT%H%M%SZ}.json")
        document = report.to_json(matched_bundles=matched_bundles)
        _write_private(target, document)
    for line in summary_lines(document):
        echo(line)
    echo(f"report with proof bundles (keep it private): {target}")
    return EXIT_CLEAN if report.clean else EXIT_FINDINGS


def _write_private(path: Path, document: Mapping[str, Any]) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1, ensure_ascii=False)
        handle.write("\n")


def summary_lines(document: Mapping[str, Any]) -> list[str]:
    """A human summary of a report document (``ShardedReport.to_json``): the logs read, the
    counts, then each finding with its record and both leaves (shard and index)."""
    platform, counterparty = document["platform"], document["counterparty"]

    def logs(name: str, described: list[dict[str, Any]]) -> str:
        return f"{name} " + ", ".join(
            f"shard {'?' if d['shard'] is None else d['shard']} {d['verified_size']:,} leaves"
            for d in described)

    lines = [
        f"{platform} with {counterparty}, payments in [{document['window']['start']}, "
        f"{document['window']['end']}), grace {document['grace_s']:.0f} s, as of "
        f"{document['as_of']}",
        f"  logs verified against the chain: {logs(platform, document['own_logs'])}; "
        f"{logs(counterparty, document['counterparty_logs'])}",
        "  " + ", ".join(f"{status.replace('_', ' ')} {count:,}"
                         for status, count in document["counts"].items()),
        "  skipped: " + ", ".join(f"{reason.replace('_', ' ')} {count:,}"
                                  for reason, count in document["skipped"].items()),
    ]
    for item in document["items"]:
        if item["status"] not in EXCEPTIONS:
            continue
        record = item["record"]
        where = "".join(f"; {counterparty} shard {peer['shard']} leaf {peer['index']}"
                        for peer in item["counterparty"])
        lines.append(f"  {item['status']:15s} {record['local_tx_id']} clearing "
                     f"{record['clearing_ref']} {record['amount_fen']} fen {record['currency']} "
                     f"({platform} shard {item['shard']} leaf {item['index']}{where})")
    return lines


__all__ = [
    "EXIT_CLEAN",
    "EXIT_FINDINGS",
    "EXIT_REFUSED",
    "EXIT_UNUSABLE",
    "load_retired_keys",
    "read_receipts",
    "run_reconcile",
    "serving_nodes",
    "summary_lines",
]
