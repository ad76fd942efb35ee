"""Verification checks and the one runner that performs them.

Proof-bundle verification (:mod:`ledger_node.protocol.bundle`) and case-file verification
(:mod:`ledger_node.regulator.casefile`) are sequences of named steps. Both run them with
:class:`CheckRunner`, which records a :class:`Check` per step, so the two share one vocabulary
of statuses, one JSON form, one way of printing a check and one rule for what a step's
exception means: a reason for a failed check, or (the chain could not be read) no verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from web3.exceptions import Web3Exception

from ledger_node.errors import ChainError, ContractRevert, DeploymentError, LedgerError


class CheckStatus(StrEnum):
    """What became of one check."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not_run"  # a check it depends on failed, so it could not be run
    NOT_CHECKED = "not_checked"  # this mode cannot perform it (no chain at hand)


@dataclass(frozen=True)
class Check:
    """One verification step: its name, whether it passed, and why (always human-readable).

    ``status`` tells a failure from a check that was not performed: ``NOT_RUN`` (skipped
    because a check it depends on failed) and ``NOT_CHECKED`` (this mode cannot perform
    it) both have ``passed=False``. Left out, ``status`` follows ``passed``.
    """

    name: str
    passed: bool
    detail: str
    status: CheckStatus = CheckStatus.PASSED

    def __post_init__(self) -> None:
        if not self.passed and self.status is CheckStatus.PASSED:
            object.__setattr__(self, "status", CheckStatus.FAILED)
        if self.passed and self.status is not CheckStatus.PASSED:
            raise ValueError(f"check {self.name!r} cannot both pass and be {self.status}")

    @property
    def performed(self) -> bool:
        """Whether the check was carried out (it passed or it failed)."""
        return self.status in (CheckStatus.PASSED, CheckStatus.FAILED)

    def to_json(self) -> dict[str, Any]:
        """``{"name", "status", "passed", "detail"}``."""
        return {"name": self.name, "status": self.status.value, "passed": self.passed,
                "detail": self.detail}


CHECK_MARKS: Final = {
    CheckStatus.PASSED: "PASS",
    CheckStatus.FAILED: "FAIL",
    CheckStatus.NOT_RUN: "----",
    CheckStatus.NOT_CHECKED: "n/a ",
}
"""How a check's status is shown to people, four characters wide."""


def check_line(check: Check, width: int) -> str:
    """One check as a line for people: its mark, its name padded to ``width``, its detail."""
    return f"  {CHECK_MARKS[check.status]}  {check.name.ljust(width)}  {check.detail}"


class CheckFailed(Exception):
    """Raised by a step to fail its check; the message is the reason reported to people."""


class CheckRunner:
    """Runs the named steps of one verification in order and records a :class:`Check` each.

    A step is a callable returning the detail of a pass; it fails by raising (see
    :meth:`run`). A step that depends on others runs only if they all passed before it,
    else it is recorded ``NOT_RUN``, naming the first that did not. Steps this
    verification cannot perform are recorded ``NOT_CHECKED`` without running.
    """

    def __init__(self) -> None:
        self._checks: list[Check] = []
        self._passed: set[str] = set()

    @property
    def checks(self) -> tuple[Check, ...]:
        """Every check recorded so far, in the order recorded."""
        return tuple(self._checks)

    @property
    def passed(self) -> frozenset[str]:
        """The names of the checks that passed (what later steps may depend on)."""
        return frozenset(self._passed)

    def run(self, name: str, step: Callable[[], str], *, depends_on: tuple[str, ...] = (),
            reads_chain: bool = False) -> bool:
        """Run ``step`` as check ``name`` unless one it ``depends_on`` did not pass.

        Record the outcome and return whether it passed. The check fails, with a reason,
        if the step raises :class:`CheckFailed` or :class:`DeploymentError` (its message),
        :class:`ContractRevert` ("the contract refused: " and the custom error), or another
        :class:`LedgerError`, ``ValueError`` or ``TypeError`` (its message, else its type's
        name). Any other :class:`ChainError`, or a web3 failure, means the chain could not be
        read: it propagates as :class:`ChainError` and nothing is recorded. Any other
        exception fails the check too, unless the step ``reads_chain`` (then it is most
        likely a transport failure, and it propagates as :class:`ChainError`).
        """
        blocker = next((d for d in depends_on if d not in self._passed), None)
        if blocker is not None:
            self.not_run(name, blocker)
            return False
        try:
            detail = step()
        except CheckFailed as exc:
            return self._fail(name, str(exc))
        except ContractRevert as exc:
            return self._fail(name, f"the contract refused: {exc.name}{exc.error_args!r}")
        except DeploymentError as exc:
            return self._fail(name, str(exc))
        except ChainError:
            raise
        except Web3Exception as exc:  # some are ValueErrors: an RPC failure is not a verdict
            raise ChainError(f"reading the chain failed during the {name} check: {exc!r}"
                             ) from exc
        except (LedgerError, ValueError, TypeError) as exc:
            return self._fail(name, str(exc) or type(exc).__name__)
        except Exception as exc:
            if reads_chain:  # transport failures (requests, sockets): the chain was not read
                raise ChainError(f"reading the chain failed during the {name} check: "
                                 f"{exc!r}") from exc
            return self._fail(name, f"{type(exc).__name__}: {exc}")
        self._checks.append(Check(name, True, detail))
        self._passed.add(name)
        return True

    def not_run(self, name: str, blocker: str) -> None:
        """Record check ``name`` as not run because check ``blocker`` did not pass."""
        self._checks.append(Check(name, False, f"not run: {blocker} did not pass",
                                  CheckStatus.NOT_RUN))

    def not_checked(self, name: str, detail: str) -> None:
        """Record check ``name`` as one this verification cannot perform, saying why."""
        self._checks.append(Check(name, False, detail, CheckStatus.NOT_CHECKED))

    def _fail(self, name: str, detail: str) -> bool:
        self._checks.append(Check(name, False, detail))
        return False
