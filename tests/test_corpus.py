"""Corpus runs: resumable Parquet stores, DuckDB queries, lexical cues, bad input."""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from integrand import InputError
from integrand.corpus import Corpus, ExplainSettings, run
from integrand.corpus.synthetic import CUES, explainer_for, make_corpus, train_classifier

pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained() -> tuple[Any, Any, list[str]]:
    return train_classifier(make_corpus(900, seed=1), seed=0)


@pytest.fixture(scope="module")
def explainer(trained: tuple[Any, Any, list[str]]) -> Any:
    return explainer_for(*trained)


def _store(out: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with Corpus(out) as c:
        tokens = c.sql("SELECT * FROM attributions ORDER BY doc_id, position").rows
        docs = c.sql("SELECT * FROM documents ORDER BY doc_id").rows
    return list(tokens), list(docs)


def test_every_planted_cue_is_in_its_class_top_ten(explainer: Any, tmp_path: Path) -> None:
    rows = make_corpus(600, seed=2)
    summary = run(
        explainer,
        rows,
        tmp_path / "r",
        id_col="id",
        label_col="label",
        settings=ExplainSettings(steps=8),
        progress=False,
    )
    assert summary.documents == 600 and summary.written == summary.chunks
    with Corpus(tmp_path / "r") as c:
        assert c.sql("SELECT count(*) FROM documents").rows[0][0] == 600
        for cls, cues in CUES.items():
            top = c.top(cls, top=10).column("unit")
            assert set(cues) <= set(top), (cls, top)
        contrast = c.contrast("sports", "finance", top=4).column("unit")
        assert set(contrast) <= set(CUES["sports"]) | set(CUES["finance"])
        assert contrast[0] in CUES["sports"]
        examples = c.examples("goal", top=3)
        assert all("goal" in text for text in examples.column("text"))
        scores = dict(c.screening_scores("health").rows)
        labels = dict(c.sql("SELECT doc_id, gold_label FROM documents").rows)
        health = [s for d, s in scores.items() if labels[d] == "health"]
        others = [s for d, s in scores.items() if labels[d] != "health"]
        assert sum(health) / len(health) > sum(others) / len(others)


def test_store_rows_match_attributions(explainer: Any, tmp_path: Path) -> None:
    rows = make_corpus(30, seed=3)
    run(
        explainer,
        rows,
        tmp_path / "r",
        id_col="id",
        label_col="label",
        settings=ExplainSettings(steps=8),
        chunk_docs=7,
        progress=False,
    )
    direct = explainer([r["text"] for r in rows[:5]], steps=8)
    with Corpus(tmp_path / "r") as c:
        for r, res in zip(rows[:5], direct):
            stored = c.sql("SELECT token, score FROM attributions WHERE doc_id = ? ORDER BY position", [r["id"]]).rows
            assert [t for t, _ in stored] == list(res.tokens)
            stored_scores = torch.tensor([s for _, s in stored], dtype=torch.float64)
            torch.testing.assert_close(stored_scores, res.scores.double(), rtol=1e-6, atol=1e-7)
            doc = c.sql("SELECT predicted_label, delta FROM documents WHERE doc_id = ?", [r["id"]]).rows[0]
            assert doc == (res.predicted, pytest.approx(res.delta))


def test_kill_and_resume_gives_the_same_store(trained: tuple[Any, Any, list[str]], tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model, vocab, classes = trained
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(model_dir / "model.safetensors"))
    (model_dir / "meta.json").write_text(json.dumps({"vocab": vocab.index, "classes": classes}))
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_corpus(2000, seed=4)))
    cmd = [sys.executable, "-m", "tests.corpus_worker", str(model_dir), str(data)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*cmd, str(tmp_path / "ref")], check=True, cwd=ROOT, env=env, timeout=600)
    rng = random.Random(0)
    kills = 0
    out = tmp_path / "killed"
    for _ in range(3):
        before = len(list((out / "documents").glob("part-*.parquet")))
        proc = subprocess.Popen([*cmd, str(out)], cwd=ROOT, env=env)
        # Kill at a random point of progress (after 1-8 new shards), a few ms later so some kills land mid-write.
        goal = before + rng.randint(1, 8)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list((out / "documents").glob("part-*.parquet"))) < goal:
            if proc.poll() is not None:
                break
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.02))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2
    done_before = len(list((out / "documents").glob("part-*.parquet")))
    assert done_before < 40
    subprocess.run([*cmd, str(out)], check=True, cwd=ROOT, env=env, timeout=600)
    ref_tokens, ref_docs = _store(tmp_path / "ref")
    got_tokens, got_docs = _store(out)
    assert len(ref_docs) == 2000 and len({d[0] for d in got_docs}) == 2000
    assert got_docs == ref_docs
    assert got_tokens == ref_tokens
    assert not [p for p in out.rglob(".*.tmp")] or all(p.stat().st_size >= 0 for p in out.rglob(".*.tmp"))


