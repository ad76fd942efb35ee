"""``jointledger demo``: the whole story at a small size, its report logic, its rejections.

The module's fixture runs the real demo once (a chain, two platform nodes and a regulator
node as processes, 1,500 payments); the tests read what it wrote. The report logic is
tested on its own with alerts made from the ground truth, so that a missed case, an
unexpected alert or a failed check is shown to fail the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger_node.cli.chain import run_chain
from ledger_node.cli.main import main
from ledger_node.demo.linkscan import Haystack
from ledger_node.demo.localsite import free_port
from ledger_node.demo.postgres_cluster import PostgresCluster
from ledger_node.demo.report import (
    FOUND,
    NOT_BUILT,
    Check,
    CheckpointRow,
    DemoReport,
    Finding,
    TraceRow,
    compare_alerts,
)
from ledger_node.demo.run import (
    MARKER,
    PHASES,
    cross_platform_hint,
    demo_spec,
    identity_needles,
    planted_parties,
    prepare_demo,
    run_demo,
    spec_document,
)
from ledger_node.demo.scenario import (
    LargeValue,
    PlantedKind,
    ReconciliationMismatch,
    ReconciliationMissing,
    RecordRef,
    Scenario,
    ScenarioSpec,
    StructuringRing,
    generate_scenario,
    spec_from_document,
)
from ledger_node.errors import InvalidConfig, InvalidScenario
from ledger_node.protocol.aml import Alert
from ledger_node.protocol.escrow import identity_key
from ledger_node.protocol.pairwise import Side

SMALL = "payments: 1500\nseed: 3\npeople: 300\nmerchants: 40\n"


@dataclass
class Run:
    """One demo run: where it wrote, what it returned and printed."""

    out: Path
    status: int
    progress: list[str]
    shown: list[str]

    def json(self, name: str) -> Any:
        return json.loads((self.out / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp = tmp_path_factory.mktemp("demo")
    scenario = tmp / "small.yaml"
    scenario.write_text(SMALL, encoding="utf-8")
    progress: list[str] = []
    shown: list[str] = []
    plan = prepare_demo(tmp / "out", scenario_file=scenario, echo=progress.append)
    status = run_demo(plan, echo=progress.append, show=shown.append)
    return Run(tmp / "out", status, progress, shown)


# ---------------------------------------------------------------------- the run itself


def test_the_small_demo_passes_and_says_so(run: Run) -> None:
    report = run.json("report.json")
    assert run.status == 0, report["failures"]
    assert report["passed"] is True and report["failures"] == []
    assert [line.split("]")[0] for line in run.progress if line.startswith("[")] == [
        f"[{n}/{PHASES}" for n in range(1, PHASES + 1)]
    assert run.progress[-1].startswith("PASS in ")
    assert run.shown == [(run.out / "report.md").read_text(encoding="utf-8")]
    for title in ("## Throughput", "## Checkpoints per platform",
                  "## Planted cases: found vs missed", "## Verification", "**PASS**"):
        assert title in run.shown[0]


def test_every_planted_case_is_found_and_nothing_else(run: Run) -> None:
    alerts = run.json("report.json")["alerts"]
    assert [(case["kind"], case["status"]) for case in alerts["cases"]] == [
        ("structuring", FOUND)] * 3 + [("large_value", FOUND), ("reconciliation_missing", FOUND),
                                       ("reconciliation_mismatch", FOUND)]
    assert alerts["unexpected"] == [] and alerts["alerts"] == 4
    # the surviving half of the missing payment, both halves of the mismatched one
    assert alerts["unexpected_findings"] == [] and alerts["findings"] == 3


def test_every_proof_and_check_passes(run: Run) -> None:
    report = run.json("report.json")
    checks = {c["check"].split(" (")[0]: c for c in report["checks"]}
    assert set(checks) == {"proof bundles", "reconciliation", "regulator ingest", "disclosure",
                           "case file", "unlinkability audit", "audit control"}
    assert all(c["ok"] is True for c in checks.values())
    assert ", 1 missing" in checks["reconciliation"]["result"]
    assert " 0 found" in checks["unlinkability audit"]["result"]
    for row in report["checkpoints"]:
        assert row["tree_size"] == row["records"] > 0
        assert row["consistency_valid"] == row["consistency_checked"]
    for trace in report["traces"]:
        assert trace["matched"] and trace["bundles_valid"] == trace["traced"] > 0
    steps = {t["step"]: t for t in report["throughput"]}
    assert steps["regulator ingest"]["records"] == sum(r["records"]
                                                       for r in report["checkpoints"])


def test_the_output_directory_holds_every_artefact(run: Run) -> None:
    for name in (MARKER, "report.json", "report.md", "scenario.json", "scenario-spec.json",
                 "case-file.json", "case-file-verification.txt", "bundle.json",
                 "disclosure.json",
                 "deployment.json", "site/chain.db", "site/keys/pboc.sm2.pem",
                 "site/unionpay.log", "site/wechatpay.log", "site/pboc.log", "site/chain.log"):
        assert (run.out / name).exists(), name
    assert (run.out / "site/keys/pboc.sm2.pem").stat().st_mode & 0o077 == 0
    spec = spec_from_document(run.json("scenario-spec.json"))
    assert spec == ScenarioSpec(payments=1500, seed=3, people=300, merchants=40)
    assert run.json("scenario.json")["summary"]["payments"] == 1500


def test_the_case_file_and_bundle_reverify_on_the_restarted_chain(
    run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    """What docs/demo.md tells a user to do: serve the stored chain again, then verify."""
    port = free_port()
    stop = threading.Event()
    lines: list[str] = []
    server = threading.Thread(target=run_chain, args=("127.0.0.1", port), kwargs={
        "data": run.out / "site/chain.db", "deployment_path": run.out / "site/deployment.json",
        "echo": lines.append, "stop": stop})
    server.start()
    try:
        for _ in range(200):
            if any(line.startswith("serving") for line in lines):
                break
            stop.wait(0.05)
        assert any("kept from" in line for line in lines), lines
        url = f"http://127.0.0.1:{port}"
        pinned = ["--rpc-url", url, "--deployment", str(run.out / "deployment.json")]
        key = ["--regulator-key", str(run.out / "site/keys/pboc.sm2.pem")]
        assert main(["verify", str(run.out / "case-file.json"), *pinned, *key]) == 0
        assert main(["verify", str(run.out / "bundle.json"), *pinned]) == 0
        assert "VALID" in capsys.readouterr().out
        case = run.json("case-file.json")
        case["alerts"][0]["total_fen"] += 1
        tampered = run.out / "tampered-case-file.json"
        tampered.write_text(json.dumps(case), encoding="utf-8")
        assert main(["verify", str(tampered), *pinned, *key]) == 1
    finally:
        stop.set()
        server.join(timeout=30)


@pytest.mark.anvil
def test_the_demo_runs_on_an_external_chain(tmp_path: Path, anvil_url: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """On anvil, and with nothing planted: the demo then discloses, traces and audits the
    scenario's first record and its parties."""
    scenario = tmp_path / "small.json"
    scenario.write_text(json.dumps({"payments": 800, "people": 200, "merchants": 30,
                                    "planted": []}))
    out = tmp_path / "out"
    assert main(["demo", "--scenario", str(scenario), "--out", str(out),
                 "--rpc-url", anvil_url]) == 0
    assert json.loads((out / "deployment.json").read_text())["chainId"] == 31337
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and report["settings"]["rpc_url"] == anvil_url
    assert report["alerts"] == {"alerts": 0, "cases": [], "unexpected": [], "findings": 0,
                                "unexpected_findings": []}
    assert [t["case"] for t in report["traces"]] == [0, 0]
    case = json.loads((out / "case-file.json").read_text())
    assert case["alerts"] == [] and len(case["records"]) == len(case["disclosures"]) == 1
    assert (out / "bundle.json").exists() and (out / "disclosure.json").exists()
    assert "**PASS**" in capsys.readouterr().out


