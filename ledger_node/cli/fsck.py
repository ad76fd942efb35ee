"""``jointledger fsck``: check a node's store row by row, and repair a platform's store from
the regulator's verified copy (docs/node.md § Integrity, docs/regulator.md § Integrity).

A platform store (the default): every leaf row re-verified (its leaf hash recomputed from
its commitment, escrow and tags), the tree rebuilt, every stored checkpoint's root compared
(and its SM2 signature, with the platform's registered keys), every stored Merkle level
chunk compared; with a chain, every root the chain anchored for the log too, and whether the
chain is ahead of the store. ``--repair-from REGULATOR_URL`` then re-fetches the damaged rows
and the lost tail from the regulator, checks them against every anchored root and writes
them in one transaction; ``--rebuild-levels`` only drops the stored Merkle levels (the next
start rebuilds them). A regulator store (``--role regulator``): every record re-verified,
each log's tree compared with its verified root and anchored roots.

The store must not be open elsewhere (a running node holds its lock): stop the node first.
Exit status: 0 nothing damaged or missing (or all of it repaired), 1 something is (each
problem on its own line), 2 unusable input.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from ledger_node.chain.adapter import AnchoredCheckpoint, LedgerChain
from ledger_node.client.sdk import RegulatorCopyClient
from ledger_node.crypto import gmcrypto
from ledger_node.crypto.keyfiles import MemberKeys
from ledger_node.errors import InvalidKey, InvalidSignature, StoreCorrupted
from ledger_node.log.checkpoint import verify_checkpoint_signature
from ledger_node.log.leaf import Leaf
from ledger_node.log.merkle import Hasher, hasher_for
from ledger_node.platform.integrity import (
    FsckReport,
    TrustedRoot,
    batch_problems,
    full_check,
)
from ledger_node.platform.repair import RepairPlan, apply_repair, plan_repair
from ledger_node.platform.store import SQLiteStore
from ledger_node.regulator import integrity as regulator_integrity
from ledger_node.regulator.open_store import open_regulator_store

__all__ = ["EXIT_CLEAN", "EXIT_DAMAGED", "EXIT_UNUSABLE", "run_platform_fsck",
           "run_regulator_fsck", "store_identity"]

EXIT_CLEAN: Final = 0
EXIT_DAMAGED: Final = 1
EXIT_UNUSABLE: Final = 2
Echo = Callable[[str], None]


def store_identity(path: Path) -> tuple[str, bytes, str]:
    """The platform, log id and hash a platform store was made for (its ``meta`` table),
    read without opening it for writing. Raises :class:`StoreCorrupted` if it is not one."""
    if not path.is_file():
        raise StoreCorrupted(f"store {path} does not exist")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = {str(k): str(v) for k, v in db.execute("SELECT key, value FROM meta")}
        finally:
            db.close()
        return meta["platform"], bytes.fromhex(meta["log_id"]), meta["hash"]
    except (sqlite3.Error, KeyError, ValueError) as exc:
        raise StoreCorrupted(f"{path} is not a platform store: {exc}") from None


def _public_keys(keys: Sequence[bytes]) -> list[gmcrypto.SM2PublicKey]:
    public = []
    for raw in keys:
        try:
            public.append(gmcrypto.SM2PublicKey.from_raw(raw))
        except InvalidKey:
            continue
    return public


def _signature_problems(store: SQLiteStore, keys: Sequence[bytes]) -> list[str]:
    """Stored checkpoints whose SM2 signature verifies with none of ``keys``."""
    public = _public_keys(keys)
    problems = []
    for cp in store.checkpoints():
        for key in public:
            try:
                verify_checkpoint_signature(key, cp.signed())
                break
            except InvalidSignature:
                continue
        else:
            problems.append(f"the {cp.status} checkpoint of size {cp.tree_size}: its signature "
                            "verifies with no key the platform has registered")
    return problems


def _print_report(report: FsckReport, signatures: Sequence[str], echo: Echo) -> None:
    for index, reason in report.rows:
        echo(f"  leaf {index}: damaged: {reason}")
    for level, chunk, reason in report.level_chunks:
        echo(f"  Merkle level {level} chunk {chunk}: {reason}")
    for problem in report.roots:
        echo(f"  root: {problem}")
    for problem in signatures:
        echo(f"  {'evidence' if problem.startswith('batch') else 'signature'}: {problem}")
    if report.behind is not None:
        chain_size, size = report.behind
        echo(f"  behind the chain: the chain anchored the log up to size {chain_size}, the "
             f"store holds {size} leaves ({chain_size - size} missing)")
    for note in report.notes:
        echo(f"  note: {note}")


def run_platform_fsck(path: Path, *, chain: LedgerChain | None = None,
                      keys: MemberKeys | None = None,
                      regulator: RegulatorCopyClient | None = None,
                      rebuild_levels: bool = False, echo: Echo = print) -> int:
    """Check the platform store at ``path``; repair it from ``regulator`` if given.

    ``chain`` (attached to the deployment) adds the chain's anchored roots and registered
    keys; ``keys`` (the platform's own) sign nothing here but give its key when there is no
    chain. Returns the exit status (see the module docstring). Raises
    :class:`~ledger_node.errors.StoreLocked` if a node has the store open.
    """
    platform, log_id, hash_name = store_identity(path)
    hasher = hasher_for(hash_name)
    store = SQLiteStore(path, platform=platform, log_id=log_id, hash_name=hash_name)
    try:
        history: list[AnchoredCheckpoint] = []
        registered: list[bytes] = []
        if chain is not None:
            history = chain.checkpoints(log_id)
            owner = chain.log_owner(log_id) or (keys.address if keys is not None else None)
            if owner is not None:
                registered = [p.public_key for p in chain.key_history(chain.member(owner))]
        elif keys is not None:
            registered = [keys.sm2_key.public_key().raw]
        report = _check(store, hasher, history)
        signatures = _signature_problems(store, registered) if registered else []
        signatures += batch_problems(store, log_id,
                                     _public_keys(registered) if registered else None)
        echo(f"jointledger fsck: store {path}: platform {platform}, log {log_id.hex()}, "
             f"{report.size} leaves, {len(store.checkpoints())} checkpoints"
             + ("" if chain is not None else " (no chain given: anchored roots not compared)")
             + ("" if registered else "; checkpoint signatures not checked (no key)"))
        _print_report(report, signatures, echo)
        if regulator is None and not rebuild_levels:
            if report.clean and not signatures:
                echo("clean")
                return EXIT_CLEAN
            echo("damaged: repair with --repair-from REGULATOR_URL (damaged rows, the lost "
                 "tail) or --rebuild-levels (Merkle level chunks only)")
            return EXIT_DAMAGED
        if regulator is not None:
            if chain is None:
                echo("--repair-from needs the chain (--rpc-url or --config) to check the "
                     "regulator's copy against the anchored roots")
                return EXIT_UNUSABLE

            def fetch(start: int, end: int) -> list[Leaf]:
                return regulator.leaf_range(log_id, start, end).leaves

            plan = plan_repair(store, report, hasher=hasher, chain_history=history,
                               fetch=fetch, platform=platform, log_id=log_id,
                               hash_name=hash_name)
        else:
            plan = RepairPlan()
        apply_repair(store, plan)
        restored = (f"leaves {plan.appended[0].index}..{plan.appended[-1].index}"
                    if plan.appended else "no leaves")
        echo(f"repaired: {len(plan.replaced)} damaged row(s) replaced, {restored} restored "
             f"from the regulator's copy, {len(plan.checkpoints)} anchored checkpoint(s) "
             f"added, {len(plan.dropped)} never-anchored checkpoint(s) dropped; the Merkle "
             "levels are rebuilt at the next start")
        for index, reason in plan.unrepairable:
            echo(f"  leaf {index}: not repaired: {reason}")
        after = _check(store, hasher, history)
        _print_report(after, [], echo)
        if after.clean and not plan.unrepairable:
            echo("clean")
            return EXIT_CLEAN
        return EXIT_DAMAGED
    finally:
        store.close()


def _check(store: SQLiteStore, hasher: Hasher, history: Sequence[AnchoredCheckpoint]
           ) -> FsckReport:
    """:func:`full_check` with the chain's anchored roots the store reaches, and whether the
    chain is ahead of it."""
    size = store.size()
    roots = [TrustedRoot(a.tree_size, a.root, "the chain's anchored checkpoint")
             for a in history if a.tree_size <= size]
    report = full_check(store, hasher, extra_roots=roots)
    if history and history[-1].tree_size > size:
        report.behind = (history[-1].tree_size, size)
    anchored = {cp.tree_size for cp in store.checkpoints("anchored")}
    on_chain = {a.tree_size for a in history}
    if history:
        lost = sorted(anchored - on_chain)
        if lost:
            report.notes.append(f"{len(lost)} checkpoint(s) the store holds as anchored are not "
                                f"on chain (sizes {lost[:5]}…): the node anchors them again")
    return report


def run_regulator_fsck(path: Path | str, name: str, *, chain: LedgerChain | None = None,
                       echo: Echo = print) -> int:
    """Check the regulator store at ``path`` (a SQLite file or a ``postgresql://`` URL, made
    for regulator ``name``); see the module docstring. Returns the exit status."""
    store = open_regulator_store(path, regulator=name)
    path = store.location  # never a password
    try:
        history = ({state.log_id: chain.checkpoints(state.log_id) for state in store.logs()}
                   if chain is not None else None)
        reports = regulator_integrity.full_check(store, chain_history=history)
        echo(f"jointledger fsck: regulator store {path}: {len(reports)} followed log(s), "
             f"{store.record_count()} records"
             + ("" if chain is not None else " (no chain given: the stored anchors are the "
                "reference)"))
        clean = True
        for report in reports:
            echo(f" {report.platform} log {report.log_id.hex()}: {report.verified_size} "
                 f"verified leaves{'' if report.clean else ': DAMAGED'}")
            for index, reason in report.rows:
                echo(f"  leaf {index}: damaged: {reason}")
            for problem in report.roots:
                echo(f"  root: {problem}")
            clean = clean and report.clean
        echo("clean" if clean else "damaged: the node refuses to start on (or to serve) these "
             "rows; restore the store from a backup or re-ingest the logs")
        return EXIT_CLEAN if clean else EXIT_DAMAGED
    finally:
        store.close()
