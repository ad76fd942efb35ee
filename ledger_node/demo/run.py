"""``jointledger demo``: the whole story in one command, on real processes.

1. **Scenario**: a simulated payment day with ground truth (:mod:`ledger_node.demo.scenario`).
2. **Consortium**: ``jointledger chain --consortium`` (or an external chain at ``--rpc-url``,
   deployed for the consortium here), a ``jointledger serve`` platform node per platform and
   the ``pboc`` regulator node, each its own process on 127.0.0.1 with its own keys and store
   (:class:`~ledger_node.demo.localsite.LocalSite`).
3. **Submit**: each platform's SDK commits its records, seals every escrow for the regulator
   key registered on chain, tags the halves of cross-platform payments for reconciliation
   and submits signed 10,000-leaf batches over HTTP.
4. **Anchor**: the nodes anchor SM2-signed checkpoints; consecutive checkpoints are checked
   with the nodes' consistency proofs against the roots on chain.
5. **Reconcile**: each platform reconciles the day with the other through its node; the
   findings must be exactly the planted missing and mismatched payments.
6. **Ingest**: the regulator fetches every leaf, rebuilds each log against every anchored
   root, decrypts and indexes (``POST /v1/ingest``, timed on its own).
7. **Alerts** against the planted cases; 8. **traces** of planted identities, each record
   with a proof verified against the chain; 9. a **disclosure** requested on chain, answered
   by the platform, collected; 10. a **case file** built and verified offline against the
   chain; 11. an **auditor check** that no planted identity, account token, transaction id
   or clearing reference, in any encoding or digest, is in the chain's public data or the
   nodes' public API answers.

Progress goes to stderr; the report (:mod:`ledger_node.demo.report`) to stdout, and with
every artefact to the output directory. :func:`run_demo` returns 0 when every planted case
is found, nothing else alerts or is found and every check passes, else 1.

:func:`new_party` and :func:`sample_records` are small helpers for tests and benchmarks.
"""

from __future__ import annotations

import functools
import json
import random
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Final

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger_node.chain.adapter import LedgerChain, Member, Role
from ledger_node.client.sdk import (
    MAX_CHUNK,
    NodeClient,
    PlatformClient,
    SubmittedRecord,
    own_records,
    registered_platform,
    registered_regulator_key,
)
from ledger_node.crypto import gmcrypto
from ledger_node.crypto.keyfiles import MemberKeys
from ledger_node.demo.linkscan import Haystack, Needle, chance_hits, key_needles, text_needles
from ledger_node.demo.localsite import LocalSite, SiteError
from ledger_node.demo.report import (
    FOUND,
    AlertComparison,
    Check,
    CheckpointRow,
    DemoReport,
    Finding,
    Phase,
    Throughput,
    TraceRow,
    compare_alerts,
)
from ledger_node.demo.scenario import (
    Identity,
    PlantedCase,
    RecordRef,
    Scenario,
    ScenarioSpec,
    generate_scenario,
    load_scenario_spec,
)
from ledger_node.errors import ApiError, InvalidConfig, InvalidProof, InvalidScenario, ProofPending
from ledger_node.log.merkle import hasher_for, verify_consistency
from ledger_node.protocol.aml import Alert
from ledger_node.protocol.auth import sign_request
from ledger_node.protocol.bundle import ProofBundle, verify_bundle
from ledger_node.protocol.commitment import disclose_field
from ledger_node.protocol.escrow import identity_key
from ledger_node.protocol.pairwise import CrossPlatform, Side
from ledger_node.protocol.reconciliation import DEFAULT_GRACE, Window
from ledger_node.protocol.record import Channel, PaymentRecord
from ledger_node.regulator.casefile import parse_case_file, render_case_report, verify_case_file
from ledger_node.regulator.node import node_audience
from ledger_node.regulator.pg_store import is_postgres_url, redact_url
from ledger_node.tls import NO_CLIENT_TLS, ClientTls

Echo = Callable[[str], None]

REGULATOR: Final = "pboc"
"""The regulator's member name in the demo's consortium."""
MARKER: Final = ".jointledger-demo"
"""A file in the output directory saying the demo wrote it (and may replace it)."""
PHASES: Final = 11
TRACED_SUBJECTS: Final = 4
"""How many planted subjects the regulator traces."""
AUDIT_SAMPLE: Final = 32
"""Leaves per platform, besides the planted records, whose public answers the audit reads."""
STORAGE_SLOTS: Final = 64
"""Contract storage slots 0..N-1 read over JSON-RPC (mappings cannot be enumerated)."""
FOLLOW_INTERVAL: Final = 3600.0
"""The regulator's own follow interval: long, so that the demo's timed ingest does the work."""
ANCHOR_TIMEOUT: Final = 300.0
_RPC_BATCH: Final = 100


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Preparing a run: the scenario and the output directory (usage errors surface here)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoPlan:
    """A run ready to start: the generated scenario and where everything goes."""

    out: Path
    scenario: Scenario
    source: str
    rpc_url: str | None
    generated_s: float
    started: float
    store_url: str | None = None
    """The regulator's store on PostgreSQL (``--store``), or ``None`` for its SQLite file."""