def test_the_demo_runs_with_the_regulator_store_on_postgresql(
        tmp_path: Path, postgres_cluster: PostgresCluster) -> None:
    """``jointledger demo --store postgresql://...`` as a real process: the whole story
    passes with the regulator node's store in PostgreSQL (its records are there)."""
    scenario = tmp_path / "small.yaml"
    scenario.write_text(SMALL, encoding="utf-8")
    url = postgres_cluster.new_database()
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "ledger_node.cli", "demo", "--scenario", str(scenario),
         "--out", str(out), "--store", url], capture_output=True, text=True, timeout=600,
        cwd=tmp_path, env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and report["settings"]["regulator store"] == url
    assert "[store]" in (out / "site" / "pboc-regulator.toml").read_text()
    assert not (out / "site" / "pboc-regulator.db").exists()
    with psycopg.connect(url) as conn:
        held = conn.execute("SELECT count(*) FROM records").fetchone()
    assert held is not None and held[0] == sum(int(n.replace(",", "")) for n in
                                                report["settings"]["records"].values())


# ---------------------------------------------------------------------- the report logic


def _split(ref: str) -> RecordRef:
    platform, _, tx = ref.partition("/")
    return platform, tx


def _alerts_of(scenario: Scenario) -> list[Alert]:
    """The alerts a perfect regulator raises: exactly the expected ones."""
    at = datetime(2026, 11, 27, tzinfo=UTC)
    return [Alert(str(e.rule), e.identity, str(e.direction), 1, at, at,
                  tuple(sorted({p for p, _ in e.records})),
                  tuple(sorted(f"{p}/{tx}" for p, tx in e.records)), "")
            for e in scenario.expected_alerts]


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate_scenario(ScenarioSpec(payments=400, seed=9, people=120, merchants=20))


