"""Parallel ingest: a supervisor that keeps N ingest worker processes running.

``jointledger serve --role regulator --workers N`` (PostgreSQL store only) runs this in the
serving process. Who does what:

* **the supervisor** (the serving process) follows the chain: it alone reads anchored
  checkpoints and new logs into the store (one writer of the checkpoint table and its
  scan cursor, so the workers never race over a block range), and serves the API from the
  store like an API replica;
* **worker k of N** (a child process, ``--ingest-worker k/N``) verifies and indexes only
  the logs with :func:`~ledger_node.regulator.node.log_share` ``== k`` (round robin over
  the store's log numbers): disjoint, stable sets, read from the anchors the supervisor
  stored. It serves no HTTP.

A worker that dies (killed, crashed) is reported on the supervisor's log with its exit
status and started again after :data:`RESTART_DELAY_S`; it resumes at its logs' verified
sizes, because each verified range and the new verified size commit in one transaction
that only applies at the size stored (``RegulatorStore.append_verified``): nothing is lost
or written twice. Workers exit when the supervisor stops them (SIGTERM) and on their own
when it dies (they watch their parent).
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from ledger_node.regulator.node import IngestShare

log = logging.getLogger(__name__)

SUPERVISOR_ENV: Final = "JL_INGEST_SUPERVISOR"
"""The environment variable that gives a worker its supervisor's process id (read before
anything else can go wrong: a supervisor killed while the worker starts up is noticed)."""
RESTART_DELAY_S: Final = 1.0
"""How long a dead worker stays down before it is started again (no busy restart loop)."""
STOP_TIMEOUT_S: Final = 30.0
"""How long a worker may take to finish its round after SIGTERM before it is killed."""


@dataclass(frozen=True)
class WorkerStatus:
    """One ingest worker as the supervisor sees it."""

    share: IngestShare
    pid: int | None
    """The running process's id, or ``None`` while it is down."""
    restarts: int
    """How many times it was started again after it died."""
    last_exit: int | None
    """The exit status of its last death (negative: killed by that signal), if any."""


class _Worker:
    def __init__(self, share: IngestShare) -> None:
        self.share = share
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self.down_since: float | None = None


class IngestSupervisor:
    """Start, watch and restart the ingest workers of one regulator (thread-safe)."""

    def __init__(self, workers: int, command: Callable[[IngestShare], Sequence[str]], *,
                 poll_interval: float = 0.2,
                 on_death: Callable[[WorkerStatus], None] | None = None) -> None:
        """``command(share)`` is the argument vector of the worker process for ``share``;
        ``on_death`` is told of each death (after it is logged)."""
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._workers = [_Worker(IngestShare(k, workers)) for k in range(workers)]
        self._command = command
        self._poll = poll_interval
        self._on_death = on_death
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start every worker and the thread that watches them."""
        with self._lock:
            for worker in self._workers:
                self._spawn(worker)
        self._thread = threading.Thread(target=self._watch, name="ingest-supervisor",
                                        daemon=True)
        self._thread.start()

    def _spawn(self, worker: _Worker) -> None:
        worker.process = subprocess.Popen(list(self._command(worker.share)),
                                          env={**os.environ, SUPERVISOR_ENV: str(os.getpid())})
        worker.down_since = None
        log.info("ingest worker %s started (process %d)", worker.share, worker.process.pid)

    def _watch(self) -> None:
        while not self._stop.wait(self._poll):
            deaths = []
            with self._lock:
                if self._stop.is_set():
                    return
                for worker in self._workers:
                    process = worker.process
                    if process is not None and process.poll() is not None:
                        worker.last_exit = process.returncode
                        worker.process = None
                        worker.down_since = time.monotonic()
                        deaths.append(self._status(worker))
                    elif (process is None and worker.down_since is not None and
                          time.monotonic() - worker.down_since >= RESTART_DELAY_S):
                        worker.restarts += 1
                        self._spawn(worker)
            for status in deaths:
                log.warning("ingest worker %s died (exit status %s); restarting it in %.0f s",
                            status.share, status.last_exit, RESTART_DELAY_S)
                if self._on_death is not None:
                    self._on_death(status)

    @staticmethod
    def _status(worker: _Worker) -> WorkerStatus:
        pid = worker.process.pid if worker.process is not None else None
        return WorkerStatus(worker.share, pid, worker.restarts, worker.last_exit)

    def status(self) -> list[WorkerStatus]:
        """Every worker, by share."""
        with self._lock:
            return [self._status(w) for w in self._workers]

    def stop(self) -> None:
        """Stop watching, then stop every worker (SIGTERM; SIGKILL after
        :data:`STOP_TIMEOUT_S`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            running = [w.process for w in self._workers if w.process is not None]
            for process in running:
                process.terminate()
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for process in running:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for worker in self._workers:
                worker.process = None


def supervisor_alive() -> bool:
    """Whether the supervisor that started this worker still runs: its process id, given in
    :data:`SUPERVISOR_ENV`, is still this process's parent (a worker whose parent died is
    re-parented). ``True`` for a process no supervisor started."""
    given = os.environ.get(SUPERVISOR_ENV)
    return given is None or not given.isdigit() or os.getppid() == int(given)


__all__ = ["RESTART_DELAY_S", "STOP_TIMEOUT_S", "SUPERVISOR_ENV", "IngestSupervisor",
           "WorkerStatus", "supervisor_alive"]
