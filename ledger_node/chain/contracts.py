"""The compiled contract artifacts: building them from compiler output and loading them.

Artifacts are committed under ``ledger_node/chain/artifacts/`` so that running the ledger needs no
compiler. Each records the sources' SHA-256 digests, the compiler version and settings, so a
test can tell when they are stale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ledger_node.errors import ArtifactError

CONTRACTS_DIR: Final = Path(__file__).resolve().parents[2] / "contracts"
"""The Solidity sources: in a checkout only, for compiling (a wheel carries the artifacts)."""
BUILD_DIR: Final = Path(__file__).resolve().parent / "artifacts"
"""The compiled artifacts, shipped as package data."""
MAIN_CONTRACT: Final = "JointLedger"
ARTIFACT_FORMAT: Final = "jointledger-artifact-v1"


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def abi_sha256(abi: Sequence[Mapping[str, Any]]) -> str:
    """Hex SHA-256 of the ABI's canonical JSON: identifies the contract interface version."""
    return hashlib.sha256(_canonical_json(list(abi))).hexdigest()


def read_sources(contracts_dir: Path = CONTRACTS_DIR) -> dict[str, str]:
    """Every ``*.sol`` file of ``contracts_dir`` by file name; ArtifactError if there is none."""
    sources = {p.name: p.read_text(encoding="utf-8") for p in sorted(contracts_dir.glob("*.sol"))}
    if not sources:
        raise ArtifactError(f"no Solidity sources in {contracts_dir}")
    return sources


def source_digests(sources: Mapping[str, str]) -> dict[str, str]:
    """Hex SHA-256 of each source file's UTF-8 bytes, by file name."""
    return {
        name: hashlib.sha256(text.encode()).hexdigest() for name, text in sorted(sources.items())
    }


def sources_sha256(sources: Mapping[str, str]) -> str:
    """One digest over all sources (names and contents), for quick staleness checks."""
    return hashlib.sha256(_canonical_json(source_digests(sources))).hexdigest()


@dataclass(frozen=True)
class ContractArtifact:
    """One compiled contract: its interface, creation bytecode and provenance."""

    name: str
    abi: tuple[Mapping[str, Any], ...]
    bytecode: bytes
    compiler_version: str
    settings: Mapping[str, Any]
    sources_sha256: str
    source_digests: Mapping[str, str]

    @property
    def abi_sha256(self) -> str:
        """Hex SHA-256 of the canonical ABI (see :func:`abi_sha256`)."""
        return abi_sha256(self.abi)

    def to_json(self) -> dict[str, Any]:
        """The artifact file's JSON object."""
        return {
            "format": ARTIFACT_FORMAT,
            "contractName": self.name,
            "abi": list(self.abi),
            "abiSha256": self.abi_sha256,
            "bytecode": "0x" + self.bytecode.hex(),
            "compiler": {"version": self.compiler_version, "settings": dict(self.settings)},
            "sourcesSha256": self.sources_sha256,
            "sources": dict(self.source_digests),
        }


def artifact_from_output(
    output: Mapping[str, Any],
    name: str,
    sources: Mapping[str, str],
    compiler_version: str,
    settings: Mapping[str, Any],
) -> ContractArtifact:
    """Build the artifact of contract ``name`` from a standard-JSON compiler ``output``.

    Raises :class:`ArtifactError` if the output has no such contract or no bytecode.
    """
    for per_file in output.get("contracts", {}).values():
        if name in per_file:
            entry = per_file[name]
            bytecode_hex = entry.get("evm", {}).get("bytecode", {}).get("object", "")
            if not bytecode_hex:
                raise ArtifactError(f"compiler output has no bytecode for {name}")
            return ContractArtifact(
                name=name,
                abi=tuple(entry["abi"]),
                bytecode=bytes.fromhex(bytecode_hex.removeprefix("0x")),
                compiler_version=compiler_version,
                settings=settings,
                sources_sha256=sources_sha256(sources),
                source_digests=source_digests(sources),
            )
    raise ArtifactError(f"compiler output has no contract {name}")


def artifact_path(name: str = MAIN_CONTRACT, build_dir: Path = BUILD_DIR) -> Path:
    """Where the artifact of contract ``name`` lives."""
    return build_dir / f"{name}.json"


def write_artifact(artifact: ContractArtifact, build_dir: Path = BUILD_DIR) -> Path:
    """Write ``artifact`` as stable, diff-friendly JSON; return its path."""
    build_dir.mkdir(parents=True, exist_ok=True)
    path = artifact_path(artifact.name, build_dir)
    path.write_text(json.dumps(artifact.to_json(), indent=2, sort_keys=True) + "\n")
    return path


def load_artifact(name: str = MAIN_CONTRACT, build_dir: Path = BUILD_DIR) -> ContractArtifact:
    """Load the committed artifact of contract ``name``.

    Raises :class:`ArtifactError` if the file is missing, not JSON, of another format, or
    lacks a field.
    """
    path = artifact_path(name, build_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(
            f"missing contract artifact {path}; run scripts/compile_contracts.py"
        ) from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"unreadable contract artifact {path}: {exc}") from exc
    try:
        if data["format"] != ARTIFACT_FORMAT:
            raise ArtifactError(f"{path}: unknown artifact format {data['format']!r}")
        artifact = ContractArtifact(
            name=str(data["contractName"]),
            abi=tuple(data["abi"]),
            bytecode=bytes.fromhex(str(data["bytecode"]).removeprefix("0x")),
            compiler_version=str(data["compiler"]["version"]),
            settings=dict(data["compiler"]["settings"]),
            sources_sha256=str(data["sourcesSha256"]),
            source_digests=dict(data["sources"]),
        )
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"malformed contract artifact {path}: {exc!r}") from exc
    if artifact.name != name or not artifact.bytecode or not artifact.abi:
        raise ArtifactError(f"malformed contract artifact {path}: empty or misnamed")
    return artifact
