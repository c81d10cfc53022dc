"""Catalogue of bad dataset files: each is refused with a typed error naming the argument, the file and the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from integrand import InputError
from integrand.corpus import sources
from integrand.corpus.sources import load_documents

GOOD_CSV = b'id,text,label\n1,the coach,sports\n2,"a, quoted ""text""",finance\n3,stock profit,finance\n'

# name -> (file name, bytes, error type, argument, message pattern)
BAD: dict[str, tuple[str, bytes, type[Exception], str, str]] = {
    "csv_unterminated_quote": (
        "d.csv",
        b'id,text,label\n1,fine,a\n2,"broken,b\n3,ok,c\n4,ok,d\n',
        InputError,
        "dataset",
        r"d\.csv, line 3: malformed CSV",
    ),
    "csv_quote_closed_rows_later": (
        "d.csv",
        b'id,text,label\n1,fine,a\n2,"broken,b\n3,ok,c\n4,"x",d\n',
        InputError,
        "dataset",
        r"d\.csv, line 3: malformed CSV",
    ),
    "csv_row_too_long": ("d.csv", b"id,text,label\n1,a,b\n2,c,d,extra\n", InputError, "dataset", r"line 3: 4 fields"),
    "csv_row_too_short": ("d.csv", b"id,text,label\n1,a\n", InputError, "dataset", r"line 2: 2 fields"),
    "csv_invalid_utf8": (
        "d.csv",
        b"id,text,label\n1,ok,a\n2,caf\xe9,b\n",
        InputError,
        "dataset",
        r"d\.csv, line 3: invalid UTF-8 at byte offset 26",
    ),
    "csv_duplicate_header": ("d.csv", b"id,text,text\n1,a,b\n", InputError, "dataset", r"line 1: the header repeats"),
    "jsonl_malformed": (
        "d.jsonl",
        b'{"id": 1, "text": "a"}\n{"id": 2, "text": \n',
        InputError,
        "dataset",
        r"d\.jsonl, line 2: not valid JSON",
    ),
    "jsonl_array_line": (
        "d.jsonl",
        b'{"id": 1, "text": "a"}\n\n[2, "b"]\n',
        InputError,
        "dataset",
        r"line 3: expected one JSON object per line, got list",
    ),
    "jsonl_scalar_line": ("d.jsonl", b'{"id": 1, "text": "a"}\n42\n', InputError, "dataset", r"line 2: .* got int"),
    "jsonl_missing_id": (
        "d.jsonl",
        b'{"id": 1, "text": "a"}\n{"text": "b"}\n',
        InputError,
        "id_col",
        r"d\.jsonl, line 2: no 'id' column",
    ),
    "jsonl_missing_text": (
        "d.jsonl",
        b'{"id": 1, "text": "a"}\n{"id": 2, "body": "b"}\n',
        InputError,
        "text_col",
        r"line 2: no 'text' column",
    ),
    "jsonl_missing_label": (
        "d.jsonl",
        b'{"id": 1, "text": "a", "label": "x"}\n{"id": 2, "text": "b"}\n',
        InputError,
        "label_col",
        r"line 2: no 'label' column",
    ),
    "jsonl_null_id": (
        "d.jsonl",
        b'{"id": 1, "text": "a"}\n{"id": null, "text": "b"}\n',
        InputError,
        "id_col",
        r"line 2: the id None",
    ),
    "jsonl_invalid_utf8": (
        "d.jsonl",
        b'{"id": 1, "text": "a"}\n{"id": 2, "text": "\xff"}\n',
        InputError,
        "dataset",
        r"line 2: invalid UTF-8 at byte offset 42",
    ),
    "jsonl_huge_integer": ("d.jsonl", b'{"id": ' + b"1" * 5000 + b', "text": "a"}\n', InputError, "dataset", "line 1"),
    "jsonl_deep_nesting": ("d.jsonl", b"[" * 100_000 + b"\n", InputError, "dataset", r"line 1: not valid JSON"),
    "parquet_garbage": ("d.parquet", b"PAR1 not parquet PAR1", InputError, "dataset", r"not a readable Parquet"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_is_refused_naming_file_and_line(name: str, tmp_path: Path) -> None:
    filename, content, error, argument, pattern = BAD[name]
    if filename.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    path = tmp_path / filename
    path.write_bytes(content)
    label_col = "label" if name == "jsonl_missing_label" else None
    with pytest.raises(error, match=pattern) as err:
        load_documents(path, "text", label_col=label_col, id_col="id")
    assert isinstance(err.value, InputError) and err.value.argument == argument


def _docs(path: Path) -> list[tuple[str, str, str | None]]:
    return [(d.doc_id, d.text, d.label) for d in load_documents(path, "text", label_col="label", id_col="id")]


EXPECTED = [("1", "the coach", "sports"), ("2", 'a, quoted "text"', "finance"), ("3", "stock profit", "finance")]


def test_good_csv_reads_every_row(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes(GOOD_CSV)
    assert _docs(tmp_path / "d.csv") == EXPECTED


def test_utf8_bom_is_stripped_from_the_first_column_name(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes(b"\xef\xbb\xbf" + GOOD_CSV)
    assert _docs(tmp_path / "d.csv") == EXPECTED
    lines = [json.dumps({"id": i, "text": t, "label": lab}) for i, t, lab in EXPECTED]
    (tmp_path / "d.jsonl").write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())
    assert _docs(tmp_path / "d.jsonl") == EXPECTED


def test_crlf_blank_lines_and_multiline_quoted_fields_are_fine(tmp_path: Path) -> None:
    data = b'id,text,label\r\n1,"two\r\nlines",a\r\n\r\n2,b,c\r\n'
    (tmp_path / "d.csv").write_bytes(data)
    assert _docs(tmp_path / "d.csv") == [("1", "two\r\nlines", "a"), ("2", "b", "c")]


def test_a_field_longer_than_pythons_default_limit_is_read(tmp_path: Path) -> None:
    long = "word " * 40_000  # 200,000 characters, over csv's default 131,072
    (tmp_path / "d.csv").write_text(f"id,text,label\n1,{long},a\n", encoding="utf-8")
    assert _docs(tmp_path / "d.csv") == [("1", long, "a")]


def test_a_field_over_the_limit_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import csv

    before = csv.field_size_limit()
    monkeypatch.setattr(sources, "MAX_FIELD", 1000)
    (tmp_path / "d.csv").write_text("id,text,label\n1,short,a\n2," + "x" * 1500 + ",b\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"line 3: malformed CSV \(a field longer than 1000 characters\)") as err:
        _docs(tmp_path / "d.csv")
    assert err.value.argument == "dataset"
    assert csv.field_size_limit() == before  # the process-wide limit is restored
