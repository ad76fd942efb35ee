"""The built wheel works outside the checkout: ``pip install`` of the wheel (not editable) into a
fresh virtual environment, then ``jointledger demo`` from an empty folder passes.

The fresh environment takes its third-party dependencies from the test run's own
environment (a path entry, so that the test needs no network and no second copy of web3 and
py-evm), but not its editable ``ledger_node``: the contract artifacts, the console's assets
and every subpackage must come from the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_a_built_wheel_runs_the_demo_from_an_empty_folder(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps",
          "--quiet", "-w", str(wheels), str(REPO)], cwd=tmp_path)
    (wheel,) = wheels.glob("jointledger-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    # Dependencies from this environment by a plain path entry: its .pth files (among them
    # the editable finder of the checkout) are not processed through it.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "--quiet", str(wheel)], cwd=tmp_path)

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = _run([str(python), "-c", "import ledger_node, api; "
                  "print(ledger_node.__file__); print(api.__file__)"], cwd=empty, env=env)
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout

    demo = _run([str(env_dir / "bin" / "jointledger"), "demo", "--payments", "300",
                 "--out", "out"], cwd=empty, env=env, timeout=600)
    assert "**PASS**" in demo.stdout  # exit status 0 too, checked by _run
    assert (empty / "out" / "deployment.json").is_file()
    assert (empty / "out" / "case-file-verification.txt").is_file()