def demo_spec(scenario_file: Path | None = None, *, payments: int | None = None,
              seed: int | None = None) -> ScenarioSpec:
    """The scenario spec of a run: ``scenario_file`` (or the default), then the overrides.

    Raises :class:`InvalidScenario` naming the mistake: the file's place (``$.planted[1]``)
    or the option (``--payments``).
    """
    spec = load_scenario_spec(scenario_file) if scenario_file is not None else ScenarioSpec()
    try:
        if payments is not None:
            spec = replace(spec, payments=payments)
    except InvalidScenario as exc:
        raise InvalidScenario("--payments", exc.reason) from None
    try:
        if seed is not None:
            spec = replace(spec, seed=seed)
    except InvalidScenario as exc:
        raise InvalidScenario("--seed", exc.reason) from None
    if REGULATOR in spec.platforms:
        raise InvalidScenario("$.platforms", f"{REGULATOR!r} is the demo's regulator; give "
                              "the platforms other names",
                              source=None if scenario_file is None else str(scenario_file))
    return spec


def spec_document(spec: ScenarioSpec) -> dict[str, Any]:
    """``spec`` as a scenario-file document: ``--scenario`` with it reproduces the run."""
    document: dict[str, Any] = {}
    for item in fields(spec):
        value = getattr(spec, item.name)
        if item.name == "planted":
            document["planted"] = [  # defaults left out: an empty platform list is refused
                {"kind": case.kind.value} | {f.name: _plain(getattr(case, f.name))
                                             for f in fields(case)
                                             if getattr(case, f.name) != f.default}
                for case in value]
        else:
            document[item.name] = _plain(value)
    return document


