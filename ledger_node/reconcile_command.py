"""``jointledger reconcile``: a platform reconciles its records with another platform's log.

It runs in the platform's own process, the only place that holds both the plaintext records
(the receipts ``jointledger submit`` writes: leaf index and opening per record) and the
platform's SM2 private keys (current and retired), from which the pairwise keys in force are
derived. Both platforms' logs are read over their nodes' public summaries endpoint and
verified against the chain (:class:`~ledger_node.reconciler.VerifiedLog`), so neither node is
trusted. The report (``jointledger/reconciliation/v1``, docs/reconciliation.md) goes to a
private (0600) JSON file, a summary to stdout.

Exit status: 0 when nothing is missing or mismatched, 1 when something is, 2 for unusable
input (window, receipts, counterparty, keys), 3 when a node serves a log that does not match
the chain, or a node or the chain cannot be reached.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from ledger_node.chain import Deployment, LedgerChain, Role
from ledger_node.checkpoint import log_id_for
from ledger_node.commitment import RecordOpening, verify_opening
from ledger_node.errors import InvalidOpening, InvalidReconciliationInput, InvalidRecord
from ledger_node.gmcrypto import SM2PrivateKey, private_key_from_pem
from ledger_node.keyfiles import load_member_keys
from ledger_node.reconciler import VerifiedLog, platform_member, reconcile
from ledger_node.reconciliation import EXCEPTIONS, ReconciliationReport, Window
from ledger_node.sdk import NodeClient

Echo = Callable[[str], None]
EXIT_CLEAN: Final = 0
EXIT_FINDINGS: Final = 1
EXIT_UNUSABLE: Final = 2
EXIT_REFUSED: Final = 3


def read_receipts(paths: Sequence[Path]) -> list[tuple[int, RecordOpening]]:
    """``(leaf index, opening)`` of every receipt line in ``paths`` (``jointledger submit``'s
    JSONL: ``index``, ``commitment``, ``opening``, other keys ignored).

    Each opening must open the line's commitment. A leaf listed twice with the same opening
    counts once. Raises :class:`InvalidReconciliationInput` naming the file and line of the
    first unreadable, malformed or contradictory receipt, or when no receipt is given.
    """
    found: dict[int, RecordOpening] = {}
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InvalidReconciliationInput(str(path), f"cannot read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InvalidReconciliationInput(str(path), "is not UTF-8 text") from None
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            where = f"{path}:{number}"
            index, opening = _receipt(where, text)
            known = found.setdefault(index, opening)
            if known != opening:
                raise InvalidReconciliationInput(where, f"leaf {index} has another receipt "
                                                        "with a different opening")
    if not found:
        raise InvalidReconciliationInput(", ".join(map(str, paths)) or "--records",
                                         "holds no receipts")
    return sorted(found.items())


def _receipt(where: str, text: str) -> tuple[int, RecordOpening]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidReconciliationInput(where, f"not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InvalidReconciliationInput(where, "a receipt is a JSON object")
    index = data.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidReconciliationInput(where, f"index {index!r} is not a leaf index")
    try:
        opening = RecordOpening.from_json(data.get("opening"))
        commitment = bytes.fromhex(str(data.get("commitment")))
        verify_opening(commitment, opening)
    except (InvalidRecord, InvalidOpening, ValueError) as exc:
        raise InvalidReconciliationInput(where, f"unusable opening or commitment: {exc}"
                                         ) from None
    return index, opening


def load_retired_keys(paths: Sequence[Path]) -> list[SM2PrivateKey]:
    """The platform's retired SM2 private keys (PEM); :class:`InvalidKey` if unreadable."""
    keys = []
    for path in paths:
        try:
            keys.append(private_key_from_pem(path.read_bytes()))
        except OSError as exc:
            raise InvalidReconciliationInput(str(path), f"cannot read: {exc.strerror}") from None
    return keys


