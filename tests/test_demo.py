"""The demo command: runs a section, prints the completeness table and writes the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrand import Attribution, InputError
from integrand.cli import main


def test_image_section_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTEGRAND_CACHE", str(tmp_path / "cache"))
    assert main(["demo", "--out", str(tmp_path / "out"), "--sections", "image"]) == 0
    out = capsys.readouterr().out
    assert "rel. completeness error" in out and "mean gradient evaluations" in out
    report = tmp_path / "out" / "report.html"
    assert report.is_file() and "<img" in report.read_text()
    saved = Attribution.load(tmp_path / "out" / "digits_ig.safetensors")
    assert bool(saved.converged.all())
    from integrand.demo.image import TOLERANCE

    assert float(saved.relative_error.max()) <= TOLERANCE
    assert any((tmp_path / "cache").glob("digits-cnn-*.safetensors"))


def test_unknown_section(tmp_path: Path) -> None:
    from integrand.demo import run_demo

    with pytest.raises(InputError, match="unknown demo sections"):
        run_demo(tmp_path, sections=["nope"])
