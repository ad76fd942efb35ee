"""The compile pipeline: compiler resolution, and the committed artifacts being up to date."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.version import Version

from ledger_node.chain import contracts, solc
from ledger_node.errors import ArtifactError, CompilerError


@pytest.fixture(scope="module")
def compiler() -> solc.SolcBinary:
    """The resolved compiler; fails (not skips) when there is none, naming the remedy."""
    try:
        return solc.resolve_solc()
    except CompilerError as exc:
        pytest.fail(f"{exc}")


def test_pinned_solcjs_wrapper_answers_like_native_solc() -> None:
    if not solc.SOLCJS_MODULE.is_dir():
        pytest.fail(f"pinned solcjs missing at {solc.SOLCJS_MODULE}: run ./dev.sh test")
    found = solc.resolve_solc(env={})
    assert found.version.startswith(solc.PINNED_SOLC_VERSION + "+commit.")
    assert found.is_pinned


def test_solc_binary_env_wins_and_must_work(tmp_path: Path) -> None:
    with pytest.raises(CompilerError, match="SOLC_BINARY"):
        solc.resolve_solc(env={"SOLC_BINARY": str(tmp_path / "no-such-solc")})
    found = solc.resolve_solc(env={"SOLC_BINARY": str(solc.SOLCJS_WRAPPER)})
    assert found.origin == "SOLC_BINARY"


def test_solcx_installed_compiler_comes_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(solc.solcx, "get_installed_solc_versions", lambda: [Version("0.8.37")])
    monkeypatch.setattr(solc.solcx.install, "get_executable", lambda v: solc.SOLCJS_WRAPPER)
    assert solc.resolve_solc(env={}).origin == "py-solc-x"
    assert solc.resolve_solc(env={"SOLC_BINARY": str(solc.SOLCJS_WRAPPER)}).origin == (
        "SOLC_BINARY"
    )


def test_missing_compiler_error_names_all_three_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(solc, "_installed_by_solcx", lambda: None)
    monkeypatch.setattr(solc, "SOLCJS_MODULE", Path("/nonexistent/solc"))
    with pytest.raises(CompilerError) as info:
        solc.resolve_solc(env={})
    message = str(info.value)
    assert "SOLC_BINARY" in message and "py-solc-x" in message and "./dev.sh test" in message


def test_compile_error_is_reported(compiler: solc.SolcBinary) -> None:
    with pytest.raises(CompilerError, match="ParserError"):
        solc.compile_sources({"Bad.sol": "pragma solidity ^0.8.24; contract Bad { x }"}, compiler)


def test_committed_artifacts_are_up_to_date(compiler: solc.SolcBinary) -> None:
    sources = contracts.read_sources()
    committed = contracts.load_artifact()
    assert committed.sources_sha256 == contracts.sources_sha256(sources), (
        "contracts/*.sol changed since ledger_node/chain/artifacts/ was written: "
        "run .venv/bin/python scripts/compile_contracts.py"
    )
    output = solc.compile_sources(sources, compiler)
    fresh = contracts.artifact_from_output(
        output, contracts.MAIN_CONTRACT, sources, compiler.version, solc.compiler_settings()
    )
    assert fresh.abi == committed.abi
    if compiler.is_pinned:
        assert fresh.bytecode == committed.bytecode, "stale bytecode: recompile the contracts"
        assert committed.compiler_version == compiler.version
    assert dict(committed.settings) == solc.compiler_settings()
    assert solc.warnings_of(output) == []


def test_load_artifact_rejects_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="missing"):
        contracts.load_artifact(build_dir=tmp_path)
    path = contracts.artifact_path(build_dir=tmp_path)
    path.write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable"):
        contracts.load_artifact(build_dir=tmp_path)
    good = contracts.load_artifact().to_json()
    del good["abi"]
    path.write_text(json.dumps(good))
    with pytest.raises(ArtifactError, match="malformed"):
        contracts.load_artifact(build_dir=tmp_path)


def test_artifact_round_trips(tmp_path: Path) -> None:
    artifact = contracts.load_artifact()
    contracts.write_artifact(artifact, tmp_path)
    assert contracts.load_artifact(build_dir=tmp_path) == artifact