def run_reconcile(
    *,
    platform: str,
    sm2_key: Path,
    account_key: Path,
    deployment: Path,
    rpc_url: str,
    url: str,
    counterparty: str,
    counterparty_url: str,
    window: Window,
    grace: timedelta,
    receipts: Sequence[Path],
    retired_keys: Sequence[Path] = (),
    counterparty_shard: int = 0,
    shard: int = 0,
    as_of: datetime | None = None,
    out: Path | None = None,
    matched_bundles: bool = True,
    echo: Echo = print,
    chain: LedgerChain | None = None,
) -> int:
    """Reconcile ``platform``'s receipts with ``counterparty``; write the report; return the
    exit status (see the module docstring).

    Local input is read and checked before anything is fetched. ``chain`` replaces the one
    reached at ``rpc_url`` (tests). Raises :class:`InvalidReconciliationInput`,
    :class:`~ledger_node.errors.InvalidKey`, :class:`~ledger_node.errors.UnknownCounterparty`,
    :class:`~ledger_node.errors.PairwiseKeyUnavailable` (unusable input),
    :class:`~ledger_node.errors.LogVerificationFailed` and other
    :class:`~ledger_node.errors.LedgerError` subclasses.
    """
    records = read_receipts(receipts)
    keys = load_member_keys(sm2_key, account_key)
    retired = load_retired_keys(retired_keys)
    bound = chain if chain is not None else LedgerChain.from_rpc(rpc_url).attach(
        Deployment.load(deployment))
    own = bound.member(keys.address)
    if own.role is not Role.PLATFORM or own.name != platform:
        raise InvalidReconciliationInput("config", f"{keys.address} is registered as "
                                                   f"{own.role.name.lower()} {own.name!r}, not "
                                                   f"platform {platform!r}")
    peer = platform_member(bound, counterparty, not_address=keys.address)
    with NodeClient(url) as own_node, NodeClient(counterparty_url) as peer_node:
        report = reconcile(
            bound, own=own, own_keys=[keys.sm2_key, *retired],
            own_log=VerifiedLog(bound, own, log_id_for(platform, shard), own_node),
            counterparty=peer,
            counterparty_log=VerifiedLog(bound, peer, log_id_for(peer.name, counterparty_shard),
                                         peer_node),
            records=records, window=window, grace=grace, as_of=as_of,
            matched_bundles=matched_bundles)
    target = out or Path(f"reconciliation-{platform}-{peer.name}-"
                         f"{window.start:%Y%m%dT%H%M%SZ}.json")
    _write_private(target, report, matched_bundles)
    for line in summary_lines(report):
        echo(line)
    echo(f"report with proof bundles (keep it private): {target}")
    return EXIT_CLEAN if report.clean else EXIT_FINDINGS


def _write_private(path: Path, report: ReconciliationReport, matched_bundles: bool) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(report.to_json(matched_bundles=matched_bundles), handle, indent=1,
                  ensure_ascii=False)
        handle.write("\n")


def summary_lines(report: ReconciliationReport) -> list[str]:
    """A human summary: the counts, then each finding with its record and leaves."""
    counts = report.counts()
    window = report.window.to_json()
    lines = [
        f"{report.platform} with {report.counterparty}, payments in [{window['start']}, "
        f"{window['end']}), grace {report.grace.total_seconds():.0f} s, as of "
        f"{report.as_of:%Y-%m-%dT%H:%M:%SZ}",
        f"  logs verified against the chain: {report.platform} "
        f"{report.own_log['verified_size']:,} leaves, {report.counterparty} "
        f"{report.counterparty_log['verified_size']:,} leaves",
        "  " + ", ".join(f"{status.replace('_', ' ')} {count:,}"
                         for status, count in counts.items()),
        "  skipped: " + ", ".join(f"{reason.replace('_', ' ')} {count:,}"
                                  for reason, count in report.skipped.to_json().items()),
    ]
    for item in report.items:
        if item.status not in EXCEPTIONS:
            continue
        record = item.outcome.expectation.record
        assert record is not None
        where = ", ".join(f"{report.counterparty} leaf {i}" for i, _, _ in item.counterparty)
        lines.append(f"  {item.status.value:15s} {record.local_tx_id} clearing "
                     f"{record.clearing_ref} {record.amount_fen} fen {record.currency} "
                     f"(leaf {item.outcome.expectation.index}"
                     f"{'; ' + where if where else ''})")
    return lines


__all__ = [
    "EXIT_CLEAN",
    "EXIT_FINDINGS",
    "EXIT_REFUSED",
    "EXIT_UNUSABLE",
    "load_retired_keys",
    "read_receipts",
    "run_reconcile",
    "summary_lines",
]