def _plain(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def prepare_demo(out: Path, *, scenario_file: Path | None = None, payments: int | None = None,
                 seed: int | None = None, rpc_url: str | None = None,
                 echo: Echo = _stderr, started: float | None = None,
                 store_url: str | None = None) -> DemoPlan:
    """Build the spec, generate the scenario and empty the output directory.

    ``started`` (a :func:`time.perf_counter` value, default now) is when the run's clock
    starts: the command line passes the time before it imported this module.

    Raises :class:`InvalidScenario` for a bad scenario (file or options) and
    :class:`InvalidConfig` for an output directory the demo must not overwrite, before
    anything is written or started.
    """
    started = time.perf_counter() if started is None else started
    if store_url is not None and not is_postgres_url(store_url):
        raise InvalidConfig(f"--store must be a postgresql:// URL, got {redact_url(store_url)!r}")
    generating = time.perf_counter()
    spec = demo_spec(scenario_file, payments=payments, seed=seed)
    scenario = generate_scenario(spec)
    generated = time.perf_counter() - generating
    _prepare_out(out)
    records = sum(len(r) for r in scenario.records.values())
    echo(f"[1/{PHASES}] scenario: {spec.payments:,} payments (seed {spec.seed}) → "
         f"{records:,} records on {', '.join(spec.platforms)}; {len(scenario.identities):,} "
         f"identities; {len(scenario.planted)} planted cases ({generated:.1f} s, "
         f"{records / generated:,.0f} records/s)")
    return DemoPlan(out, scenario, str(scenario_file) if scenario_file else "default",
                    rpc_url, generated, started, store_url)


def _prepare_out(out: Path) -> None:
    """Make ``out`` an empty directory holding the marker; refuse anything else's files."""
    if out.exists() and not out.is_dir():
        raise InvalidConfig(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise InvalidConfig(f"--out {out} is not empty and was not written by an earlier "
                                "demo; choose another directory")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by jointledger demo: the next run replaces this "
                              "directory\n", encoding="utf-8")


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def run_demo(plan: DemoPlan, *, echo: Echo = _stderr, show: Echo = print) -> int:
    """Run the story of ``plan``; write the report and artefacts; return the exit status.

    0 when every planted AML case is found, no other alert is raised and every check
    passes; 1 otherwise, and when a site process does not start. Raises
    :class:`~ledger_node.errors.LedgerError` subclasses for failures that stop the story
    (an unreachable chain, a rejected transaction, a node's problem answer).
    """
    try:
        report = _Demo(plan, echo).run()
    except SiteError as exc:
        echo(f"jointledger demo: {exc}")
        return 1
    _write_json(plan.out / "report.json", report.to_json())
    markdown = report.to_markdown()
    (plan.out / "report.md").write_text(markdown, encoding="utf-8")
    show(markdown)
    echo(f"{'PASS' if report.passed else 'FAIL'} in {report.elapsed:.1f} s; report and "
         f"artefacts in {plan.out}/")
    return report.exit_code


class _Demo:
    """One run's state, phase by phase."""

    def __init__(self, plan: DemoPlan, echo: Echo) -> None:
        self.plan = plan
        self.scenario = plan.scenario
        self.spec = plan.scenario.spec
        self.echo = echo
        self._lock = threading.Lock()
        self.out = plan.out
        self.platforms = self.spec.platforms
        self.total = sum(len(r) for r in self.scenario.records.values())
        records = {p: f"{len(r):,}" for p, r in self.scenario.records.items()}
        self.report = DemoReport(settings={
            "scenario": plan.source, "payments": self.spec.payments, "seed": self.spec.seed,
            "people": self.spec.people, "merchants": self.spec.merchants,
            "platforms": list(self.platforms), "records": records,
            "chain": plan.rpc_url or "embedded (jointledger chain, stored in site/chain.db)",
            "regulator store": (redact_url(plan.store_url) if plan.store_url else
                                "SQLite (site/pboc-regulator.db)"),
            "out": str(plan.out)})
        self.report.phases.append(Phase("scenario", plan.generated_s,
                                        f"{self.total:,} records generated"))
        self.report.throughput.append(Throughput("scenario generated", self.total,
                                                 plan.generated_s))
        self.submitted: dict[str, list[SubmittedRecord]] = {}
        self.by_commitment: dict[bytes, RecordRef] = {}
        self.by_ref: dict[RecordRef, SubmittedRecord] = {}

    # ------------------------------------------------------------------ helpers

    def say(self, line: str) -> None:
        with self._lock:
            self.echo(line)

    @contextmanager
    def phase(self, number: int, name: str) -> Iterator[list[str]]:
        """Time a phase; the caller appends its one-line summary to the yielded list."""
        started = time.perf_counter()
        summary: list[str] = []
        yield summary
        seconds = time.perf_counter() - started
        detail = "; ".join(summary)
        self.report.phases.append(Phase(name, seconds, detail))
        self.say(f"[{number}/{PHASES}] {name}: {detail} ({seconds:.1f} s)")

    def check_bundle(self, document: dict[str, Any], where: str) -> bool:
        """Verify a proof bundle (see :class:`BundleChecker`); count the result."""
        return self.bundles.check(document, where)

    # ------------------------------------------------------------------ the story

    def run(self) -> DemoReport:
        _write_json(self.out / "scenario.json", self._scenario_document())
        _write_json(self.out / "scenario-spec.json", spec_document(self.spec))
        members = [*((p, "platform") for p in self.platforms), (REGULATOR, "regulator")]
        with LocalSite(self.out / "site", members,
                       regulator_store_url=self.plan.store_url) as site:
            self.site = site
            self.clients: dict[str, PlatformClient] = {}
            self.chains: dict[str, LedgerChain] = {}
            self._consortium()
            try:
                self._submit()
                self._anchor()
                self._reconcile()
                self._ingest()
                self._alerts()
                self._trace()
                self._disclose()
                self._case_file()
                self._audit()
            finally:
                for client in self.clients.values():
                    client.close()
                self.api.close()
            b = self.bundles
            self.report.checks.insert(0, Check(
                "proof bundles (traces, alert evidence, reconciliation, public API)",
                f"{b.valid:,} of {b.checked:,} verified: each inclusion proof and checkpoint "
                f"signature; their {len(b.checkpoints)} distinct checkpoints against the chain "
                "(root, log owner, SM2 key, anchoring transaction; contract pinned)",
                b.checked > 0 and b.valid == b.checked))
            for failure in b.failures[:5]:
                self.say(f"    proof failed: {failure}")
        self.report.elapsed = time.perf_counter() - self.plan.started
        return self.report

    def _consortium(self) -> None:
        with self.phase(2, "consortium") as summary:
            site = self.site
            if self.plan.rpc_url:
                self.first_block = LedgerChain.from_rpc(
                    self.plan.rpc_url, **site.client_tls.requests_options()).block_number() + 1
                site.use_chain(self.plan.rpc_url)
                where = f"chain at {self.plan.rpc_url}"
            else:
                site.start_chain(data="chain.db")
                self.first_block = 0
                where = f"jointledger chain at {site.rpc_url}"
            self.deployment = site.deployment
            started = site.start_nodes(self.platforms, REGULATOR,
                                       follow_interval=FOLLOW_INTERVAL)
            self.regulator_url = started.pop(REGULATOR)
            self.urls = started
            self.rpc_url = site.rpc_url
            self.tls = site.client_tls
            self.reader = site.chain().attach(self.deployment)
            self.bundles = BundleChecker(self.reader)
            self.regulator_keys = site.keys(REGULATOR)
            self.api = _RegulatorApi(self.regulator_url, self.regulator_keys, self.tls)
            shutil.copy(site.root / "deployment.json", self.out / "deployment.json")
            self.report.settings |= {"chain_id": self.deployment.chain_id,
                                     "contract": self.deployment.address,
                                     "rpc_url": self.rpc_url}
            summary.append(f"{where}, JointLedger {self.deployment.address} (block "
                           f"{self.deployment.deploy_block}); "
                           + ", ".join(f"{p} node {u}" for p, u in self.urls.items())
                           + f"; {REGULATOR} regulator node {self.regulator_url}")

    def _submit(self) -> None:
        with self.phase(3, "submit") as summary:
            regulator_key = registered_regulator_key(self.reader, REGULATOR)
            self.regulator_public = regulator_key
            hint = cross_platform_hint(self.scenario)
            for name in self.platforms:
                keys = self.site.keys(name)
                # Each platform reads the chain through its own connection (one per thread).
                chain = self.chains[name] = self.site.chain().attach(self.deployment)
                self.clients[name] = PlatformClient(
                    self.urls[name], name, keys.address, keys.sm2_key,
                    regulator_key=regulator_key, chunk_size=MAX_CHUNK, timeout=120, tls=self.tls,
                    counterparties=functools.partial(registered_platform, chain))
            seconds: dict[str, float] = {}

            def submit(name: str) -> list[SubmittedRecord]:
                started = time.perf_counter()

                def progress(done: int, total: int) -> None:
                    elapsed = time.perf_counter() - started
                    self.say(f"    {name}: {done:,} of {total:,} records acknowledged "
                             f"({done / elapsed:,.0f} records/s)")

                items = self.clients[name].submit_records(
                    self.scenario.records[name], progress=progress, kinds=self.scenario.kinds,
                    cross_platform=hint)
                seconds[name] = time.perf_counter() - started
                return items

            started = time.perf_counter()
            with ThreadPoolExecutor(len(self.platforms)) as pool:
                futures = {name: pool.submit(submit, name) for name in self.platforms}
                for name, future in futures.items():
                    self.submitted[name] = future.result()
            wall = time.perf_counter() - started
            for name, items in self.submitted.items():
                for item in items:
                    ref = (name, item.prepared.record.local_tx_id)
                    self.by_commitment[item.prepared.leaf.commitment] = ref
                    self.by_ref[ref] = item
                self.report.throughput.append(Throughput(
                    f"submitted by {name}", len(items), seconds[name],
                    "commit, seal escrow, sign, POST 10,000-leaf batches"))
            self.report.throughput.append(Throughput(
                "submitted, all platforms at once", self.total, wall, "wall clock"))
            self.submit_done = time.perf_counter()
            summary.append(f"{self.total:,} records through the SDKs, escrows sealed for "
                           f"{REGULATOR}'s key on chain ({self.total / wall:,.0f} records/s)")

    def _anchor(self) -> None:
        with self.phase(4, "anchor") as summary:
            deadline = time.monotonic() + ANCHOR_TIMEOUT
            for name in self.platforms:
                count = len(self.submitted[name])
                reader = NodeClient(self.urls[name], tls=self.tls)
                while True:
                    listed = reader.checkpoints(limit=1000)
                    if listed and listed[-1]["tree_size"] >= count:
                        break
                    if time.monotonic() > deadline:
                        raise ProofPending(f"{name}: {count} records not anchored within "
                                           f"{ANCHOR_TIMEOUT:.0f} s")
                    time.sleep(0.1)
                self.report.checkpoints.append(self._checkpoint_row(name, count, reader))
            lag = time.perf_counter() - self.submit_done
            summary.append(", ".join(f"{row.platform}: {row.checkpoints} checkpoints up to "
                                     f"{row.tree_size:,}" for row in self.report.checkpoints)
                           + f"; last anchored {lag:.2f} s after the last acknowledgement")

    def _checkpoint_row(self, name: str, count: int, reader: NodeClient) -> CheckpointRow:
        """The platform's checkpoints as on chain, consecutive ones checked for consistency."""
        log_id = self.clients[name].log_id
        history = self.reader.checkpoints(log_id)
        checked = valid = 0
        for older, newer in zip(history, history[1:], strict=False):
            proof = reader.consistency(older.tree_size, newer.tree_size)
            checked += 1
            try:
                verify_consistency(hasher_for(str(proof.get("hash", "sm3"))), older.tree_size,
                                   newer.tree_size, [bytes.fromhex(p) for p in proof["path"]],
                                   older.root, newer.root)
                valid += 1
            except InvalidProof as exc:
                self.say(f"    {name}: consistency {older.tree_size}→{newer.tree_size} "
                         f"failed: {exc}")
        latest = history[-1] if history else None
        return CheckpointRow(
            name, count, len(history), latest.tree_size if latest else 0,
            history[0].block_number if history else 0,
            latest.block_number if latest else 0, checked, valid,
            latest.root.hex() if latest else "")

    def _reconcile(self) -> None:
        """Each platform reconciles its cross-platform records with every other platform
        through its own node (``POST /v1/reconciliation``), which reads and verifies the
        counterparty's log against the chain; the SDK computes the tags, the node never
        sees a record."""
        with self.phase(5, "reconcile") as summary:
            window = Window(self.spec.day_start, self.spec.day_start + timedelta(days=1))
            as_of = window.end + DEFAULT_GRACE  # the day is closed: nothing is pending
            self.findings: list[Finding] = []
            counts: dict[str, int] = {}
            for name in self.platforms:
                own = own_records(self.submitted[name])
                by_index = {item.receipt.index: item for item in self.submitted[name]}
                for other in (p for p in self.platforms if p != name):
                    started = time.perf_counter()
                    report = self.clients[name].reconcile(
                        other, window, own, counterparty_url=self.urls[other],
                        chain=self.chains[name], as_of=as_of)
                    seconds = time.perf_counter() - started
                    reconciled = 0
                    for item in report["items"]:
                        reconciled += 1
                        counts[item["status"]] = counts.get(item["status"], 0) + 1
                        for bundle in [item.get("bundle"), *(c.get("bundle") for c in
                                                             item["counterparty"])]:
                            if bundle is not None:
                                self.check_bundle(bundle, f"{name} reconciliation "
                                                          f"{item['index']}")
                        if item["status"] != "matched":
                            record = by_index[int(item["index"])].prepared.record
                            self.findings.append(((name, record.local_tx_id),
                                                  str(item["status"])))
                    self.report.throughput.append(Throughput(
                        f"reconciled by {name} with {other}", reconciled, seconds,
                        "tags computed in the SDK; the node verifies the other log and "
                        "matches"))
            self.report.checks.append(Check(
                "reconciliation",
                f"{sum(counts.values()):,} cross-platform records reconciled by their "
                "platforms against the other platform's log verified on chain: "
                + ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items())),
                None if not counts else counts.get("pending", 0) == 0))
            summary.append(", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))
                           or "no cross-platform records")

    def _ingest(self) -> None:
        with self.phase(6, "ingest") as summary:
            before = int(self.api.call("GET", "/v1/ingest")["records"])
            started = time.perf_counter()
            self.api.call("POST", "/v1/ingest")
            seconds = time.perf_counter() - started
            status = self.api.call("GET", "/v1/ingest")
            faults = self.api.call("GET", "/v1/faults")["faults"]
            records = int(status["records"])
            behind = sum(int(log["behind"]) for log in status["logs"])
            self.report.throughput.append(Throughput(
                "regulator ingest", records - before, seconds,
                f"fetch, rebuild roots, check against the chain, decrypt, index; "
                f"{status['sm2_decryptions']} SM2 decryptions"))
            ok = records == self.total and behind == 0 and not faults
            self.report.checks.append(Check(
                "regulator ingest",
                f"{records:,} of {self.total:,} records verified against the anchored roots "
                f"and decrypted; {behind} behind; {len(faults)} faults", ok))
            for fault in faults[:5]:
                self.say(f"    fault: {fault}")
            summary.append(f"{records - before:,} records in {seconds:.2f} s "
                           f"({(records - before) / max(seconds, 1e-9):,.0f} records/s), "
                           f"{len(faults)} faults")

    def _alerts(self) -> None:
        with self.phase(7, "alerts") as summary:
            listed = self.api.call("GET", "/v1/alerts")["alerts"]
            commitments: dict[str, bytes] = {}
            alerts = []
            for item in listed:
                alerts.append(_alert_from_json(item))
                detail = self.api.call("GET", f"/v1/alerts/{int(item['id'])}")
                for record in detail["evidence"]:
                    commitments[str(record["ref"])] = bytes.fromhex(
                        record["leaf"]["commitment"])
                    self.check_bundle(record["bundle"], f"alert {item['id']} {record['ref']}")

            def record_of(ref: str) -> RecordRef:
                commitment = commitments.get(ref)
                return self.by_commitment.get(commitment, ("?", ref)) if commitment else (
                    "?", ref)

            comparison: AlertComparison = compare_alerts(self.scenario, alerts, record_of,
                                                         self.findings)
            self.report.alerts = comparison
            aml = [c for n, c in enumerate(comparison.cases, 1)
                   if self.scenario.planted[n - 1].expected]
            found = sum(1 for c in aml if c.status == FOUND)
            summary.append(f"{len(alerts)} alerts; planted AML cases found {found} of "
                           f"{len(aml)}; {len(comparison.unexpected)} unexpected")

    def _aml_cases(self) -> list[tuple[int, PlantedCase]]:
        return [(n, c) for n, c in enumerate(self.scenario.planted, 1) if c.expected]

    def _first_record(self) -> tuple[str, PaymentRecord]:
        return next(self.scenario.all_records())

    def _subjects(self) -> list[tuple[int, bytes]]:
        """Whom to trace: (case number, identity key) of the planted AML cases' subjects;
        without any, the two parties of the scenario's first record (case 0)."""
        subjects = [(n, c.identity) for n, c in self._aml_cases()[:TRACED_SUBJECTS]]
        if not subjects:
            _, record = self._first_record()
            subjects = [(0, identity_key(record.payer_identity)),
                        (0, identity_key(record.payee_identity))]
        return subjects

    def _trace(self) -> None:
        with self.phase(8, "trace") as summary:
            for number, key in self._subjects():
                identity = self.scenario.identity(key)
                answer = self.api.call("POST", "/v1/trace/identity",
                                       {"identity": identity.identity})
                traced: set[RecordRef] = set()
                valid = 0
                for record in answer["records"]:
                    commitment = bytes.fromhex(record["leaf"]["commitment"])
                    traced.add(self.by_commitment.get(commitment, ("?", record["ref"])))
                    valid += self.check_bundle(record["bundle"], f"trace {record['ref']}")
                expected = self.scenario.records_of(key)
                self.report.traces.append(TraceRow(
                    identity.name, number, len(expected), len(answer["records"]),
                    traced == expected, tuple(answer["platforms"]), valid))
            summary.append(", ".join(f"{t.subject}: {t.traced} records on "
                                     f"{len(t.platforms)} platform(s)"
                                     for t in self.report.traces))

    def _disclose(self) -> None:
        with self.phase(9, "disclosure") as summary:
            cases = self._aml_cases()
            if cases:  # a record of the first planted AML case; the case file is its subject's
                number, case = cases[0]
                ref = sorted(case.expected[0].records)[0]
                self.case_identities = [case.identity]
                about = f"a record of planted case {number}"
            else:  # no planted AML case: the first record, in a case file of its own
                platform, first = self._first_record()
                number, ref = 0, (platform, first.local_tx_id)
                self.case_identities = []
                about = "the scenario's first record"
            item = self.by_ref[ref]
            platform = ref[0]
            commitment = item.prepared.leaf.commitment
            self.case_id = secrets.token_bytes(32)
            self.disclosed = item
            requested = self.api.call("POST", "/v1/disclosures",
                                      {"commitment": commitment.hex(),
                                       "case_id": self.case_id.hex()})
            request_id = int(requested["request_id"])
            answered = self.clients[platform].answer_disclosure(
                request_id, item.prepared.opening, self.regulator_public,
                chain_id=self.deployment.chain_id, contract=self.deployment.address,
                index=item.receipt.index)
            collected = self.api.poll("POST", f"/v1/disclosures/{request_id}/collect")
            # What a platform may show anyone instead: one field, checkable against the bundle.
            prepared = item.prepared
            _write_json(self.out / "disclosure.json",
                        disclose_field(prepared.record, prepared.salt, "amount_fen").to_json())
            opened = collected["opening"] == item.prepared.opening.to_json()
            mismatches = list(collected["escrow_mismatches"])
            ok = opened and not mismatches and requested["platform"] == platform
            self.report.checks.append(Check(
                "disclosure",
                f"request {request_id} for {about} logged on chain "
                f"(tx {requested['tx_hash'][:12]}…), answered by {platform} (tx "
                f"0x{answered.tx_hash.hex()[:10]}…), collected: the opening "
                f"{'opens' if opened else 'does NOT open'} the commitment; "
                f"escrow mismatches: {', '.join(mismatches) or 'none'}", ok))
            summary.append(f"request {request_id} to {platform} for {ref[1]}, answered and "
                           "collected")

    def _case_file(self) -> None:
        with self.phase(10, "case file") as summary:
            document = self.api.call("POST", "/v1/cases",
                                     {"case_id": self.case_id.hex(),
                                      "identities": [k.hex() for k in self.case_identities]})
            path = self.out / "case-file.json"
            _write_json(path, document)
            self.case_document = document
            case = parse_case_file(json.loads(path.read_text(encoding="utf-8")))
            verdict = verify_case_file(case, chain=self.site.chain(),
                                       deployment=self.deployment,
                                       regulator_keys=[self.regulator_keys.sm2_key])
            (self.out / "case-file-verification.txt").write_text(
                render_case_report(verdict) + "\n", encoding="utf-8")
            counts = verdict.counts()
            self.report.checks.append(Check(
                "case file (offline, against the chain, with the regulator key)",
                f"{len(case.records)} records, {len(case.alerts)} alerts, "
                f"{len(case.disclosures)} disclosure(s): {counts['passed']} checks passed, "
                f"{counts['failed']} failed, {counts['not_run']} not run — {verdict.summary}",
                verdict.valid))
            summary.append(f"case-file.json ({len(case.alerts)} alerts, "
                           f"{len(case.records)} records): "
                           f"{'valid' if verdict.valid else 'INVALID'}")

    def _audit(self) -> None:
        with self.phase(11, "audit") as summary:
            parties = planted_parties(self.scenario) or [  # nothing planted: the traced
                self.scenario.identity(key) for _, key in self._subjects()]
            references = planted_references(self.scenario)
            needles = identity_needles(parties) + [
                needle for reference in references
                for needle in text_needles(f"reference {reference}", reference)]
            chain = Haystack()
            chain_stats = collect_chain(self.rpc_url, self.deployment.address,
                                        self.first_block, chain, self.tls)
            api = Haystack()
            responses = self._collect_api(api)
            hits = chain.scan(needles) + api.scan(needles)
            chance = chance_hits(needles, chain) + chance_hits(needles, api)
            control = Haystack()
            control.add("case file", json.dumps(self.case_document).encode(), text=True)
            control_hits = len(control.scan(needles))
            tokens = sum(len(p.accounts) for p in parties)
            for hit in hits[:10]:
                self.say(f"    FOUND {hit}")
            self.report.checks.append(Check(
                "unlinkability audit (public chain data and API)",
                f"{len(needles):,} forms (text, GBK, hex, base64, escapes, SM3/SHA-256/"
                f"keccak-256 digests) of {len(parties)} planted identities, {tokens} "
                f"account tokens and {len(references)} transaction ids and clearing "
                f"references searched in {chain_stats} and {responses:,} public API "
                f"answers: {len(hits)} found (chance ≈ {chance:.1e})", not hits))
            self.report.checks.append(Check(
                "audit control",
                f"the same forms are found {control_hits} times in the regulator's case file "
                "(not public): the scanner finds what is there", control_hits > 0))
            summary.append(f"{len(hits)} of {len(needles):,} needles found in public data; "
                           f"{control_hits} in the case file (control)")

    def _collect_api(self, haystack: Haystack) -> int:
        """Every public answer an auditor would read about the planted records, and a sample
        of others; verify each proof bundle; keep the disclosed record's bundle."""
        rng = random.Random(self.spec.seed)
        planted = {ref for case in self.scenario.planted for ref in case.records}
        count = 0
        for name in self.platforms:
            indices = {self.by_ref[ref].receipt.index for ref in planted
                       if ref[0] == name and ref in self.by_ref}
            size = len(self.submitted[name])
            indices |= set(rng.sample(range(size), min(AUDIT_SAMPLE, size)))
            if self.disclosed.prepared.record.platform == name:
                indices.add(self.disclosed.receipt.index)
            with httpx.Client(base_url=self.urls[name], timeout=60,
                              verify=self.tls.ssl_context()) as http:
                def get(path: str, http: httpx.Client = http, name: str = name
                        ) -> httpx.Response:
                    response = http.get(path)
                    haystack.add(f"{name} GET {path}", _raw_response(response), text=True)
                    return response

                for path in ("/v1/health", "/v1/checkpoints?limit=1000"):
                    get(path)
                    count += 1
                for index in sorted(indices):
                    status = get(f"/v1/leaves/{index}")
                    get(f"/v1/leaves/by-hash/{status.json()['leaf_hash']}")
                    bundle = get(f"/v1/leaves/{index}/bundle")
                    count += 3
                    self.check_bundle(bundle.json(), f"{name} public bundle {index}")
                    if (name, index) == (self.disclosed.prepared.record.platform,
                                         self.disclosed.receipt.index):
                        _write_json(self.out / "bundle.json", bundle.json())
        return count

    # ------------------------------------------------------------------ documents

    def _scenario_document(self) -> dict[str, Any]:
        """The scenario's summary and ground truth (``scenario.json``)."""
        return {
            "source": self.plan.source,
            "spec": spec_document(self.spec),
            "summary": self.scenario.summary(),
            "planted": [
                {"number": n, "kind": case.kind.value,
                 "subject": self.scenario.identity(case.identity).name,
                 "identity_key": case.identity.hex(), "direction": case.direction.value,
                 "detail": case.detail, "clearing_ref": case.clearing_ref,
                 "records": sorted(f"{p}/{tx}" for p, tx in case.records),
                 "expected_alerts": [{"rule": str(e.rule),
                                      "records": sorted(f"{p}/{tx}" for p, tx in e.records)}
                                     for e in case.expected]}
                for n, case in enumerate(self.scenario.planted, 1)],
        }