def test_ray_engine_gives_the_same_store(explainer: Any, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    rows = make_corpus(120, seed=5)
    run(
        explainer,
        rows,
        tmp_path / "local",
        id_col="id",
        label_col="label",
        settings=ExplainSettings(steps=8),
        chunk_docs=20,
        progress=False,
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        run(
            explainer,
            rows,
            tmp_path / "ray",
            id_col="id",
            label_col="label",
            settings=ExplainSettings(steps=8),
            chunk_docs=20,
            engine="ray",
            workers=2,
            cpus_per_worker=0.5,
            progress=False,
        )
    finally:
        ray.shutdown()
    assert _store(tmp_path / "ray") == _store(tmp_path / "local")


def test_missing_text_column_lists_columns(explainer: Any, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"columns \['id', 'text', 'label'\]") as err:
        run(explainer, make_corpus(5), tmp_path / "r", text_col="body", progress=False)
    assert err.value.argument == "text_col"


def test_non_text_values_rejected(explainer: Any, tmp_path: Path) -> None:
    rows = [{"text": "the goal"}, {"text": 42}]
    with pytest.raises(InputError, match="row 1"):
        run(explainer, rows, tmp_path / "r", progress=False)


class _Refuses:
    """An explainer that refuses texts containing "boom", as a real one refuses unusable texts."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model = inner.model

    def __call__(self, texts: list[str], **kwargs: Any) -> Any:
        if any("boom" in t for t in texts):
            raise InputError("texts", "cannot attribute a text containing boom")
        return self.inner(texts, **kwargs)


def test_empty_and_failing_documents_are_kept_and_flagged(explainer: Any, tmp_path: Path) -> None:
    rows = [{"text": "the coach said goal"}, {"text": "   "}, {"text": "boom goes the stock"}, {"text": "stock profit"}]
    run(_Refuses(explainer), rows, tmp_path / "r", settings=ExplainSettings(steps=8), progress=False)
    with Corpus(tmp_path / "r") as c:
        docs = c.sql("SELECT doc_id, empty, error, n_tokens FROM documents ORDER BY doc_id").rows
        tokens = c.sql("SELECT doc_id, count(*) FROM attributions GROUP BY doc_id ORDER BY doc_id").rows
    assert [d[0] for d in docs] == ["0", "1", "2", "3"]
    assert docs[0][1:] == (False, None, 4)
    assert docs[1][1:] == (True, None, 0)
    assert docs[2][1] is False and "boom" in docs[2][2] and docs[2][3] == 0
    assert docs[3][3] == 2
    assert list(tokens) == [("0", 4), ("3", 2)]


def test_store_from_another_version_is_refused(explainer: Any, tmp_path: Path) -> None:
    out = tmp_path / "r"
    run(explainer, make_corpus(6), out, settings=ExplainSettings(steps=4), progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["version"] = 99
    manifest["versions"]["integrand"] = "9.9.9"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="integrand 9.9.9 in store format 99"):
        Corpus(out)
    with pytest.raises(InputError, match="format 99"):
        run(explainer, make_corpus(6), out, settings=ExplainSettings(steps=4), progress=False)


def test_different_run_in_same_folder_is_refused(explainer: Any, tmp_path: Path) -> None:
    out = tmp_path / "r"
    run(explainer, make_corpus(6), out, settings=ExplainSettings(steps=4), progress=False)
    with pytest.raises(InputError, match="different run"):
        run(explainer, make_corpus(6), out, settings=ExplainSettings(steps=6), progress=False)


def test_concurrent_run_is_refused_by_the_lock(explainer: Any, tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    fd = os.open(out / ".lock", os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(InputError, match="another run is writing"):
            run(explainer, make_corpus(6), out, progress=False)
    finally:
        os.close(fd)
    run(explainer, make_corpus(6), out, settings=ExplainSettings(steps=4), progress=False)


def test_sql_errors_and_unknown_class(explainer: Any, tmp_path: Path) -> None:
    run(explainer, make_corpus(9), tmp_path / "r", settings=ExplainSettings(steps=4), progress=False)
    with Corpus(tmp_path / "r") as c:
        with pytest.raises(InputError) as err:
            c.sql("SELECT nope FROM attributions")
        assert err.value.argument == "query"
        with pytest.raises(InputError, match="unknown class"):
            c.top("astronomy")


def test_cli_run_cues_sql(
    trained: tuple[Any, Any, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from integrand.cli import main

    explainer = explainer_for(*trained)
    run(
        explainer,
        make_corpus(60, seed=6),
        tmp_path / "r",
        id_col="id",
        label_col="label",
        settings=ExplainSettings(steps=4),
        progress=False,
    )
    assert main(["cues", str(tmp_path / "r"), "--class", "sports", "--top", "5"]) == 0
    assert "coach" in capsys.readouterr().out
    assert main(["sql", str(tmp_path / "r"), "SELECT count(*) AS n FROM documents", "--csv"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == ["n", "60"]
    assert main(["cues", str(tmp_path / "r"), "--class", "nope"]) == 2
