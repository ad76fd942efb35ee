"""Untrusted JSON text before parsing (ledger_node/jsonlimits.py): UTF-8 only, nesting bounded,
and a recursion limit the C decoder cannot overflow. The crash regressions run the servers in
child processes: before the fix, one UTF-16 request of deep brackets killed them (SIGSEGV)."""

from __future__ import annotations

import codecs
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger_node.jsonlimits import (
    MAX_JSON_DEPTH,
    SAFE_RECURSION_LIMIT,
    JsonTextRefused,
    check_json_body,
    check_json_text,
    parse_json,
    parse_json_text,
)

REPO = Path(__file__).resolve().parent.parent
DOCUMENT = '{"leaves": [{"commitment": "00", "note": "云闪付"}]}'


def _deep_utf16(depth: int = 99_000) -> bytes:
    """The attack of issue 14: UTF-16 text in which the code unit ``0x0122`` ('Ģ', low byte
    0x22) ends a string early for a byte-level scan, whose next quote then opens a string
    that never ends, hiding the ``depth`` nested brackets after it."""
    return ('["Ģ", ' + "[" * depth + "]" * depth + "]").encode("utf-16-le")


@pytest.mark.parametrize(("body", "words"), [
    (DOCUMENT.encode("utf-16-le"), "NUL bytes"),
    (DOCUMENT.encode("utf-16-be"), "NUL bytes"),
    (DOCUMENT.encode("utf-16"), "byte order mark"),
    (DOCUMENT.encode("utf-32-le"), "NUL bytes"),
    (DOCUMENT.encode("utf-32-be"), "NUL bytes"),
    (DOCUMENT.encode("utf-32"), "byte order mark"),
    (codecs.BOM_UTF8 + DOCUMENT.encode(), "byte order mark"),
    (b'{"a": "\xff"}', "invalid byte at offset 7"),
    (b'{"a": "\xc0\xaf"}', "invalid byte"),  # an overlong '/'
    (b'{"a": "\xed\xa0\x80"}', "invalid byte"),  # a lone surrogate, encoded
    (b'{"a": 1}\x00', "NUL bytes"),
    (_deep_utf16(1000), "NUL bytes"),
], ids=["utf16le", "utf16be", "utf16-bom", "utf32le", "utf32be", "utf32-bom", "utf8-bom",
        "invalid-utf8", "overlong", "lone-surrogate", "nul", "hidden-brackets"])
def test_anything_but_utf8_json_text_is_refused(body: bytes, words: str) -> None:
    with pytest.raises(JsonTextRefused, match=words):
        check_json_text(body)
    with pytest.raises(JsonTextRefused):
        parse_json(body)


@pytest.mark.parametrize("content_type", [
    "application/json; charset=utf-16", "application/json;charset=UTF-32LE",
    'application/json; charset="latin-1"', "text/plain; charset=gbk"])
def test_a_declared_charset_other_than_utf8_is_refused(content_type: str) -> None:
    with pytest.raises(JsonTextRefused, match="UTF-8"):
        check_json_text(DOCUMENT.encode(), content_type=content_type)


@pytest.mark.parametrize("content_type", [
    None, "application/json", "application/json; charset=utf-8", "application/json;charset=UTF8",
    "application/problem+json; charset=utf_8"])
def test_utf8_json_text_passes(content_type: str | None) -> None:
    check_json_text(DOCUMENT.encode(), content_type=content_type)
    assert parse_json(DOCUMENT.encode()) == json.loads(DOCUMENT)


def test_nesting_is_bounded_for_bytes_and_text() -> None:
    deep = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(JsonTextRefused, match="nested deeper"):
        check_json_body(deep.encode())
    with pytest.raises(JsonTextRefused, match="nested deeper"):
        parse_json_text(deep)
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(ok.encode()) == json.loads(ok) == parse_json_text(ok)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@given(value=_json_values)
def test_every_json_document_round_trips(value: Any) -> None:
    body = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:  # hypothesis text may hold lone surrogates: not UTF-8
        with pytest.raises(JsonTextRefused):
            parse_json(body)
        return
    if b"\x00" in body:  # a raw NUL cannot appear in JSON text; json.dumps escapes it
        raise AssertionError("json.dumps wrote a raw NUL")
    assert parse_json(body) == value


# ---------------------------------------------------------------------- the process


def _child(code: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_no_import_leaves_the_recursion_limit_raised() -> None:
    result = _child("""
        import importlib, pkgutil, sys
        import ledger_node, api
        for package in (ledger_node, api):
            for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                if not module.name.endswith("__main__"):
                    importlib.import_module(module.name)
        import eth, py_ecc, web3, eth_tester  # the imports known to raise it
        print(sys.getrecursionlimit())
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) == SAFE_RECURSION_LIMIT


def test_the_c_decoder_survives_the_safe_limit_in_a_worker_thread() -> None:
    result = _child(f"""
        import json, threading
        import ledger_node.chain.adapter  # the heaviest import; the limit is now restored
        outcome = []
        def parse(depth):
            try:
                json.loads("[" * depth + "]" * depth)
                outcome.append("parsed")
            except RecursionError:
                outcome.append("RecursionError")
        for depth in (12_000, {SAFE_RECURSION_LIMIT} + 1, 200_000):
            worker = threading.Thread(target=parse, args=(depth,))
            worker.start()
            worker.join()
        print(" ".join(outcome))
    """)
    assert result.returncode == 0, f"the child died ({result.returncode}): {result.stderr[-500:]}"
    assert result.stdout.split() == ["parsed", "RecursionError", "RecursionError"]


def test_one_utf16_request_no_longer_kills_a_platform_node_or_the_chain_server() -> None:
    """Issue 14, defect 1: before the fix each of these killed the process with SIGSEGV."""
    result = _child("""
        import httpx
        from fastapi.testclient import TestClient
        from api.main import create_app
        from ledger_node.chain.adapter import LedgerChain
        from ledger_node.chain.rpc_server import ChainServer
        from tests.api_support import make_consortium, make_node
        from tests.test_jsonlimits import _deep_utf16
        import tempfile, pathlib

        body = _deep_utf16()
        chain = LedgerChain.embedded()
        with ChainServer(chain) as server:
            answer = httpx.post(server.url, content=body,
                                headers={"content-type": "application/json"})
            print("chain", answer.status_code, answer.json()["error"]["code"])
        consortium = make_consortium(LedgerChain.embedded())
        node = make_node(consortium, pathlib.Path(tempfile.mkdtemp()) / "u.db")
        with TestClient(create_app(node)) as client:
            for path in ("/v1/verify", f"/v1/logs/{node.log_id.hex()}/leaves"):
                answer = client.post(path, content=body,
                                     headers={"content-type": "application/json"})
                print("node", answer.status_code, answer.json()["type"].rsplit("/", 1)[-1])
        node.stop()
    """)
    assert result.returncode == 0, f"the child died ({result.returncode}): {result.stderr[-800:]}"
    assert result.stdout.split("\n")[:3] == [
        "chain 200 -32700",
        "node 415 unsupported-media-type",
        "node 415 unsupported-media-type",
    ]