# --------------------------------------------------------------------------------------
# The regulator's API, the auditor's reads
# --------------------------------------------------------------------------------------


class BundleChecker:
    """Verifies proof bundles against the chain, each distinct checkpoint once.

    The first bundle of a checkpoint (same signed checkpoint, same anchor) gets the whole
    :func:`verify_bundle` against the chain, contract pinned; later bundles of that checkpoint
    get the checks that are their own (structure, inclusion of their leaf, the checkpoint's
    signature under the key the chain registers for the platform), and fail if their
    checkpoint failed on chain. The chain's part costs a dozen JSON-RPC calls per bundle.
    """

    _OWN_CHECKS: Final = frozenset({"structure", "inclusion"})

    def __init__(self, chain: LedgerChain) -> None:
        """``chain`` must be bound to the consortium's deployment (that pins the contract)."""
        self.chain = chain
        self.checkpoints: dict[str, bool] = {}
        self.checked = 0
        self.valid = 0
        self.failures: list[str] = []
        self._keys: dict[str, gmcrypto.SM2PublicKey] | None = None

    def _key(self, platform: str) -> gmcrypto.SM2PublicKey | None:
        if self._keys is None:
            self._keys = {m.name: gmcrypto.SM2PublicKey.from_raw(m.public_key)
                          for m in self.chain.members()}
        return self._keys.get(platform)

    def check(self, document: dict[str, Any], where: str) -> bool:
        """Verify the bundle ``document``; record a failure under ``where``."""
        self.checked += 1
        try:
            bundle = ProofBundle.from_json(document)
        except ValueError as exc:
            return self._failed(where, f"{type(exc).__name__}: {exc}")
        shared = json.dumps([document.get(k) for k in ("hash", "tree_size", "checkpoint",
                                                        "anchor")], sort_keys=True)
        known = self.checkpoints.get(shared)
        if known is None:
            verdict = verify_bundle(bundle, chain=self.chain)
            self.checkpoints[shared] = all(c.passed for c in verdict.checks
                                           if c.name not in self._OWN_CHECKS)
        elif not known:
            return self._failed(where, "its checkpoint failed against the chain")
        else:
            key = self._key(bundle.checkpoint.checkpoint.platform)
            if key is None:
                return self._failed(where, "its platform is not a member on chain")
            verdict = verify_bundle(bundle, checkpoint_key=key)
        if not verdict.valid:
            return self._failed(where, "; ".join(verdict.reasons))
        self.valid += 1
        return True

    def _failed(self, where: str, reason: str) -> bool:
        self.failures.append(f"{where}: {reason}")
        return False


