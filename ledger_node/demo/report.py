"""The report of ``jointledger demo``: what was measured and checked, and whether it passed.

Pure data and logic, no I/O: :func:`compare_alerts` holds the regulator's alerts against the
scenario's ground truth case by case; :class:`DemoReport` collects every table, lists the
reasons the run failed (:meth:`DemoReport.failures`) and renders itself as JSON and as
Markdown. The demo (:mod:`ledger_node.demo.run`) fills it in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ledger_node.demo.scenario import PlantedKind, RecordRef, Scenario
from ledger_node.protocol.aml import Alert

NOT_BUILT: Final = "not checked: reconciliation not run"
"""What the report says about planted reconciliation faults when nothing was reconciled."""

_FINDING_OF: Final = {PlantedKind.RECONCILIATION_MISSING: "missing",
                      PlantedKind.RECONCILIATION_MISMATCH: "amount_mismatch"}
"""The reconciliation status each record of a planted fault must be reported with."""
FOUND: Final = "found"
MISSED: Final = "missed"

Finding = tuple[RecordRef, str]
"""A reconciliation finding: the reporting platform's own record and its status
(``missing``, ``amount_mismatch``, ``pending``); matched records are no finding."""


# --------------------------------------------------------------------------------------
# Alerts and reconciliation findings against the ground truth
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    """One planted case: what it is and whether the alerts or findings found it.

    ``status`` is :data:`FOUND` (every alert an AML case must raise was raised on exactly
    its records; every record of a reconciliation fault was reported with its status),
    :data:`MISSED` (``missing`` of the ``expected`` alerts or findings were not) or
    :data:`NOT_BUILT`.
    """

    number: int
    kind: str
    subject: str
    identity_key: bytes
    detail: str
    rules: tuple[str, ...]
    records: int
    expected: int
    status: str
    missing: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"number": self.number, "kind": self.kind, "subject": self.subject,
                "identity_key": self.identity_key.hex(), "detail": self.detail,
                "rules": list(self.rules), "records": self.records,
                "expected_alerts": self.expected, "status": self.status,
                "missing_alerts": self.missing}


@dataclass(frozen=True)
class AlertComparison:
    """Every planted case's result, and the alerts and findings no planted case explains."""

    cases: tuple[CaseResult, ...]
    unexpected: tuple[Alert, ...]
    alerts: int
    unexpected_findings: tuple[Finding, ...] = ()
    findings: int | None = None
    """How many reconciliation findings there were; ``None`` when nothing was reconciled."""

    @property
    def missed(self) -> tuple[CaseResult, ...]:
        """The planted AML cases the alerts did not find."""
        return tuple(c for c in self.cases if c.status == MISSED)

    @property
    def found(self) -> tuple[CaseResult, ...]:
        """The planted AML cases found."""
        return tuple(c for c in self.cases if c.status == FOUND)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"alerts": self.alerts, "cases": [c.to_json() for c in self.cases],
                "unexpected": [_alert_json(a) for a in self.unexpected],
                "findings": self.findings,
                "unexpected_findings": [{"platform": ref[0], "local_tx_id": ref[1],
                                         "status": status}
                                        for ref, status in self.unexpected_findings]}


def compare_alerts(scenario: Scenario, alerts: Iterable[Alert],
                   record_of: Callable[[str], RecordRef],
                   findings: Iterable[Finding] | None = None) -> AlertComparison:
    """Hold ``alerts`` and reconciliation ``findings`` against the planted cases.

    ``record_of`` maps an alert's evidence reference to ``(platform, local_tx_id)``. An AML
    case is found when every alert it must raise is among ``alerts`` with exactly its
    records (:meth:`Scenario.match_alerts`). A reconciliation fault is found when each of
    its records is among ``findings`` with the fault's status (``missing`` for the
    surviving half of a missing payment, ``amount_mismatch`` for both halves of a
    mismatched one); without ``findings`` the faults are :data:`NOT_BUILT`. Alerts and
    findings that no planted case explains are returned as unexpected.
    """
    listed = list(alerts)
    match = scenario.match_alerts(listed, record_of=record_of)
    raised = {expected for expected, _ in match.found}
    reported = None if findings is None else list(findings)
    results = []
    explained: set[Finding] = set()
    for number, case in enumerate(scenario.planted, 1):
        try:
            subject = scenario.identity(case.identity).name
        except KeyError:
            subject = case.identity.hex()[:16]
        finding = _FINDING_OF.get(case.kind)
        if finding is None:
            rules = tuple(str(rule) for rule in case.rules)
            expected = len(case.expected)
            missing = sum(1 for e in case.expected if e not in raised)
            status = FOUND if case.expected and not missing else MISSED
        else:
            rules = (f"reconciliation.{finding}",)
            wanted = {(ref, finding) for ref in case.records}
            explained |= wanted
            expected = len(wanted)
            missing = len(wanted - set(reported or ()))
            status = (NOT_BUILT if reported is None
                      else FOUND if wanted and not missing else MISSED)
        results.append(CaseResult(number, case.kind.value, subject, case.identity,
                                  case.detail, rules, len(case.records), expected,
                                  status, missing if status != NOT_BUILT else 0))
    unexpected = () if reported is None else tuple(
        dict.fromkeys(f for f in reported if f not in explained))
    return AlertComparison(tuple(results), match.unexpected, len(listed), unexpected,
                           None if reported is None else len(reported))


