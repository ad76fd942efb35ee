"""Verification checks: the outcome of one named verification step, and how people see it.

Proof-bundle verification (:mod:`ledger_node.protocol.bundle`) and case-file verification
(:mod:`ledger_node.regulator.casefile`) report their results as :class:`Check` values, so
the two share one vocabulary of statuses, one JSON form and one way of printing a check.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final


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