class _RegulatorApi:
    """SM2-signed requests to the regulator node, as its own regulator member."""

    def __init__(self, url: str, keys: MemberKeys, tls: ClientTls) -> None:
        self._http = httpx.Client(base_url=url, timeout=300, verify=tls.ssl_context())
        self._keys = keys
        self._audience = node_audience(REGULATOR)

    def _send(self, method: str, path: str, body: Any) -> httpx.Response:
        content = b"" if body is None else json.dumps(body).encode()
        headers = sign_request(self._keys.sm2_key, self._keys.address, method, path, content,
                               audience=self._audience)
        if content:
            headers["Content-Type"] = "application/json"
        response = self._http.request(method, path, content=content or None, headers=headers)
        if response.status_code >= 400:
            try:
                document = response.json()
            except ValueError:
                document = {}
            raise ApiError(response.status_code, str(document.get("type", "about:blank")),
                           str(document.get("title", response.reason_phrase)),
                           str(document.get("detail", response.text[:300])), document)
        return response

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer; :class:`ApiError` for a problem answer."""
        return self._send(method, path, body).json()

    def poll(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
        """Repeat the call while it answers 202 (pending), at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            response = self._send(method, path, body)
            if response.status_code != 202:
                return response.json()
            if time.monotonic() > deadline:
                raise ProofPending(f"{path} still pending after {timeout:.0f} s")
            time.sleep(0.1)


