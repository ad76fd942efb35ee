"""The check runner shared by proof-bundle and case-file verification, on its own.

Every way a step can end is asserted: a pass records its detail, each kind of exception
either fails the check with the reason the verifiers report or (the chain could not be read)
propagates as ChainError with nothing recorded; a check whose prerequisite did not pass is
NOT_RUN without running; a check this verification cannot perform is NOT_CHECKED. A model of
the runner, driven by hypothesis, checks the dependency rule over arbitrary plans.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st
from web3.exceptions import Web3Exception, Web3RPCError, Web3TypeError, Web3ValueError

from ledger_node.errors import (
    AnchorConflict,
    ChainError,
    ContractRevert,
    DeploymentError,
    InvalidOpening,
    InvalidSignature,
    LedgerError,
)
from ledger_node.protocol.checks import (
    CHECK_MARKS,
    Check,
    CheckFailed,
    CheckRunner,
    CheckStatus,
    check_line,
)

names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
messages = st.text(max_size=40)


def raising(exc: BaseException) -> Callable[[], str]:
    """A step that raises ``exc``."""

    def step() -> str:
        raise exc

    return step


def passing(detail: str = "ok") -> Callable[[], str]:
    """A step that passes with ``detail``."""
    return lambda: detail


# --------------------------------------------------------------------------------------
# One step
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reads_chain", [False, True])
def test_a_step_that_returns_passes_with_its_detail(reads_chain: bool) -> None:
    runner = CheckRunner()
    assert runner.run("inclusion", passing("root abc"), reads_chain=reads_chain) is True
    assert runner.checks == (Check("inclusion", True, "root abc", CheckStatus.PASSED),)
    assert runner.passed == {"inclusion"}


def test_a_new_runner_has_recorded_nothing() -> None:
    runner = CheckRunner()
    assert runner.checks == ()
    assert runner.passed == frozenset()


@pytest.mark.parametrize(
    ("exc", "detail"),
    [
        (CheckFailed("the chain's root differs"), "the chain's root differs"),
        (ContractRevert("UnknownCheckpoint", (b"\x01", 8)),
         "the contract refused: UnknownCheckpoint(b'\\x01', 8)"),
        (ContractRevert("NotMember"), "the contract refused: NotMember()"),
        (DeploymentError("no contract code at 0xabc"), "no contract code at 0xabc"),
        (InvalidSignature("SM2 signature does not verify"), "SM2 signature does not verify"),
        (InvalidOpening("the salt does not open the commitment"),
         "the salt does not open the commitment"),
        (LedgerError("bad"), "bad"),
        (ValueError("not a number"), "not a number"),
        (TypeError("expected bytes"), "expected bytes"),
        (LedgerError(), "LedgerError"),
        (ValueError(), "ValueError"),
        (TypeError(""), "TypeError"),
    ],
)
@pytest.mark.parametrize("reads_chain", [False, True])
def test_a_failing_step_is_recorded_failed_with_its_reason(exc: Exception, detail: str,
                                                          reads_chain: bool) -> None:
    runner = CheckRunner()
    assert runner.run("signature", raising(exc), reads_chain=reads_chain) is False
    assert runner.checks == (Check("signature", False, detail, CheckStatus.FAILED),)
    assert runner.passed == frozenset()


@pytest.mark.parametrize(
    ("exc", "detail"),
    [
        (RuntimeError("boom"), "RuntimeError: boom"),
        (KeyError("owner"), "KeyError: 'owner'"),
        (AssertionError(), "AssertionError: "),
        (ZeroDivisionError("division by zero"), "ZeroDivisionError: division by zero"),
    ],
)
def test_an_unexpected_exception_fails_a_step_that_does_not_read_the_chain(
        exc: Exception, detail: str) -> None:
    runner = CheckRunner()
    assert runner.run("payment", raising(exc)) is False
    assert runner.checks == (Check("payment", False, detail),)


@pytest.mark.parametrize("exc", [RuntimeError("boom"), OSError("connection reset"),
                                 KeyError("owner")])
def test_an_unexpected_exception_in_a_step_that_reads_the_chain_is_a_chain_error(
        exc: Exception) -> None:
    runner = CheckRunner()
    with pytest.raises(ChainError) as raised:
        runner.run("log_owner", raising(exc), reads_chain=True)
    assert str(raised.value) == f"reading the chain failed during the log_owner check: {exc!r}"
    assert raised.value.__cause__ is exc
    assert runner.checks == ()
    assert runner.passed == frozenset()


@pytest.mark.parametrize("exc", [Web3Exception("rpc down"), Web3RPCError("rpc error"),
                                 Web3ValueError("bad response"), Web3TypeError("bad type")])
@pytest.mark.parametrize("reads_chain", [False, True])
def test_a_web3_failure_is_a_chain_error_even_when_it_is_a_value_error(
        exc: Exception, reads_chain: bool) -> None:
    runner = CheckRunner()
    with pytest.raises(ChainError) as raised:
        runner.run("anchoring", raising(exc), reads_chain=reads_chain)
    assert str(raised.value) == f"reading the chain failed during the anchoring check: {exc!r}"
    assert raised.value.__cause__ is exc
    assert runner.checks == ()


@pytest.mark.parametrize("exc", [ChainError("node unreachable"), AnchorConflict("taken")])
@pytest.mark.parametrize("reads_chain", [False, True])
def test_a_chain_error_other_than_a_revert_or_deployment_propagates_as_it_is(
        exc: ChainError, reads_chain: bool) -> None:
    runner = CheckRunner()
    with pytest.raises(ChainError) as raised:
        runner.run("deployment", raising(exc), reads_chain=reads_chain)
    assert raised.value is exc
    assert runner.checks == ()


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(2)])
def test_what_is_not_an_exception_propagates_untouched(exc: BaseException) -> None:
    runner = CheckRunner()
    with pytest.raises(type(exc)) as raised:
        runner.run("structure", raising(exc), reads_chain=True)
    assert raised.value is exc
    assert runner.checks == ()


@given(message=messages)
def test_a_check_failed_message_is_the_detail_verbatim(message: str) -> None:
    runner = CheckRunner()
    runner.run("x", raising(CheckFailed(message)))
    assert runner.checks == (Check("x", False, message),)


@given(message=messages, kind=st.sampled_from([LedgerError, ValueError, TypeError]))
def test_an_error_about_the_input_gives_its_message_or_its_type_name(
        message: str, kind: type[Exception]) -> None:
    runner = CheckRunner()
    runner.run("x", raising(kind(message)))
    assert runner.checks == (Check("x", False, message or kind.__name__),)


# --------------------------------------------------------------------------------------
# Dependencies, not run, not checked
# --------------------------------------------------------------------------------------


def test_a_step_runs_when_everything_it_depends_on_passed() -> None:
    runner = CheckRunner()
    runner.run("structure", passing())
    runner.run("deployment", passing())
    assert runner.run("anchoring", passing("mined"), depends_on=("structure", "deployment"))
    assert runner.checks[-1] == Check("anchoring", True, "mined")
    assert runner.passed == {"structure", "deployment", "anchoring"}


def test_dependants_of_a_failed_check_are_not_run() -> None:
    runner = CheckRunner()
    calls: list[str] = []

    def step(name: str) -> Callable[[], str]:
        def run() -> str:
            calls.append(name)
            return name
        return run

    runner.run("deployment", raising(CheckFailed("wrong chain")))
    assert runner.run("checkpoint_on_chain", step("checkpoint_on_chain"),
                      depends_on=("deployment",)) is False
    assert runner.run("log_owner", step("log_owner"),
                      depends_on=("checkpoint_on_chain",)) is False
    assert runner.run("inclusion", step("inclusion")) is True
    assert calls == ["inclusion"]
    assert [(c.name, c.status, c.detail) for c in runner.checks] == [
        ("deployment", CheckStatus.FAILED, "wrong chain"),
        ("checkpoint_on_chain", CheckStatus.NOT_RUN, "not run: deployment did not pass"),
        ("log_owner", CheckStatus.NOT_RUN, "not run: checkpoint_on_chain did not pass"),
        ("inclusion", CheckStatus.PASSED, "inclusion"),
    ]
    assert all(not c.passed for c in runner.checks[:3])
    assert runner.passed == {"inclusion"}


def test_not_run_names_the_first_dependency_that_did_not_pass_in_the_order_given() -> None:
    runner = CheckRunner()
    runner.run("record", passing())
    runner.run("opening", raising(CheckFailed("no opening")))
    runner.not_checked("sealed", "no key")
    runner.run("a", passing(), depends_on=("record", "sealed", "opening"))
    runner.run("b", passing(), depends_on=("opening", "sealed"))
    runner.run("c", passing(), depends_on=("record", "never_recorded"))
    assert [c.detail for c in runner.checks[3:]] == [
        "not run: sealed did not pass",
        "not run: opening did not pass",
        "not run: never_recorded did not pass",
    ]
    assert {c.status for c in runner.checks[3:]} == {CheckStatus.NOT_RUN}


def test_not_run_records_a_check_blocked_by_a_check_of_another_runner() -> None:
    runner = CheckRunner()
    runner.not_run("request", "chain")
    assert runner.checks == (
        Check("request", False, "not run: chain did not pass", CheckStatus.NOT_RUN),)
    assert runner.passed == frozenset()
    assert not runner.checks[0].performed


def test_not_checked_records_the_reason_and_blocks_dependants() -> None:
    runner = CheckRunner()
    runner.not_checked("anchoring", "NOT CHECKED: no chain was given")
    assert runner.checks == (
        Check("anchoring", False, "NOT CHECKED: no chain was given", CheckStatus.NOT_CHECKED),)
    assert not runner.checks[0].performed
    assert runner.passed == frozenset()
    runner.run("later", passing(), depends_on=("anchoring",))
    assert runner.checks[-1].status is CheckStatus.NOT_RUN


def test_checks_and_passed_are_snapshots() -> None:
    runner = CheckRunner()
    runner.run("a", passing())
    checks, passed = runner.checks, runner.passed
    runner.run("b", passing())
    assert isinstance(checks, tuple) and isinstance(passed, frozenset)
    assert [c.name for c in checks] == ["a"] and passed == {"a"}
    assert [c.name for c in runner.checks] == ["a", "b"] and runner.passed == {"a", "b"}


# --------------------------------------------------------------------------------------
# The dependency rule over arbitrary plans, against a model
# --------------------------------------------------------------------------------------

OUTCOMES = ("pass", "fail", "value_error", "not_checked")


@dataclass(frozen=True)
class Step:
    """One planned step: its outcome if run and the earlier steps it depends on."""

    name: str
    outcome: str
    depends_on: tuple[str, ...]


@st.composite
def plans(draw: st.DrawFn) -> list[Step]:
    """A sequence of uniquely named steps, each depending on some earlier (or unknown) ones."""
    step_names = draw(st.lists(names, min_size=1, max_size=10, unique=True))
    steps: list[Step] = []
    for i, name in enumerate(step_names):
        earlier = step_names[:i] + ["unknown"]
        depends = draw(st.lists(st.sampled_from(earlier), max_size=3, unique=True))
        steps.append(Step(name, draw(st.sampled_from(OUTCOMES)), tuple(depends)))
    return steps


@given(plan=plans())
def test_a_step_runs_exactly_when_its_dependencies_passed(plan: list[Step]) -> None:
    runner = CheckRunner()
    ran: list[str] = []
    model_passed: set[str] = set()
    expected: list[tuple[str, CheckStatus, str]] = []
    for step in plan:
        if step.outcome == "not_checked":
            runner.not_checked(step.name, f"cannot check {step.name}")
            expected.append((step.name, CheckStatus.NOT_CHECKED, f"cannot check {step.name}"))
            continue

        def body(step: Step = step) -> str:
            ran.append(step.name)
            if step.outcome == "fail":
                raise CheckFailed(f"{step.name} failed")
            if step.outcome == "value_error":
                raise ValueError(f"{step.name} is malformed")
            return f"{step.name} passed"

        result = runner.run(step.name, body, depends_on=step.depends_on)
        blockers = [d for d in step.depends_on if d not in model_passed]
        if blockers:
            expected.append((step.name, CheckStatus.NOT_RUN,
                             f"not run: {blockers[0]} did not pass"))
        elif step.outcome == "pass":
            model_passed.add(step.name)
            expected.append((step.name, CheckStatus.PASSED, f"{step.name} passed"))
        else:
            reason = "failed" if step.outcome == "fail" else "is malformed"
            expected.append((step.name, CheckStatus.FAILED, f"{step.name} {reason}"))
        assert result is (step.name in model_passed)

    assert [(c.name, c.status, c.detail) for c in runner.checks] == expected
    assert all(c.passed is (c.status is CheckStatus.PASSED) for c in runner.checks)
    assert runner.passed == model_passed
    assert ran == [s.name for s in plan if s.outcome != "not_checked"
                   and all(d in model_passed for d in s.depends_on)]


# --------------------------------------------------------------------------------------
# Check and how it is shown
# --------------------------------------------------------------------------------------


@given(name=names, passed=st.booleans(), detail=messages,
       status=st.sampled_from(list(CheckStatus)))
def test_a_check_status_follows_passed(name: str, passed: bool, detail: str,
                                       status: CheckStatus) -> None:
    if passed and status is not CheckStatus.PASSED:
        with pytest.raises(ValueError, match="cannot both pass and be"):
            Check(name, passed, detail, status)
        return
    check = Check(name, passed, detail, status)
    want = CheckStatus.FAILED if not passed and status is CheckStatus.PASSED else status
    assert check.status is want
    assert check.performed is (want in (CheckStatus.PASSED, CheckStatus.FAILED))
    assert check.to_json() == {"name": name, "status": want.value, "passed": passed,
                               "detail": detail}


def test_check_lines_show_a_four_character_mark_per_status() -> None:
    assert set(CHECK_MARKS) == set(CheckStatus)
    assert all(len(mark) == 4 for mark in CHECK_MARKS.values())
    assert check_line(Check("inclusion", True, "root abc"), 12) == (
        "  PASS  inclusion     root abc")
    assert check_line(Check("log_owner", False, "not run: x did not pass",
                            CheckStatus.NOT_RUN), 0) == (
        "  ----  log_owner  not run: x did not pass")
    assert check_line(Check("anchoring", False, "no chain", CheckStatus.NOT_CHECKED), 10) == (
        "  n/a   anchoring   no chain")
    assert check_line(Check("x", False, "bad"), 1) == "  FAIL  x  bad"
