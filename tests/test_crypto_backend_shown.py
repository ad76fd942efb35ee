"""Which SM2 backend runs is visible: ``jointledger --version`` and the platform node's
``/v1/health`` (the regulator's is checked in tests/test_regulator_api.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.schemas import Health
from ledger_node.crypto import gmcrypto, libcrypto
from ledger_node.http_settings import Settings
from ledger_node.platform.node import PlatformNode


@pytest.fixture()
def client(node: PlatformNode) -> Iterator[TestClient]:
    with TestClient(create_app(node, Settings())) as client:
        yield client


def test_platform_health_shows_the_sm2_backend(client: TestClient) -> None:
    body = client.get("/v1/health").json()
    assert body["crypto"] == {"sm2": f"openssl {libcrypto.library().version}"}
    assert Health.model_validate(body).crypto.sm2.startswith("openssl 3.")
    with gmcrypto.sm2_backend_override("gmssl"):
        shown = client.get("/v1/health").json()["crypto"]["sm2"]
    assert shown == "gmssl (pure Python, not constant-time)"


@pytest.mark.parametrize(("value", "shown"), [
    ("", "(sm2: openssl 3."),
    ("gmssl", "(sm2: gmssl (pure Python, not constant-time))"),
    ("nonsense", "(sm2: unavailable: JL_SM2_BACKEND='nonsense'"),
])
def test_version_shows_the_sm2_backend(value: str, shown: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ledger_node.cli", "--version"],
        env={**os.environ, gmcrypto.BACKEND_ENV: value}, capture_output=True, text=True,
        timeout=60, check=True,
    )
    assert result.stdout.startswith("jointledger ")
    assert shown in result.stdout