def _alert_from_json(item: dict[str, Any]) -> Alert:
    return Alert(str(item["rule"]), bytes.fromhex(item["identity"]), str(item["direction"]),
                 int(item["total_fen"]), datetime.fromisoformat(item["window_start"]),
                 datetime.fromisoformat(item["window_end"]), tuple(item["platforms"]),
                 tuple(item["refs"]), str(item["detail"]))


def cross_platform_hint(scenario: Scenario) -> Callable[[PaymentRecord], CrossPlatform | None]:
    """Which half of a cross-platform payment each scenario record is, for the SDK's tags.

    Both platforms' records of a payment name the payer's account on the payer's platform
    and the payee's on the payee's; each account token belongs to one platform. A record
    with a clearing reference is the payer's half on the payer's platform, else the
    payee's; records within one platform get no hint.
    """
    platform_of = {token: platform for identity in scenario.identities
                   for platform, token in identity.accounts}

    def hint(record: PaymentRecord) -> CrossPlatform | None:
        payer = platform_of.get(record.payer_account)
        payee = platform_of.get(record.payee_account)
        if not record.clearing_ref or payer is None or payee is None or payer == payee:
            return None
        if record.platform == payer:
            return CrossPlatform(payee, Side.PAYER)
        return CrossPlatform(payer, Side.PAYEE)

    return hint