def _findings_of(scenario: Scenario) -> list[Finding]:
    """The findings a perfect reconciliation reports: each planted fault's records."""
    status = {PlantedKind.RECONCILIATION_MISSING: "missing",
              PlantedKind.RECONCILIATION_MISMATCH: "amount_mismatch"}
    return [(ref, status[case.kind]) for case in scenario.planted if case.kind in status
            for ref in sorted(case.records)]


def _report(scenario: Scenario, alerts: list[Alert],
            findings: list[Finding] | None = None) -> DemoReport:
    report = DemoReport(settings={"payments": scenario.spec.payments, "seed": 9,
                                  "platforms": list(scenario.spec.platforms)})
    report.alerts = compare_alerts(scenario, alerts, _split,
                                   _findings_of(scenario) if findings is None else findings)
    return report


def test_exact_alerts_and_findings_pass(scenario: Scenario) -> None:
    report = _report(scenario, _alerts_of(scenario))
    assert report.failures() == [] and report.exit_code == 0
    assert report.alerts is not None
    assert [c.status for c in report.alerts.cases] == [FOUND] * 6
    assert [c.expected for c in report.alerts.cases][4:] == [1, 2]
    assert "**PASS**" in report.to_markdown()


def test_without_reconciliation_the_faults_are_not_checked_and_do_not_fail(
        scenario: Scenario) -> None:
    report = DemoReport(settings={})
    report.alerts = compare_alerts(scenario, _alerts_of(scenario), _split)
    report.checks.append(Check("reconciliation", NOT_BUILT, None))
    assert [c.status for c in report.alerts.cases] == [FOUND] * 4 + [NOT_BUILT] * 2
    assert report.exit_code == 0 and "| n/a |" in report.to_markdown()


def test_a_missed_or_unexpected_reconciliation_finding_fails_the_run(
        scenario: Scenario) -> None:
    findings = _findings_of(scenario)
    report = _report(scenario, _alerts_of(scenario), findings[:-1])
    assert report.alerts is not None and [c.number for c in report.alerts.missed] == [6]
    assert report.failures() == [f"planted case 6 (reconciliation_mismatch, "
                                 f"{report.alerts.cases[5].subject}) was missed: 1 of its 2 "
                                 "finding(s) not reported"]
    other = next(ref for ref in (("unionpay", r.local_tx_id)
                                 for r in scenario.records["unionpay"])
                 if all(ref != f[0] for f in findings))
    for status in ("missing", "pending"):
        report = _report(scenario, _alerts_of(scenario), [*findings, (other, status)])
        assert report.failures() == [f"unexpected reconciliation finding: unionpay reports "
                                     f"its record {other[1]} {status}"]
    wrong = [(ref, "missing") for ref, _ in findings]  # the right records, the wrong status
    assert _report(scenario, _alerts_of(scenario), wrong).exit_code == 1


def test_the_hint_tells_each_cross_platform_half_its_side(scenario: Scenario) -> None:
    hint = cross_platform_hint(scenario)
    halves: dict[str, set[tuple[str, str, Side]]] = {}
    for platform, record in scenario.all_records():
        cross = hint(record)
        assert (cross is None) == (not record.clearing_ref)
        if cross is not None:
            halves.setdefault(record.clearing_ref, set()).add(
                (platform, cross.counterparty, cross.side))
    faults = {case.clearing_ref for case in scenario.planted if case.clearing_ref}
    assert len(halves) > 20
    for clearing_ref, seen in halves.items():
        if len(seen) == 1:  # the planted missing payment: one half only
            assert clearing_ref in faults
            continue
        assert seen == {("unionpay", "wechatpay", Side.PAYER),
                        ("wechatpay", "unionpay", Side.PAYEE)} or seen == {
            ("unionpay", "wechatpay", Side.PAYEE), ("wechatpay", "unionpay", Side.PAYER)}