def _alert_json(alert: Alert) -> dict[str, Any]:
    return {"rule": alert.rule, "identity": alert.identity.hex(),
            "direction": alert.direction, "total_fen": alert.total_fen,
            "refs": list(alert.refs), "detail": alert.detail}


# --------------------------------------------------------------------------------------
# The report's tables
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One phase of the run and how long it took."""

    name: str
    seconds: float
    detail: str


@dataclass(frozen=True)
class Throughput:
    """Records processed by one step in a measured time."""

    step: str
    records: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        """Records per second (0 when nothing was timed)."""
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"step": self.step, "records": self.records,
                "seconds": round(self.seconds, 3), "records_per_s": round(self.rate, 1),
                "note": self.note}


@dataclass(frozen=True)
class CheckpointRow:
    """One platform's log: records submitted, checkpoints anchored, consistency proofs."""

    platform: str
    records: int
    checkpoints: int
    tree_size: int
    first_block: int
    last_block: int
    consistency_checked: int
    consistency_valid: int
    root: str

    @property
    def ok(self) -> bool:
        """Everything submitted is anchored and every consistency proof verified."""
        return (self.tree_size == self.records and self.checkpoints > 0
                and self.consistency_valid == self.consistency_checked)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"platform": self.platform, "records": self.records,
                "checkpoints": self.checkpoints, "tree_size": self.tree_size,
                "first_block": self.first_block, "last_block": self.last_block,
                "consistency_checked": self.consistency_checked,
                "consistency_valid": self.consistency_valid, "root": self.root}


@dataclass(frozen=True)
class TraceRow:
    """One traced identity: its records in the ground truth against what the trace found."""

    subject: str
    case: int
    expected: int
    traced: int
    matched: bool
    platforms: tuple[str, ...]
    bundles_valid: int

    @property
    def ok(self) -> bool:
        """Exactly the identity's records were found, each with a verifying proof."""
        return self.matched and self.bundles_valid == self.traced

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"subject": self.subject, "case": self.case, "expected": self.expected,
                "traced": self.traced, "matched": self.matched,
                "platforms": list(self.platforms), "bundles_valid": self.bundles_valid}


@dataclass(frozen=True)
class Check:
    """One verification result: what was checked, how it came out, and whether that passes
    (``ok`` is ``None`` for something not checked, which neither passes nor fails)."""

    name: str
    result: str
    ok: bool | None

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"check": self.name, "result": self.result, "ok": self.ok}


