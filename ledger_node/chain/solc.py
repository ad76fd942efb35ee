"""Finding a Solidity compiler and compiling the contracts with it (standard JSON, py-solc-x).

Only the compile pipeline (``scripts/compile_contracts.py`` and the staleness test) needs a
compiler; running the ledger uses the committed artifacts in ``ledger_node/chain/artifacts/``.

Resolution order, first match wins:

1. the ``SOLC_BINARY`` environment variable (a native ``solc`` or anything answering like it);
2. a ``solc`` py-solc-x has already installed (``~/.solcx`` or ``SOLCX_BINARY_PATH``), the
   pinned version preferred, else the newest;
3. the pinned npm ``solcjs`` in ``<repo>/.tools`` (``./dev.sh test`` installs it), run through
   ``scripts/solcjs-wrapper``, which answers ``--version`` and ``--standard-json`` like solc.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import solcx
import solcx.install
from packaging.version import Version

from ledger_node.errors import CompilerError

PINNED_SOLC_VERSION: Final = "0.8.37"
"""The compiler version the committed artifacts are built with (``dev.sh`` pins solcjs to it)."""

EVM_VERSION: Final = "cancun"
"""Target fork: eth-tester's py-evm (Prague), anvil and Besu all run Cancun bytecode."""

OPTIMIZER_RUNS: Final = 200

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
SOLCJS_MODULE: Final = REPO_ROOT / ".tools" / "node_modules" / "solc"
SOLCJS_WRAPPER: Final = REPO_ROOT / "scripts" / "solcjs-wrapper"


@dataclass(frozen=True)
class SolcBinary:
    """A resolved compiler: the executable, its full version and where it was found."""

    path: Path
    version: str  # e.g. "0.8.37+commit.f401782d"
    origin: str  # "SOLC_BINARY", "py-solc-x" or "solcjs"

    @property
    def base_version(self) -> str:
        """The version without commit or build suffix, e.g. ``"0.8.37"``."""
        return Version(self.version.split("+")[0]).base_version

    @property
    def is_pinned(self) -> bool:
        """Whether this is the version the committed artifacts were built with."""
        return self.base_version == PINNED_SOLC_VERSION


def _probe(path: Path, origin: str) -> SolcBinary:
    """Ask ``path --version``; raise CompilerError if it does not answer like solc."""
    try:
        version = solcx.wrapper.get_version_str_from_solc_binary(path)
    except Exception as exc:  # OSError, CalledProcessError, SolcError: all mean "unusable"
        raise CompilerError(f"{origin} compiler {path} does not answer --version: {exc}") from exc
    return SolcBinary(path=path, version=str(version), origin=origin)


def _installed_by_solcx() -> Path | None:
    """The py-solc-x installed solc to use: the pinned version if present, else the newest."""
    try:
        versions: list[Version] = solcx.get_installed_solc_versions()
    except Exception:  # an unreadable install folder means "none installed"
        return None
    if not versions:
        return None
    pinned = Version(PINNED_SOLC_VERSION)
    chosen = pinned if pinned in versions else max(versions)
    try:
        return Path(solcx.install.get_executable(chosen))
    except Exception:
        return None


def resolve_solc(env: Mapping[str, str] | None = None) -> SolcBinary:
    """Return the compiler to use, following the module's resolution order.

    ``env`` defaults to ``os.environ``. Raises :class:`CompilerError` if ``SOLC_BINARY`` is
    set but unusable, or if none of the three sources has a compiler.
    """
    env = os.environ if env is None else env
    explicit = env.get("SOLC_BINARY")
    if explicit:
        found = shutil.which(explicit) or explicit
        return _probe(Path(found), "SOLC_BINARY")
    installed = _installed_by_solcx()
    if installed is not None:
        return _probe(installed, "py-solc-x")
    if SOLCJS_MODULE.is_dir() and SOLCJS_WRAPPER.is_file() and shutil.which("node"):
        return _probe(SOLCJS_WRAPPER, "solcjs")
    raise CompilerError(
        "no Solidity compiler found; either (1) set SOLC_BINARY to a solc executable, "
        "(2) install one with py-solc-x (solcx.install_solc), or (3) run ./dev.sh test, which "
        f"installs the pinned npm solcjs {PINNED_SOLC_VERSION} into {SOLCJS_MODULE.parent} "
        "(needs node)"
    )


def compiler_settings() -> dict[str, Any]:
    """The standard-JSON ``settings`` every build uses (the outputs we keep, optimizer, EVM)."""
    return {
        "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
        "evmVersion": EVM_VERSION,
        "metadata": {"bytecodeHash": "none"},
        "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
    }


def compile_sources(sources: Mapping[str, str], solc: SolcBinary) -> dict[str, Any]:
    """Compile ``sources`` (file name -> Solidity text) with ``solc``; return its output JSON.

    Imports are resolved among ``sources`` only, so the caller passes every file. Raises
    :class:`CompilerError` when solc fails or reports an error (warnings are kept in the
    output's ``errors`` list).
    """
    input_json = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sorted(sources.items())},
        "settings": compiler_settings(),
    }
    try:
        output: dict[str, Any] = solcx.compile_standard(
            input_json, solc_binary=solc.path, allow_empty=True
        )
    except Exception as exc:  # SolcError carries solc's messages in its text
        raise CompilerError(f"{solc.origin} solc {solc.version} failed: {exc}") from exc
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        detail = "\n".join(str(e.get("formattedMessage", e)) for e in errors)
        raise CompilerError(f"compilation failed:\n{detail}")
    return output


def warnings_of(output: Mapping[str, Any]) -> list[str]:
    """The formatted warnings of a compiler output, for printing."""
    return [
        str(e.get("formattedMessage", e))
        for e in output.get("errors", [])
        if e.get("severity") != "error"
    ]


def dumps_settings() -> str:
    """The settings as canonical JSON, for hashing and reports."""
    return json.dumps(compiler_settings(), sort_keys=True, separators=(",", ":"))
