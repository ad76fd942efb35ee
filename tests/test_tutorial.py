"""docs/tutorial.md works as written: every ``sh`` block, in order, run with bash.

The convention is the one the tutorial states: a fresh empty directory, ``jointledger`` on
the ``PATH`` (this interpreter's), the ports 8545 and 8701..8703 replaced by four free
consecutive ports, the one ``jointledger up … &`` line started here as a background process
and stopped with SIGINT at the end. Each block must exit 0, and the last (``jointledger
verify`` of the case file) must say ``VALID``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ledger_node.demo.localsite import free_ports

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"
PORTS = ("8545", "8701", "8702", "8703")
"""The ports the tutorial names, in the order of the free ports that replace them."""
UP_LINE = re.compile(r"^jointledger up (\S+) > (\S+) 2>&1 &$", re.MULTILINE)


def sh_blocks(text: str) -> list[str]:
    """The tutorial's ``sh`` fenced blocks, in order."""
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive TCP ports free on 127.0.0.1 right now."""
    return free_ports(count)


def _with_ports(block: str, base: int) -> str:
    """``block`` with each tutorial port replaced by its free port."""
    for offset, port in enumerate(PORTS):
        block = re.sub(rf"\b{port}\b", str(base + offset), block)
    return block


@pytest.mark.slow  # a whole consortium started and stopped: ~35 s
def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    blocks = sh_blocks(TUTORIAL.read_text(encoding="utf-8"))
    assert len(blocks) >= 8 and sum(len(UP_LINE.findall(b)) for b in blocks) == 1
    base = _free_ports(len(PORTS))
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                f"{os.environ.get('PATH', '')}"}
    up: subprocess.Popen[bytes] | None = None
    output = ""
    try:
        for block in (_with_ports(b, base) for b in blocks):
            started = UP_LINE.search(block)
            if started is not None:
                site, log = started.groups()
                with open(tmp_path / log, "wb") as sink:
                    up = subprocess.Popen([sys.executable, "-m", "ledger_node.cli", "up", site],
                                          cwd=tmp_path, env=env, stdout=sink,
                                          stderr=subprocess.STDOUT)
                block = UP_LINE.sub("", block)
            done = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=150, check=False)
            output = done.stdout
            assert done.returncode == 0, (f"exit {done.returncode}:\n{block}\n{done.stdout}\n"
                                          f"{done.stderr}")
        assert "VALID: " in output and "INVALID" not in output, output
    finally:
        if up is not None:
            up.send_signal(signal.SIGINT)
            try:
                assert up.wait(timeout=60) == 0, (tmp_path / "up.log").read_text()
            finally:
                if up.poll() is None:
                    up.kill()
                    up.wait()