@dataclass
class DemoReport:
    """Everything the demo measured and checked (see the module docstring)."""

    settings: dict[str, Any]
    phases: list[Phase] = field(default_factory=list)
    throughput: list[Throughput] = field(default_factory=list)
    checkpoints: list[CheckpointRow] = field(default_factory=list)
    traces: list[TraceRow] = field(default_factory=list)
    alerts: AlertComparison | None = None
    checks: list[Check] = field(default_factory=list)
    elapsed: float = 0.0

    def failures(self) -> list[str]:
        """Why the run failed, one reason per line; empty when everything passed."""
        reasons = []
        if self.alerts is None:
            reasons.append("the alerts were not compared with the planted cases")
        else:
            reasons += [f"planted case {c.number} ({c.kind}, {c.subject}) was missed: "
                        f"{c.missing} of its {c.expected} {_what(c)} not "
                        f"{'reported' if c.kind in _KINDS_RECONCILED else 'raised'}"
                        for c in self.alerts.missed]
            reasons += [f"unexpected alert {a.rule} on {a.identity.hex()[:16]}… "
                        f"({len(a.refs)} records)" for a in self.alerts.unexpected]
            reasons += [f"unexpected reconciliation finding: {ref[0]} reports its record "
                        f"{ref[1]} {status}" for ref, status in self.alerts.unexpected_findings]
        reasons += [f"{row.platform}: {row.tree_size} of {row.records} records anchored, "
                    f"{row.consistency_valid} of {row.consistency_checked} consistency "
                    "proofs verified" for row in self.checkpoints if not row.ok]
        reasons += [f"trace of {row.subject}: {row.traced} records found for "
                    f"{row.expected} expected ({'same' if row.matched else 'different'} "
                    f"records), {row.bundles_valid} proofs verified"
                    for row in self.traces if not row.ok]
        reasons += [f"{check.name}: {check.result}" for check in self.checks
                    if check.ok is False]
        return reasons

    @property
    def passed(self) -> bool:
        """Whether every planted AML case was found, nothing else alerted, every check passed."""
        return not self.failures()

    @property
    def exit_code(self) -> int:
        """0 when :attr:`passed`, else 1."""
        return 0 if self.passed else 1

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON document (``report.json``)."""
        return {
            "passed": self.passed,
            "failures": self.failures(),
            "elapsed_s": round(self.elapsed, 3),
            "settings": self.settings,
            "phases": [{"phase": p.name, "seconds": round(p.seconds, 3), "detail": p.detail}
                       for p in self.phases],
            "throughput": [t.to_json() for t in self.throughput],
            "checkpoints": [c.to_json() for c in self.checkpoints],
            "traces": [t.to_json() for t in self.traces],
            "alerts": None if self.alerts is None else self.alerts.to_json(),
            "checks": [c.to_json() for c in self.checks],
        }

    def to_markdown(self) -> str:
        """The report for people (``report.md``, also printed at the end of the run)."""
        s = self.settings
        lines = [
            "# jointledger demo report",
            "",
            f"{s.get('payments', 0):,} payments (seed {s.get('seed')}) on "
            f"{', '.join(s.get('platforms', []))}; chain {s.get('chain')} "
            f"(chain id {s.get('chain_id')}, contract {s.get('contract')}).",
            "",
            "## Throughput",
            "",
            *_table(("step", "records", "seconds", "records/s", "note"),
                    [(t.step, f"{t.records:,}", f"{t.seconds:.2f}", f"{t.rate:,.0f}", t.note)
                     for t in self.throughput]),
            "",
            "## Checkpoints per platform",
            "",
            *_table(("platform", "records", "checkpoints", "tree size", "blocks",
                     "consistency proofs", "latest root"),
                    [(c.platform, f"{c.records:,}", str(c.checkpoints), f"{c.tree_size:,}",
                      f"{c.first_block}–{c.last_block}",
                      f"{c.consistency_valid} of {c.consistency_checked} verified",
                      c.root[:16] + "…") for c in self.checkpoints]),
            "",
            "## Traces of planted identities",
            "",
            *_table(("identity", "case", "records (truth)", "records traced", "same records",
                     "platforms", "proofs verified"),
                    [(t.subject, str(t.case or "–"), str(t.expected), str(t.traced),
                      "yes" if t.matched else "NO", ", ".join(t.platforms),
                      f"{t.bundles_valid} of {t.traced}") for t in self.traces]),
            "",
            "## Planted cases: found vs missed",
            "",
        ]
        if self.alerts is not None:
            lines += _table(("#", "planted case", "subject", "what", "expected", "result"),
                            [(str(c.number), c.kind, c.subject, c.detail,
                              ", ".join(c.rules) or "–", _status(c))
                             for c in self.alerts.cases])
            found = self.alerts
            lines += ["", f"{found.alerts} alert(s) raised, {len(found.unexpected)} "
                      "unexpected; " + ("nothing reconciled." if found.findings is None else
                                        f"{found.findings} reconciliation finding(s), "
                                        f"{len(found.unexpected_findings)} unexpected.")]
            for a in found.unexpected:
                lines.append(f"- unexpected alert: {a.rule} on {a.identity.hex()[:16]}…, "
                             f"{a.total_fen:,} fen, {len(a.refs)} records")
            for ref, status in found.unexpected_findings:
                lines.append(f"- unexpected finding: {ref[0]} {ref[1]} {status}")
        lines += [
            "",
            "## Verification",
            "",
            *_table(("check", "result", "verdict"),
                    [(c.name, c.result, _verdict(c.ok)) for c in self.checks]),
            "",
            "## Phases",
            "",
            *_table(("phase", "seconds", "detail"),
                    [(p.name, f"{p.seconds:.2f}", p.detail) for p in self.phases]),
            "",
            "## Result",
            "",
        ]
        failures = self.failures()
        if failures:
            lines.append(f"**FAIL** after {self.elapsed:.1f} s (exit status 1):")
            lines += [f"- {reason}" for reason in failures]
        else:
            lines.append(f"**PASS**: every planted case found, no unexpected alert or finding, "
                         f"every proof and the case file verified, nothing planted in public "
                         f"data; {self.elapsed:.1f} s (exit status 0).")
        return "\n".join(lines) + "\n"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "FAIL"


_KINDS_RECONCILED: Final = frozenset(kind.value for kind in _FINDING_OF)


def _what(case: CaseResult) -> str:
    return "finding(s)" if case.kind in _KINDS_RECONCILED else "alert(s)"


def _status(case: CaseResult) -> str:
    if case.status == MISSED:
        return f"**MISSED** ({case.missing} of {case.expected} {_what(case)} missing)"
    return case.status


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return out
