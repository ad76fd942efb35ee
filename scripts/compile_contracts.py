"""Compile contracts/*.sol and write the committed artifacts to ledger_node/chain/artifacts/.

Usage: .venv/bin/python scripts/compile_contracts.py [--check]

With ``--check`` nothing is written; the exit status is 1 when the committed artifacts are
stale (different sources, or different ABI/bytecode from the pinned compiler). The compiler
is found as :func:`ledger_node.chain.solc.resolve_solc` describes.
"""

from __future__ import annotations

import argparse
import sys

from ledger_node.chain import contracts, solc
from ledger_node.errors import LedgerError


def build() -> tuple[contracts.ContractArtifact, solc.SolcBinary]:
    """Compile the sources; return the main contract's artifact and the compiler used."""
    compiler = solc.resolve_solc()
    sources = contracts.read_sources()
    output = solc.compile_sources(sources, compiler)
    for warning in solc.warnings_of(output):
        print(warning, file=sys.stderr)
    artifact = contracts.artifact_from_output(
        output, contracts.MAIN_CONTRACT, sources, compiler.version, solc.compiler_settings()
    )
    return artifact, compiler


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report staleness")
    args = parser.parse_args(argv)
    try:
        artifact, compiler = build()
        if args.check:
            committed = contracts.load_artifact(artifact.name)
            stale = committed.sources_sha256 != artifact.sources_sha256 or (
                compiler.is_pinned
                and (committed.abi != artifact.abi or committed.bytecode != artifact.bytecode)
            )
            print(f"{artifact.name}: {'STALE' if stale else 'up to date'} ({compiler.origin})")
            return 1 if stale else 0
        path = contracts.write_artifact(artifact)
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {path} with {compiler.origin} solc {compiler.version}: "
        f"{len(artifact.bytecode)} bytes, abi {artifact.abi_sha256[:16]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
