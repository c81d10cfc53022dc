"""Catalogue of bad queries and damaged stores: refused with a typed error naming the statement or the shard,
and a resumed run repairs the store to equal an uninterrupted run row for row."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

from integrand.corpus import Corpus, ExplainSettings, run
from integrand.corpus.synthetic import explainer_for, make_corpus, train_classifier
from integrand.errors import QueryError, StoreError, StoreWarning

pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")

SETTINGS = ExplainSettings(steps=4)
ROWS = make_corpus(30, seed=7)


@pytest.fixture(scope="module")
def explainer() -> Any:
    return explainer_for(*train_classifier(make_corpus(300, seed=1), seed=0, epochs=4))


def _run(explainer: Any, out: Path, **kwargs: Any) -> Any:
    settings = kwargs.pop("settings", SETTINGS)
    return run(
        explainer, ROWS, out, id_col="id", label_col="label", settings=settings, chunk_docs=8, progress=False, **kwargs
    )


@pytest.fixture(scope="module")
def reference(explainer: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "store"
    _run(explainer, out)
    return out


@pytest.fixture
def store(reference: Path, tmp_path: Path) -> Path:
    out = tmp_path / "store"
    shutil.copytree(reference, out)
    return out


def _rows(out: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with Corpus(out, verify=True) as c:
        tokens = c.sql("SELECT * FROM attributions ORDER BY doc_id, position").rows
        docs = c.sql("SELECT * FROM documents ORDER BY doc_id").rows
    return list(tokens), list(docs)


# ---------------------------------------------------------------- queries: one read-only SELECT over the views

SECRET = "secret.txt"
# name -> (query with {tmp} for a folder outside the store, message pattern)
QUERIES: dict[str, tuple[str, str]] = {
    "copy_to_file": ("COPY (SELECT 1) TO '{tmp}/x.csv'", r"not a COPY statement"),
    "copy_view_to_file": ("COPY documents TO '{tmp}/x.parquet' (FORMAT parquet)", r"not a COPY statement"),
    "attach_database": ("ATTACH '{tmp}/x.duckdb' AS other", r"not a ATTACH statement"),
    "create_table": ("CREATE TABLE x AS SELECT 1", r"not a CREATE statement"),
    "second_statement": ("SELECT 1; COPY (SELECT 1) TO '{tmp}/x.csv'", r"exactly one statement, got 2"),
    "two_selects": ("SELECT 1; SELECT 2", r"exactly one statement, got 2"),
    "read_text_outside": ("SELECT * FROM read_text('{tmp}/secret.txt')", r"may read only the views"),
    "read_csv_outside": ("SELECT * FROM read_csv('{tmp}/secret.txt')", r"may read only the views"),
    "read_blob_outside": ("SELECT * FROM read_blob('/etc/hostname')", r"may read only the views"),
    "glob_filesystem": ("SELECT * FROM glob('/etc/*')", r"may read only the views"),
    "read_shard_directly": ("SELECT * FROM read_parquet('{store}/documents/part-000000.parquet')", r"only the views"),
    "install_extension": ("INSTALL httpfs", r"not a LOAD statement"),
    "load_extension": ("LOAD httpfs", r"not a LOAD statement"),
    "unlock_external_access": ("SET enable_external_access = true", r"not a SET statement"),
    "pragma": ("PRAGMA database_list", r"not a PRAGMA statement"),
    "syntax_error": ("SELEC 1", r"'SELEC 1'"),
}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_query_catalogue(name: str, store: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / SECRET).write_text("root:x:0:0\n")
    query = QUERIES[name][0].format(tmp=outside, store=store)
    with Corpus(store) as c, pytest.raises(QueryError, match=QUERIES[name][1]) as err:
        c.sql(query)
    assert err.value.argument == "query"
    assert sorted(p.name for p in outside.iterdir()) == [SECRET]  # nothing written next to the secret


def test_cli_sql_copy_exits_2_and_writes_nothing(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from integrand.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["sql", str(store), "COPY (SELECT 1) TO 'x.csv'"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "COPY" in err[0] and not (tmp_path / "x.csv").exists()


def test_cli_exports_are_written_by_integrand(store: Path, tmp_path: Path) -> None:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from integrand.cli import main

    query = "SELECT doc_id, predicted_label, delta FROM documents ORDER BY doc_id"
    with Corpus(store) as c:
        expected = c.sql(query)
    assert main(["sql", str(store), query, "--csv", str(tmp_path / "out.csv")]) == 0
    assert main(["sql", str(store), query, "--parquet", str(tmp_path / "out.parquet")]) == 0
    got_csv = pcsv.read_csv(tmp_path / "out.csv", convert_options=pcsv.ConvertOptions(strings_can_be_null=True))
    got_parquet = pq.read_table(tmp_path / "out.parquet")
    for table in (got_csv, got_parquet):
        assert tuple(table.column_names) == expected.columns
        assert [str(v) for v in table.column("doc_id").to_pylist()] == expected.column("doc_id")
    assert got_parquet.column("delta").to_pylist() == expected.column("delta")
    assert main(["sql", str(store), "DROP VIEW documents", "--parquet", str(tmp_path / "bad.parquet")]) == 2
    assert not (tmp_path / "bad.parquet").exists()


@pytest.mark.parametrize("name", ["run?", "run*", "run[12]"])
def test_run_folder_name_is_never_a_glob(name: str, reference: Path, tmp_path: Path) -> None:
    shutil.copytree(reference, tmp_path / "run1")
    shutil.copytree(reference, tmp_path / "run2")
    shutil.copytree(reference, tmp_path / name)
    with Corpus(tmp_path / name) as c:
        assert c.sql("SELECT count(*) FROM documents").rows[0][0] == len(ROWS)


# ---------------------------------------------------------------- damaged stores: named on open, repaired on resume


def _truncate(out: Path) -> str:
    path = out / "documents" / "part-000001.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "documents/part-000001.parquet"


def _swap(out: Path) -> str:
    for kind in ("tokens", "documents"):
        shutil.copyfile(out / kind / "part-000000.parquet", out / kind / "part-000002.parquet")
    return "part-000002.parquet"


def _flip_byte(out: Path) -> str:
    path = out / "tokens" / "part-000003.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    return "tokens/part-000003.parquet"


# name -> (damage, opening without verify also notices it)
DAMAGE = {"truncated_shard": (_truncate, True), "swapped_shard": (_swap, False), "flipped_byte": (_flip_byte, False)}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damaged_shard_is_named_and_recomputed(name: str, explainer: Any, store: Path, reference: Path) -> None:
    damage, cheap = DAMAGE[name]
    shard = damage(store)
    with pytest.raises(StoreError, match=shard) as err:
        Corpus(store, verify=True).close()
    assert err.value.argument == "path"
    if cheap:
        with pytest.raises(StoreError, match=shard):
            Corpus(store).close()
    with pytest.warns(StoreWarning, match=shard):
        summary = _run(explainer, store)
    assert summary.written == 1 and summary.skipped == summary.chunks - 1
    assert any(shard in r for r in summary.repaired)
    assert _rows(store) == _rows(reference)


def test_unrecorded_shard_is_recomputed_quietly(explainer: Any, store: Path, reference: Path) -> None:
    """A shard written but not yet recorded (killed between the two) is redone, not trusted."""
    manifest = json.loads((store / "manifest.json").read_text())
    del manifest["shards"]["2"]
    (store / "manifest.json").write_text(json.dumps(manifest))
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)
        summary = _run(explainer, store)
    assert summary.written == 1 and summary.repaired == ()
    assert _rows(store) == _rows(reference)


def test_missing_manifest_is_refused_unless_rebuilt(explainer: Any, store: Path, reference: Path) -> None:
    (store / "manifest.json").unlink()
    with pytest.raises(StoreError, match=r"no manifest\.json.*rebuild") as err:
        _run(explainer, store, settings=ExplainSettings(steps=6))
    assert err.value.argument == "out"
    assert not (store / "manifest.json").exists()
    summary = _run(explainer, store, rebuild=True)
    assert summary.written == summary.chunks
    assert _rows(store) == _rows(reference)
    manifest = json.loads((store / "manifest.json").read_text())
    assert sorted(manifest["shards"], key=int) == [str(k) for k in range(summary.chunks)]


VERIFYING = {"sql": ["SELECT count(*) FROM documents"], "cues": ["--top", "3", "--no-screen"]}


@pytest.mark.parametrize("command", sorted(VERIFYING))
def test_cli_verify_on_a_damaged_store_exits_2_naming_the_shard(
    command: str, store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flipped byte keeps size and row count: only --verify (sha256) notices it, and names the shard."""
    from integrand.cli import main

    argv = [command, str(store), *VERIFYING[command]]
    assert main([*argv, "--verify"]) == 0
    capsys.readouterr()
    shard = _flip_byte(store)
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and shard in err[0] and err[0].startswith("integrand: error: path:"), err


def test_cues_counts_convergence_over_the_recorded_shards_only(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stray shard in the folder (not in the manifest) is neither served nor counted."""
    from integrand.cli import main

    assert main(["cues", str(store), "--top", "3", "--no-screen"]) == 0
    before = capsys.readouterr().out
    for kind in ("tokens", "documents"):
        shutil.copyfile(store / kind / "part-000000.parquet", store / kind / "part-000099.parquet")
    assert main(["cues", str(store), "--top", "3", "--no-screen"]) == 0
    after = capsys.readouterr().out
    assert "# completeness:" in before and after == before


@pytest.mark.parametrize("key", ["²", "\u0661", "-1", "x"])
def test_a_shard_record_key_that_is_not_ascii_digits_is_a_store_error(key: str, store: Path) -> None:
    """'²'.isdigit() is True but int('²') fails: the manifest's chunk numbers must be ASCII digits."""
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["shards"][key] = manifest["shards"].pop("0")
    (store / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="'shards' record is malformed") as err:
        Corpus(store).close()
    assert err.value.argument == "path"
