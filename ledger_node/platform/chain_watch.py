"""The chain as a node last saw it: a background probe whose latest result ``GET /v1/health``
reports with its age, so that answering health never waits on a chain that stopped answering.

:class:`ChainWatch` runs ``probe`` (a few cheap reads) in its own thread every ``interval``
seconds and whenever a caller asks for a fresh result. A caller waits for that fresh result
at most ``wait`` seconds (and not at all behind a probe that has already waited longer);
otherwise it gets the latest finished probe. The chain counts as reachable only if that
probe answered and finished less than ``max_age`` seconds ago: a probe stuck in the JSON-RPC
client's retries (minutes with the default 30 s timeout) makes the status go stale, which
is reported as unreachable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ChainProbe", "ChainStatus", "ChainWatch"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChainProbe:
    """What one successful probe read from the chain."""

    chain_id: int
    block_number: int
    latest_anchored_size: int | None  # the log's latest checkpoint on chain, None before one


@dataclass(frozen=True)
class ChainStatus:
    """The latest finished probe, judged at the time of asking.

    ``reachable``: that probe answered and is younger than the watch's ``max_age``.
    ``probe``: what it read (``None`` unless it answered). ``error``: why the chain counts as
    unreachable (the probe's failure, or that no probe has answered for ``age_s``).
    ``checked_at`` / ``last_answered_at``: Unix seconds when the latest probe finished /
    when a probe last answered. ``probes`` / ``failures``: probes finished / failed so far.
    """

    reachable: bool
    probe: ChainProbe | None
    error: str | None
    checked_at: float | None
    age_s: float | None
    last_answered_at: float | None
    probes: int
    failures: int


@dataclass(frozen=True)
class _Outcome:
    """One finished probe: when (monotonic and wall clock), and its reading or error."""

    finished: float
    finished_wall: float
    probe: ChainProbe | None
    error: str | None


def judge(outcome: _Outcome | None, *, now: float, max_age: float,
          last_answered_at: float | None, probes: int, failures: int) -> ChainStatus:
    """The status that ``outcome`` (the latest finished probe) gives at monotonic ``now``."""
    if outcome is None:
        return ChainStatus(False, None, "the chain has not been probed yet", None, None,
                           last_answered_at, probes, failures)
    age = max(0.0, now - outcome.finished)
    if outcome.probe is None:
        return ChainStatus(False, None, outcome.error, outcome.finished_wall, age,
                           last_answered_at, probes, failures)
    if age > max_age:
        return ChainStatus(False, None, f"the chain has not answered for {age:.1f} s (a probe "
                           "is still waiting for it)", outcome.finished_wall, age,
                           last_answered_at, probes, failures)
    return ChainStatus(True, outcome.probe, None, outcome.finished_wall, age,
                       last_answered_at, probes, failures)


class ChainWatch:
    """Probes the chain from its own thread; :meth:`status` answers from the latest probe."""

    def __init__(self, probe: Callable[[], ChainProbe], *, interval: float, max_age: float,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        """Probe with ``probe`` every ``interval`` s; results older than ``max_age`` s count as
        no answer. Raises ``ValueError`` unless ``0 < interval < max_age``."""
        if not 0 < interval < max_age:
            raise ValueError(f"need 0 < probe interval < max age, got {interval} and {max_age}")
        self._probe = probe
        self._interval = interval
        self._max_age = max_age
        self._clock = clock
        self._wall = wall_clock
        self._cond = threading.Condition()
        self._requested = 0  # fresh probes asked for (tickets)
        self._served = 0  # tickets a finished probe answered (it started after they were asked)
        self._probing_since: float | None = None
        self._latest: _Outcome | None = None
        self._last_answered_at: float | None = None
        self._probes = 0
        self._failures = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the probing thread (its first probe runs at once); a stopped watch stays
        stopped."""
        with self._cond:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name="jointledger-chain-watch",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop probing; a probe in flight is abandoned (the thread is a daemon)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            self._thread = None

    def status(self, *, wait: float = 0.0) -> ChainStatus:
        """The chain's status; with ``wait`` > 0 ask for a fresh probe and wait for it at most
        ``wait`` seconds from now, and no longer than ``wait`` after a probe in flight started.

        Without a running thread (node not started) a ``wait`` > 0 probes in this thread.
        """
        if wait > 0 and self._thread is None:
            self._record(self._run_probe(), None)
            return self.snapshot()
        if wait > 0:
            with self._cond:
                self._requested += 1
                ticket = self._requested
                self._cond.notify_all()
                deadline = self._clock() + wait
                if self._probing_since is not None:  # ours runs only after that one ends
                    deadline = min(deadline, self._probing_since + wait)
                while self._served < ticket and not self._stopping:
                    left = deadline - self._clock()
                    if left <= 0:
                        break
                    self._cond.wait(left)
        return self.snapshot()

    def snapshot(self) -> ChainStatus:
        """The status from the latest finished probe, without asking for a new one."""
        with self._cond:
            return judge(self._latest, now=self._clock(), max_age=self._max_age,
                         last_answered_at=self._last_answered_at, probes=self._probes,
                         failures=self._failures)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and self._served >= self._requested:
                    last = self._latest.finished if self._latest is not None else None
                    left = 0.0 if last is None else last + self._interval - self._clock()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stopping:
                    return
                ticket = self._requested
                self._probing_since = self._clock()
            self._record(self._run_probe(), ticket)

    def _run_probe(self) -> _Outcome:
        try:
            probe: ChainProbe | None = self._probe()
            error = None
        except Exception as exc:  # whatever the chain client raised: reported, never fatal
            probe, error = None, f"{type(exc).__name__}: {exc}"
        return _Outcome(self._clock(), self._wall(), probe, error)

    def _record(self, outcome: _Outcome, ticket: int | None) -> None:
        """Keep ``outcome`` as the latest; ``ticket``: the requests it answers (from the
        thread), logging only changes between answering and failing."""
        with self._cond:
            was_failing = self._latest is not None and self._latest.probe is None
            self._latest = outcome
            self._probes += 1
            if ticket is not None:
                self._probing_since = None
                self._served = max(self._served, ticket)
            if outcome.probe is None:
                self._failures += 1
            else:
                self._last_answered_at = outcome.finished_wall
            self._cond.notify_all()
        if outcome.probe is None and not was_failing:
            _logger.warning("the chain does not answer: %s", outcome.error)
        elif outcome.probe is not None and was_failing:
            _logger.warning("the chain answers again")
