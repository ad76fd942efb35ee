"""``jointledger up DIR``: run a consortium directory's processes in the foreground.

It starts the run file's processes (:mod:`ledger_node.cli.sitedir`) in order, in stages:
the chain, then every platform node at once, then the regulator's node; a stage starts once
the previous one answers (the chain's port accepts connections and ``deployment.json``
exists; a node's ``/v1/health`` answers, over the TLS of its config). Each process's output
is printed line by line, prefixed ``[name]``. SIGINT (Ctrl-C) or SIGTERM stops the nodes
(regulator first), then the chain, each with SIGTERM (SIGKILL after a grace period), so the
platform nodes seal and anchor what they hold while the chain still runs.

The children run in their own process group: a Ctrl-C in the terminal reaches ``up`` only,
which then stops them in that order (otherwise the chain would get the signal as early as
the nodes).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Final

import httpx

from ledger_node.cli.sitedir import (
    SiteProcess,
    chain_address,
    node_endpoint,
    read_run_file,
)
from ledger_node.demo.localsite import JOINTLEDGER
from ledger_node.errors import InvalidConfig
from ledger_node.tls import local_host

STOP_GRACE_S: Final = 30.0
"""How long a process may take to stop after SIGTERM before it is killed."""
STAGES: Final = ("chain", "platform", "regulator")


@dataclass
class Running:
    """A started process and the thread copying its output."""

    process: SiteProcess
    popen: subprocess.Popen[bytes]
    reader: threading.Thread
    ready: bool = False


@dataclass
class Output:
    """Prints lines prefixed by process name, one whole line at a time."""

    width: int
    stream: IO[str] = field(default_factory=lambda: sys.stdout)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def line(self, name: str, text: str) -> None:
        """Print ``text`` as a line of process ``name``."""
        with self.lock:
            self.stream.write(f"[{name}]{' ' * (self.width - len(name))} {text}\n")
            self.stream.flush()

    def copy(self, name: str, pipe: IO[bytes]) -> None:
        """Print every line of ``pipe`` until it closes (a reader thread's job)."""
        for raw in iter(pipe.readline, b""):
            self.line(name, raw.decode(errors="replace").rstrip("\r\n"))
        pipe.close()


def readiness(directory: Path, process: SiteProcess) -> Callable[[], bool]:
    """A check that ``process`` answers: the chain's port accepts connections and the
    deployment file is there; a node's health answers. Raises :class:`InvalidConfig` for
    a node whose config does not load."""
    if process.role == "chain":
        host, port = chain_address(process)
        deployment = directory / (process.option("--deployment") or "deployment.json")

        def chain_ready() -> bool:
            try:
                with socket.create_connection((local_host(host), port), timeout=1):
                    pass
            except OSError:
                return False
            return deployment.exists()
        return chain_ready
    endpoint = node_endpoint(directory, process)
    context = endpoint.client_tls.ssl_context()

    def node_ready() -> bool:
        try:
            return httpx.get(f"{endpoint.url}/v1/health", timeout=2,
                             verify=context).status_code == 200
        except httpx.HTTPError:
            return False
    return node_ready


class Supervisor:
    """The started processes of one ``up``: starts them in stages, stops them in order."""

    def __init__(self, directory: Path, processes: list[SiteProcess]) -> None:
        self.directory = directory
        self.processes = processes
        self.output = Output(max(len("up"), *(len(p.name) for p in processes)))
        self.running: list[Running] = []
        self.stop_requested = threading.Event()

    def say(self, text: str) -> None:
        """A line of ``up`` itself."""
        self.output.line("up", text)

    def launch(self, process: SiteProcess) -> Running:
        """Start ``process`` in its own process group, its output copied with its prefix."""
        popen = subprocess.Popen(
            [*JOINTLEDGER, *process.args], cwd=self.directory, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert popen.stdout is not None
        reader = threading.Thread(target=self.output.copy, args=(process.name, popen.stdout),
                                  name=f"up-{process.name}", daemon=True)
        reader.start()
        running = Running(process, popen, reader)
        self.running.append(running)
        return running

    def start_all(self, start_timeout: float) -> bool:
        """Start every stage and wait for it to answer; ``False`` (having said why) if a
        process exits or does not answer within ``start_timeout`` seconds, or a stop is
        requested meanwhile."""
        for stage in STAGES:
            batch = [p for p in self.processes if p.role == stage]
            if not batch:
                continue
            checks = [(self.launch(p), readiness(self.directory, p)) for p in batch]
            deadline = time.monotonic() + start_timeout
            for running, ready in checks:
                while not ready():
                    code = running.popen.poll()
                    if code is not None:
                        self.say(f"{running.process.name} exited with status {code} before "
                                 "it answered; stopping")
                        return False
                    if self.stop_requested.is_set():
                        return False
                    if time.monotonic() > deadline:
                        self.say(f"{running.process.name} did not answer within "
                                 f"{start_timeout:g} s; stopping")
                        return False
                    time.sleep(0.2)
                running.ready = True
                self.say(f"{running.process.name} is up")
        return True

    def watch(self) -> bool:
        """Wait until a stop is requested (``True``) or a process exits (``False``)."""
        while not self.stop_requested.wait(0.5):
            for running in self.running:
                code = running.popen.poll()
                if code is not None:
                    self.say(f"{running.process.name} exited with status {code}; stopping")
                    return False
        return True

    def stop_all(self) -> None:
        """Stop the nodes (regulator first, then platform nodes), then the chain."""
        order = {stage: index for index, stage in enumerate(reversed(STAGES))}
        for running in sorted(self.running, key=lambda r: order[r.process.role]):
            popen = running.popen
            if popen.poll() is None:
                self.say(f"stopping {running.process.name}")
                popen.send_signal(signal.SIGTERM)
                try:
                    popen.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    self.say(f"{running.process.name} did not stop in {STOP_GRACE_S:g} s; "
                             "killing it")
                    popen.kill()
                    popen.wait()
            running.reader.join(timeout=5)
            self.say(f"{running.process.name} stopped (status {popen.returncode})")


def run_up(directory: Path, *, start_timeout: float = 120.0) -> int:
    """Start the consortium in ``directory`` and supervise it until SIGINT/SIGTERM (exit 0)
    or until a process dies (exit 1); 2 for a directory that is not a consortium's."""
    try:
        processes = read_run_file(directory)
        for process in processes:
            if process.role != "chain":
                node_endpoint(directory, process)  # every config loads before anything starts
    except InvalidConfig as exc:
        print(f"jointledger up: {exc}", file=sys.stderr)
        return 2
    supervisor = Supervisor(directory, processes)

    def request_stop(signum: int, frame: FrameType | None) -> None:
        supervisor.stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        started = supervisor.start_all(start_timeout)
        if started:
            supervisor.say(f"all {len(processes)} processes up; Ctrl-C stops them")
        clean = started and supervisor.watch()
        if supervisor.stop_requested.is_set():
            supervisor.say("stop requested")
            clean = True
        supervisor.stop_all()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if clean else 1
