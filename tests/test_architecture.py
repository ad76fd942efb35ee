"""The layout of docs/architecture.md holds: no import circles, few root modules, and the
import-linter layers contract kept (``lint-imports`` also runs in the test command)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERED_PACKAGES = ("crypto", "log", "chain", "protocol", "client", "platform", "regulator",
                    "reconcile", "demo", "cli")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("ledger_node", "api")


def test_no_module_imports_itself_back(graph: grimp.ImportGraph) -> None:
    circles = sorted(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if importer < imported and graph.chain_exists(importer=imported, imported=importer)
    )
    assert circles == []


def test_at_most_a_dozen_modules_sit_directly_in_the_package() -> None:
    root = REPO / "ledger_node"
    modules = sorted(p.stem for p in root.glob("*.py"))
    assert len(modules) <= 12, modules
    packages = sorted(p.name for p in root.iterdir()
                      if p.is_dir() and (p / "__init__.py").exists())
    assert packages == sorted(LAYERED_PACKAGES)


def test_only_the_cli_imports_the_http_layer(graph: grimp.ImportGraph) -> None:
    api_modules = graph.find_descendants("api") | {"api"}
    importers = {importer for module in api_modules
                 for importer in graph.find_modules_that_directly_import(module)
                 if importer.startswith("ledger_node")}
    assert importers and all(m.startswith("ledger_node.cli") for m in importers), importers


def test_the_layers_contract_is_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_the_http_layer_uses_only_the_node_s_methods() -> None:
    """Routes call the platform node's methods: never its store, its private parts or its
    SM2 key (the node builds what needs the key, e.g. the risk-device list copy)."""
    reaching_in = re.compile(r"(?<![\w.])(?:node|regulator)\.(?:store|_)|sm2_key")
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path in sorted((REPO / "api").rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), start=1)
             if reaching_in.search(line)]
    assert found == []
