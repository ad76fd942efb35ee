"""Records files as users save them (issue 17, part 4): ``jointledger submit`` reads UTF-8
with or without a byte order mark, CSV with ``,`` or ``;`` and CRLF line ends, refuses a
GBK file clearly, reports every bad row with its line number, and sends nothing of a bad
file."""

from __future__ import annotations

import codecs
import dataclasses
import json
import random
from pathlib import Path

import pytest

from api.main import create_app
from api.server import PlatformServer
from ledger_node.cli.client import RecordFileError, read_record_lines, read_records, run_submit
from ledger_node.client.sdk import registered_regulator_key
from ledger_node.crypto.keyfiles import MemberKeys, key_paths, write_member_keys
from ledger_node.demo.run import sample_records
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.record import PaymentRecord
from tests.api_support import Consortium

PERSON_ID = "11010519491231002X"
CREDIT_CODE = "91350100M000100Y43"


def sample(count: int, seed: int = 7) -> list[PaymentRecord]:
    """unionpay records whose payer is a resident ID and payee a credit code."""
    return [dataclasses.replace(r, payer_identity=PERSON_ID, payee_identity=CREDIT_CODE)
            for r in sample_records("unionpay", count, random.Random(seed))]


def csv_text(records: list[PaymentRecord], *, delimiter: str = ",", newline: str = "\n"
             ) -> str:
    """``records`` as a CSV text with a header, as a spreadsheet saves it."""
    header = list(records[0].to_json())
    rows = [delimiter.join(header)]
    for record in records:
        rows.append(delimiter.join(str(v).lower() if isinstance(v, bool) else str(v)
                                   for v in record.to_json().values()))
    return newline.join(rows) + newline


def test_excel_csv_utf8_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    records = sample(3)
    path = tmp_path / "excel.csv"
    path.write_bytes(codecs.BOM_UTF8 + csv_text(records, newline="\r\n").encode())
    assert read_records(path) == records


def test_jsonl_with_a_byte_order_mark_and_crlf_is_read(tmp_path: Path) -> None:
    records = sample(2)
    path = tmp_path / "notepad.jsonl"
    text = "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\r\n" for r in records)
    path.write_bytes(codecs.BOM_UTF8 + text.encode())
    assert read_records(path) == records


@pytest.mark.parametrize("delimiter", [",", ";"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8])
def test_csv_separator_is_sniffed_from_the_header(tmp_path: Path, delimiter: str,
                                                  newline: str, bom: bytes) -> None:
    records = sample(3, seed=11)
    path = tmp_path / "records.csv"
    path.write_bytes(bom + csv_text(records, delimiter=delimiter, newline=newline).encode())
    lines = read_record_lines(path)
    assert [item.record for item in lines] == records
    assert [item.line for item in lines] == [2, 3, 4]


def test_semicolon_csv_keeps_commas_inside_cells(tmp_path: Path) -> None:
    records = [dataclasses.replace(sample(1)[0], payee_account="shop, floor 2")]
    path = tmp_path / "records.csv"
    path.write_text(csv_text(records, delimiter=";"), encoding="utf-8")
    assert read_records(path) == records


def test_gbk_file_keeps_its_clear_refusal(tmp_path: Path) -> None:
    records = [dataclasses.replace(r, payer_account="账户-张三") for r in sample(2)]
    path = tmp_path / "gbk.csv"
    path.write_bytes(csv_text(records).encode("gbk"))
    with pytest.raises(RecordFileError) as caught:
        read_records(path)
    message = str(caught.value)
    assert f"{path} is not UTF-8 text" in message
    assert "line 2" in message  # where the first non-UTF-8 byte is
    assert "GBK" in message and "iconv" in message  # what to try


def test_every_bad_row_is_reported_with_its_line_number(tmp_path: Path) -> None:
    good = [r.to_json() for r in sample(5)]
    good[1]["amount_fen"] = "twelve"
    good[3]["currency"] = ""
    good[4]["cross_border"] = "maybe"
    path = tmp_path / "bad.csv"
    header = ";".join(good[0])
    path.write_text(header + "\n" + "".join(
        ";".join(str(v).lower() if isinstance(v, bool) else str(v) for v in row.values())
        + "\n" for row in good), encoding="utf-8")
    with pytest.raises(RecordFileError) as caught:
        read_records(path)
    message = str(caught.value)
    assert "3 bad rows" in message
    assert f"{path}:3: amount_fen 'twelve' is not an integer" in message
    assert f"{path}:5: " in message and "currency" in message
    assert f"{path}:6: cross_border 'maybe' must be true or false" in message
    assert f"{path}:2:" not in message and f"{path}:4:" not in message


def test_bad_jsonl_lines_are_all_reported(tmp_path: Path) -> None:
    rows = [json.dumps(r.to_json()) for r in sample(3)]
    rows[0] = rows[0][:-1]  # cut the closing brace
    rows[2] = rows[2].replace('"CNY"', '"XXXX"')
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(RecordFileError) as caught:
        read_records(path)
    message = str(caught.value)
    assert "2 bad rows" in message
    assert f"{path}:1: not JSON" in message and f"{path}:3: " in message


def test_unknown_column_names_what_was_found_and_expected(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(codecs.BOM_UTF8 + b"platform;nickname\nunionpay;x\n")
    with pytest.raises(RecordFileError) as caught:
        read_records(path)
    message = str(caught.value)
    assert "unknown column 'nickname'" in message and "\\ufeff" not in message
    assert "columns are platform" in message


def test_nothing_of_a_file_with_a_bad_last_row_is_submitted(
    consortium: Consortium, node: PlatformNode, tmp_path: Path
) -> None:
    """Validation is complete before the first request: the good rows before a bad one are
    not sent either (a chunk of 1 would send the first row at once otherwise)."""
    keys_dir = tmp_path / "keys"
    write_member_keys(keys_dir, "unionpay",
                      MemberKeys(consortium.unionpay.sm2_key, consortium.unionpay.account))
    private, _, account = key_paths(keys_dir, "unionpay")
    records = sample(4, seed=21)
    text = csv_text(records, delimiter=";", newline="\r\n").splitlines()
    text[-1] = text[-1].replace(";CNY;", ";yuan;")
    path = tmp_path / "records.csv"
    path.write_bytes(codecs.BOM_UTF8 + ("\r\n".join(text) + "\r\n").encode())
    served = PlatformServer(create_app(node))
    served.start()
    asked: list[int] = []
    try:
        size = node.size()
        with pytest.raises(RecordFileError, match=rf"{path.name}:5: "):
            run_submit(path, url=served.url, platform="unionpay", sm2_key=private,
                       account_key=account,
                       regulator_key=lambda: asked.append(1) or registered_regulator_key(
                           consortium.chain),
                       chunk=1, echo=lambda _: None, warn=lambda _: None,
                       progress=lambda done, total: None)
        assert node.size() == size
        assert asked == []  # refused before the chain was even asked for the key
        assert not path.with_name(path.name + ".receipts.jsonl").exists()

        path.write_bytes(codecs.BOM_UTF8 + csv_text(records, delimiter=";",
                                                    newline="\r\n").encode())
        run_submit(path, url=served.url, platform="unionpay", sm2_key=private,
                   account_key=account,
                   regulator_key=lambda: registered_regulator_key(consortium.chain),
                   chunk=2, echo=lambda _: None, warn=lambda _: None,
                   progress=lambda done, total: None)
        assert node.size() == size + 4  # the same file, once fixed, goes in whole
    finally:
        served.stop()