def planted_parties(scenario: Scenario) -> list[Identity]:
    """Every identity in a planted case's records: subjects and their counterparties."""
    records = {(platform, r.local_tx_id): r for platform, r in scenario.all_records()}
    keys: dict[bytes, None] = {}
    for case in scenario.planted:
        keys[case.identity] = None
        for ref in sorted(case.records):
            record = records[ref]
            keys[identity_key(record.payer_identity)] = None
            keys[identity_key(record.payee_identity)] = None
    return [scenario.identity(key) for key in keys]


def planted_references(scenario: Scenario) -> list[str]:
    """The local transaction ids and clearing references of every planted record."""
    records = {(platform, r.local_tx_id): r for platform, r in scenario.all_records()}
    found: dict[str, None] = {}
    for case in scenario.planted:
        for ref in sorted(case.records):
            found[ref[1]] = None
            if records[ref].clearing_ref:
                found[records[ref].clearing_ref] = None
    return list(found)


def identity_needles(parties: Iterable[Identity]) -> list[Needle]:
    """Every form of each party's identity number, name, identity key and account tokens."""
    needles: list[Needle] = []
    for party in parties:
        needles += text_needles(f"{party.name} identity", party.identity)
        needles += text_needles(f"{party.name} name", party.name)
        needles += key_needles(f"{party.name} identity key", party.key)
        for platform, token in party.accounts:
            needles += text_needles(f"{party.name} {platform} account", token)
    return needles