def test_a_missed_planted_case_fails_the_run(scenario: Scenario) -> None:
    alerts = _alerts_of(scenario)
    report = _report(scenario, alerts[:1] + alerts[2:])
    assert report.exit_code == 1
    assert report.alerts is not None and [c.number for c in report.alerts.missed] == [2]
    assert report.failures() == [f"planted case 2 (structuring, "
                                 f"{report.alerts.cases[1].subject}) was missed: 1 of its 1 "
                                 "alert(s) not raised"]
    assert "**MISSED**" in report.to_markdown() and "**FAIL**" in report.to_markdown()


def test_an_alert_on_the_wrong_records_is_a_miss_and_an_unexpected_alert(
        scenario: Scenario) -> None:
    alerts = _alerts_of(scenario)
    alerts[0] = replace(alerts[0], refs=alerts[0].refs[1:])
    report = _report(scenario, alerts)
    assert report.alerts is not None
    assert [c.number for c in report.alerts.missed] == [1]
    assert report.alerts.unexpected == (alerts[0],)
    assert any(f.startswith("unexpected alert structuring") for f in report.failures())


def test_an_extra_alert_fails_the_run(scenario: Scenario) -> None:
    extra = replace(_alerts_of(scenario)[0], identity=b"\x07" * 32)
    report = _report(scenario, [*_alerts_of(scenario), extra])
    assert report.alerts is not None and report.alerts.missed == ()
    assert report.failures() == [f"unexpected alert {extra.rule} on {'07' * 8}… "
                                 f"({len(extra.refs)} records)"]


def test_failed_checks_checkpoints_and_traces_fail_the_run(scenario: Scenario) -> None:
    good = _report(scenario, _alerts_of(scenario))
    for change in (
        lambda r: r.checks.append(Check("case file", "INVALID: 1 failed", False)),
        lambda r: r.checkpoints.append(CheckpointRow("unionpay", 10, 1, 9, 1, 1, 0, 0, "ab")),
        lambda r: r.checkpoints.append(CheckpointRow("unionpay", 10, 2, 10, 1, 2, 1, 0, "ab")),
        lambda r: r.traces.append(TraceRow("张三", 1, 5, 4, False, ("unionpay",), 4)),
        lambda r: r.traces.append(TraceRow("张三", 1, 5, 5, True, ("unionpay",), 4)),
    ):
        report = _report(scenario, _alerts_of(scenario))
        change(report)
        assert report.exit_code == 1 and len(report.failures()) == 1
    assert good.exit_code == 0
    assert _report(scenario, []).exit_code == 1  # nothing found: every AML case missed
    assert DemoReport(settings={}).failures() == [
        "the alerts were not compared with the planted cases"]


def test_the_audit_needles_cover_every_party_of_the_planted_records(scenario: Scenario) -> None:
    parties = planted_parties(scenario)
    keys = {p.key for p in parties}
    planted = {ref for case in scenario.planted for ref in case.records}
    expected = {case.identity for case in scenario.planted}
    for platform, record in scenario.all_records():
        if (platform, record.local_tx_id) in planted:
            expected |= {identity_key(record.payer_identity), identity_key(record.payee_identity)}
    assert keys == expected and len(parties) == len(keys)
    needles = identity_needles(parties[:1])
    party = parties[0]
    haystack = Haystack()
    haystack.add("identity as hex", party.identity.encode().hex().encode(), text=True)
    haystack.add("token", f'{{"account": "{party.accounts[0][1]}"}}'.encode(), text=True)
    haystack.add("key", party.key, text=False)
    found = {hit.needle.owner for hit in haystack.scan(needles)}
    assert found == {f"{party.name} identity", f"{party.name} {party.accounts[0][0]} account",
                     f"{party.name} identity key"}


# ---------------------------------------------------------------------- options and files


@pytest.mark.parametrize("spec", [
    ScenarioSpec(),
    ScenarioSpec(payments=900, seed=4, platforms=("alipay", "unionpay", "wechatpay"),
                 people=400, merchants=60, planted=(
                     StructuringRing((70_000_000,) * 3, "payee", "institution", 60,
                                     ("alipay", "wechatpay")),
                     LargeValue(60_000_000, "payee", "person_domestic", "unionpay"),
                     ReconciliationMissing("payer"), ReconciliationMismatch("payer", 250))),
])
def test_the_spec_document_reproduces_the_spec(spec: ScenarioSpec) -> None:
    assert spec_from_document(json.loads(json.dumps(spec_document(spec)))) == spec


def test_options_override_the_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SMALL, encoding="utf-8")
    assert demo_spec(path, payments=700, seed=11) == ScenarioSpec(
        payments=700, seed=11, people=300, merchants=40)
    assert demo_spec() == ScenarioSpec()


def _demo(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["demo", *args])
    return status, capsys.readouterr().err


@pytest.mark.parametrize(("document", "named"), [
    ("payments: 1500\npeeple: 300\n", "$.peeple: unknown key for a scenario; did you mean "
                                      "'people'?"),
    ("planted:\n  - kind: structuring\n    parts_fen: [9000000, 60000000, 9000000]\n",
     "$.planted[0].parts_fen[1]: 60000000 fen is not under the person_domestic threshold"),
    ("planted:\n  - kind: large_value\n", "$.planted[0]: missing key 'amount_fen'"),
    ("planted:\n  - kind: laundering\n", "$.planted[0].kind: unknown planted kind"),
    ("payments: [1\n", "line 2: not valid YAML"),
    ("payments: 1\npayments: 2\n", "line 2: duplicate key 'payments'"),
    ("cash: 1.5\n", "$.cash: must lie in [0, 1], got 1.5"),
    ("platforms: [unionpay, pboc]\n", "$.platforms: 'pboc' is the demo's regulator"),
    ("payments: 100000\npeople: 4\nmerchants: 1\nplanted: []\n",
     "payments: 100000 payments cannot be spread over 4 people and 1 merchants"),
])
def test_scenario_files_with_mistakes_are_rejected_naming_the_mistake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: str, named: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(document, encoding="utf-8")
    out = tmp_path / "out"
    status, err = _demo(capsys, "--scenario", str(path), "--out", str(out))
    assert status == 2
    assert err.startswith("jointledger demo: invalid scenario") and named in err, err
    assert not out.exists()  # rejected before anything is written or started


@pytest.mark.parametrize(("name", "content", "named"), [
    ("s.txt", "payments: 10\n", "unknown file type '.txt'"),
    ("missing.yaml", None, "cannot read the file"),
    ("s.json", '{"payments": 10,}', "not valid JSON"),
    ("s.json", "[1, 2]", "$: the document must be a mapping"),
])
def test_unreadable_scenario_files_are_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str | None,
    named: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    status, err = _demo(capsys, "--scenario", str(path), "--out", str(tmp_path / "out"))
    assert status == 2 and named in err and str(path) in err, err


@pytest.mark.parametrize(("args", "named"), [
    (["--payments", "0"], "--payments: must be at least 1, got 0"),
    (["--payments", "-5"], "--payments: must be at least 1, got -5"),
    (["--payments", "20"], "--payments: 20 is fewer than the 21 payments of the planted cases"),
    (["--store", "mysql://pboc:s3cret@db/x"], "--store must be a postgresql:// URL, got "
                                              "'mysql://pboc:***@db/x'"),
])
def test_bad_options_are_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  args: list[str], named: str) -> None:
    status, err = _demo(capsys, *args, "--out", str(tmp_path / "out"))
    assert status == 2 and named in err, err
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--payments", "many"])
    assert exit_info.value.code == 2


def test_the_output_directory_is_replaced_only_if_the_demo_wrote_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("mine")
    status, err = _demo(capsys, "--payments", "100", "--out", str(theirs))
    assert status == 2 and "not empty and was not written by an earlier demo" in err
    assert (theirs / "thesis.tex").read_text() == "mine"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert _demo(capsys, "--out", str(a_file))[0] == 2
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / MARKER).write_text("")
    (ours / "old-report.md").write_text("old")
    prepare_demo(ours, payments=100, echo=lambda line: None)
    assert sorted(p.name for p in ours.iterdir()) == [MARKER]
    with pytest.raises(InvalidConfig):
        prepare_demo(theirs, payments=100)
    with pytest.raises(InvalidScenario):
        prepare_demo(ours, payments=0)


def test_an_unreachable_chain_is_reported(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _demo(capsys, "--payments", "100", "--out", str(tmp_path / "out"),
                        "--rpc-url", "http://127.0.0.1:9")
    assert status == 1
    assert "cannot reach the chain at http://127.0.0.1:9" in err  # what was found
    assert "expected the chain listening there. Try: start it" in err  # expected, what to try