def collect_chain(rpc_url: str, contract: str, first_block: int, haystack: Haystack,
                  tls: ClientTls = NO_CLIENT_TLS) -> str:
    """Add to ``haystack`` every JSON-RPC answer about blocks ``first_block``..head: each
    block with its transactions (inputs included), each receipt with its logs, the contract's
    logs, code and first :data:`STORAGE_SLOTS` storage slots (an https chain reached with
    ``tls``). Return a summary."""
    with httpx.Client(timeout=60, verify=tls.ssl_context()) as http:
        def batch(calls: Sequence[tuple[str, list[Any]]], label: str) -> list[Any]:
            results: list[Any] = []
            for start in range(0, len(calls), _RPC_BATCH):
                body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                        for i, (m, p) in enumerate(calls[start:start + _RPC_BATCH])]
                response = http.post(rpc_url, json=body)
                haystack.add(f"json-rpc {label}", response.content, text=True)
                answers = sorted(response.json(), key=lambda a: int(a["id"]))
                results += [a.get("result") for a in answers]
            return results

        head = int(batch([("eth_blockNumber", [])], "eth_blockNumber")[0], 16)
        blocks = batch([("eth_getBlockByNumber", [hex(n), True])
                        for n in range(first_block, head + 1)], "blocks")
        hashes = [tx["hash"] for block in blocks if block for tx in block["transactions"]]
        receipts = batch([("eth_getTransactionReceipt", [h]) for h in hashes], "receipts")
        logs = sum(len(r["logs"]) for r in receipts if r)
        batch([("eth_getLogs", [{"fromBlock": hex(low), "toBlock": hex(min(head, low + 999)),
                                 "address": contract}])
               for low in range(first_block, head + 1, 1000)]  # servers cap a range (Besu)
              + [("eth_getCode", [contract, "latest"])], "logs and code")
        batch([("eth_getStorageAt", [contract, hex(slot), "latest"])
               for slot in range(STORAGE_SLOTS)], "storage")
    size = sum(len(data) for source, data in haystack.parts if "[hex-decoded]" not in source)
    return (f"{size:,} bytes of JSON-RPC answers ({len(blocks)} blocks, {len(hashes)} "
            f"transactions and receipts, {logs} logs, {STORAGE_SLOTS} storage slots)")


def _raw_response(response: httpx.Response) -> bytes:
    head = f"HTTP/1.1 {response.status_code} {response.reason_phrase}\n" + "".join(
        f"{name}: {value}\n" for name, value in response.headers.items())
    return head.encode() + b"\n" + response.content


def _write_json(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------
# Small helpers for tests and benchmarks
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Party:
    """One consortium member as tests play it: chain account and SM2 key, both its own."""

    name: str
    role: Role
    account: LocalAccount
    sm2_key: gmcrypto.SM2PrivateKey

    def as_member(self) -> Member:
        """The membership entry registered on chain for this party."""
        return Member(self.account.address, self.role, self.name, self.sm2_key.public_key().raw)


def new_party(name: str, role: Role) -> Party:
    """A party with a fresh chain account and a fresh SM2 key pair."""
    return Party(name, role, Account.create(), gmcrypto.generate_private_key())


def sample_records(platform: str, count: int, rng: random.Random) -> list[PaymentRecord]:
    """``count`` plausible synthetic payments made on ``platform`` (no real people)."""
    start = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    return [
        PaymentRecord(
            platform=platform,
            local_tx_id=f"{platform[:2].upper()}-{i:08d}",
            payer_identity=f"person-{rng.randrange(10**6):06d}",
            payer_account=f"acct-{rng.randrange(10**9):09d}",
            payee_identity=f"merchant-{rng.randrange(10**4):04d}",
            payee_account=f"acct-{rng.randrange(10**9):09d}",
            amount_fen=rng.randrange(100, 5_000_000),
            currency="CNY",
            time=start + timedelta(seconds=rng.randrange(8 * 3600)),
            channel=rng.choice([Channel.QR, Channel.APP, Channel.POS]),
            cross_border=False,
        )
        for i in range(count)
    ]


__all__ = [
    "DemoPlan",
    "Party",
    "collect_chain",
    "cross_platform_hint",
    "demo_spec",
    "identity_needles",
    "new_party",
    "planted_parties",
    "planted_references",
    "prepare_demo",
    "run_demo",
    "sample_records",
    "spec_document",
]
