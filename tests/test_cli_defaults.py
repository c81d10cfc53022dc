"""The defaults policy and a command line that talks to its user: --version, defaults and exit status in
every --help, one source of defaults for the API and the CLI, progress and --quiet, warnings vs --strict,
and --threads."""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

from integrand import defaults
from integrand.cli import build_parser, main
from integrand.convergence import DEFAULT_TOL
from integrand.errors import InputError

from .reference.generation_oracle import tiny_lm

PROMPT = "the capital of france is"


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from _parsers(child)


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if not isinstance(a, argparse._SubParsersAction)}


def _sub(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    from integrand import __version__

    assert capsys.readouterr().out.strip() == f"integrand {__version__}"


def test_every_help_documents_each_option_its_default_and_the_exit_status() -> None:
    parsers = list(_parsers(build_parser()))
    assert len(parsers) >= 12  # integrand, its subcommands and steer's verbs
    for parser in parsers:
        text = " ".join(parser.format_help().split())
        assert "exit status: 0" in text and "2 bad input" in text and "--strict" in text, parser.prog
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{parser.prog} {action.dest}: no help text"
            default = action.default
            if default is None or isinstance(default, bool) or default is argparse.SUPPRESS:
                continue
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
            spellings = {shown, f"{default:g}"} if isinstance(default, float) else {shown}
            assert any(s in text for s in spellings), f"{parser.prog} {action.dest}: default {shown!r} not in --help"


def test_one_source_of_defaults_for_api_and_cli() -> None:
    import integrand.methods.integrated_gradients  # noqa: F401  (the module, not the function of that name)
    from integrand.corpus import ExplainSettings
    from integrand.generation.explainer import DEFAULT_METHOD, GenerationExplainer

    ig_module = sys.modules["integrand.methods.integrated_gradients"]
    from integrand.steering import contrastive
    from integrand.steering.fit import fit as steering_fit
    from integrand.text.explainer import METHODS as TEXT_METHODS
    from integrand.text.explainer import TextExplainer

    assert defaults.TOL == DEFAULT_TOL
    # The array APIs: a fixed rule of IG_STEPS points when neither steps nor tol is given.
    ig = inspect.signature(ig_module.integrated_gradients).parameters
    assert ig["steps"].default is None and ig["tol"].default is None and ig_module.DEFAULT_STEPS == defaults.IG_STEPS
    text = inspect.signature(TextExplainer.__call__).parameters
    assert TEXT_METHODS[text["method"].default] == defaults.METHOD
    assert text["baseline"].default == defaults.TEXT_BASELINE
    assert text["steps"].default is None and text["tol"].default is None
    assert defaults.Integration(steps=ig_module.DEFAULT_STEPS, tol=None) == defaults.ARRAY_API
    # The corpus runner and the steering fit.
    settings = ExplainSettings()
    assert TEXT_METHODS[settings.method] == defaults.METHOD and settings.baseline == defaults.TEXT_BASELINE
    assert settings.integration == defaults.CLI and ExplainSettings(steps=8).config == defaults.Integration(steps=8)
    assert defaults.Integration(steps=defaults.STEER_STEPS) == defaults.STEERING
    fit = inspect.signature(steering_fit).parameters
    assert fit["steps"].default is None and fit["tol"].default is None and fit["integration"].default is None
    assert inspect.signature(contrastive.contrastive_ig).parameters["steps"].default is None
    # Generation: error control to TOL, the method read from one constant.
    gen = inspect.signature(GenerationExplainer._explain).parameters
    assert gen["method"].default == DEFAULT_METHOD and gen["tol"].default is None
    assert defaults.GENERATION.tol == DEFAULT_TOL
    # The command line reads the same values.
    for command in ("explain", "run"):
        assert _options(_sub(command))["tol"].default == defaults.CLI.tol == DEFAULT_TOL, command
    for command in ("explain", "generate", "run"):
        assert _options(_sub(command))["steps"].default is None, command
    # generate: None, so an explicit --tol can be refused under occlusion; integration_from fills CLI.tol.
    generate = _options(_sub("generate"))["tol"]
    assert generate.default is None and f"default: {defaults.CLI.tol:g}" in str(generate.help)
    explain = _options(_sub("explain"))
    assert explain["method"].default == defaults.METHOD and explain["baseline"].default == defaults.TEXT_BASELINE
    assert _options(_sub("generate"))["method"].default in (None, DEFAULT_METHOD)
    assert _options(_sub("steer", "fit"))["steps"].default is None


def test_aliases_are_normalised_and_typos_refused_with_a_hint() -> None:
    from integrand.generation.explainer import BASELINES, METHODS

    assert defaults.canonical_method("ig", METHODS) == "integrated_gradients"
    assert defaults.canonical_method("saliency", METHODS) == "saliency"
    assert defaults.canonical_baseline("zero", BASELINES) == "zeros"
    assert defaults.canonical_baseline(7, BASELINES) == 7
    with pytest.raises(InputError, match="did you mean 'integrated_gradients'") as info:
        defaults.canonical_method("integrated_gradient", METHODS)
    assert info.value.argument == "method"
    with pytest.raises(InputError, match="zero \\(= zeros\\)") as info:
        defaults.canonical_baseline("nothing", BASELINES)
    assert info.value.argument == "baseline"


def test_text_and_generation_accept_the_aliases() -> None:
    from integrand.generation import GenerationExplainer

    model, tok = tiny_lm("gpt2")
    gx = GenerationExplainer(model, tok)
    a = gx(PROMPT, target="paris", method="ig", baseline="zero", steps=4, progress=False)
    b = gx(PROMPT, target="paris", method="integrated_gradients", baseline="zeros", steps=4, progress=False)
    assert a.method == b.method == "integrated_gradients" and a.params["baseline"] == "zeros"
    assert torch.equal(a.matrix, b.matrix)
    with pytest.raises(InputError, match="did you mean"):
        gx(PROMPT, target="paris", method="saliancy")


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, tok = tiny_lm("gpt2")
    folder = tmp_path_factory.mktemp("lm")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _generate(lm_dir: Path, *extra: str, method: str = "integrated_gradients") -> list[str]:
    return ["generate", PROMPT, "--model", str(lm_dir), "--target", "paris city", "--method", method, *extra]


def test_default_generation_is_exact_occlusion_with_progress(
    lm_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRAND_PROGRESS", "1")
    argv = ["generate", PROMPT, "--model", str(lm_dir), "--target", "paris city", "--strict"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    summary = out.strip().splitlines()[-1]
    assert "2 target tokens" in summary and "exact (leave-one-out occlusion" in summary, summary
    assert "occlusion" in err and "warning" not in err


def test_unconverged_generation_exits_0_with_one_warning_line_and_1_with_strict(
    lm_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_generate(lm_dir, "--steps", "1")) == 0
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("integrand: warning:")]
    assert len(warnings) == 1 and "did not meet the relative completeness tolerance" in warnings[0], err
    assert ".py" not in err and "Traceback" not in err
    summary = out.strip().splitlines()[-1]
    assert "2 target tokens" in summary and "did not converge at tol 0.01" in summary and " s;" in summary
    assert main(_generate(lm_dir, "--steps", "1", "--strict")) == 1
    assert "--strict" in capsys.readouterr().err
    # A converged run exits 0 under --strict too, and says where its files went.
    saved = lm_dir.parent / "gen.safetensors"
    assert main(["--strict", *_generate(lm_dir, "--save", str(saved))]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and "all converged at tol 0.01" in out and str(saved.resolve()) in out


def test_progress_shows_unless_quiet(
    lm_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRAND_PROGRESS", "1")  # as on a terminal
    assert main(_generate(lm_dir)) == 0
    err = capsys.readouterr().err
    assert "IG to tol 0.01: points" in err and "targets converged" in err
    assert main(_generate(lm_dir, "--quiet")) == 0
    out, err = capsys.readouterr()
    assert "points" not in err and "converged" not in err and err.strip() == ""
    assert "target tokens" in out  # the summary line stays


def test_progress_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from integrand.progress import enabled, silenced

    monkeypatch.delenv("INTEGRAND_PROGRESS", raising=False)
    assert enabled(True) and not enabled(False)
    assert not enabled(None)  # pytest's stderr is not a terminal
    monkeypatch.setenv("INTEGRAND_PROGRESS", "1")
    assert enabled(None)
    with silenced():
        assert not enabled(None) and enabled(True)


def test_threads_option_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    missing = str(tmp_path / "missing")
    try:
        monkeypatch.delenv("INTEGRAND_THREADS", raising=False)
        assert main(["--threads", "2", "serve", missing]) == 2  # the handler refuses the folder after the threads
        assert torch.get_num_threads() == 2
        assert main(["serve", missing]) == 2
        assert torch.get_num_threads() == defaults.THREADS == 1
        monkeypatch.setenv("INTEGRAND_THREADS", "3")
        assert main(["serve", missing]) == 2
        assert torch.get_num_threads() == 3
        assert main(["--threads", "1", "serve", missing]) == 2
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("INTEGRAND_THREADS", "lots")
        with pytest.raises(InputError, match="INTEGRAND_THREADS"):
            defaults.threads()
        assert main(["--threads", "0", "serve", missing]) == 2
    finally:
        torch.set_num_threads(before)


def test_bad_threads_environment_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    before = torch.get_num_threads()
    monkeypatch.setenv("INTEGRAND_THREADS", "0")
    try:
        assert main(["serve", str(tmp_path)]) == 2
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err
    assert err.startswith("integrand: error: INTEGRAND_THREADS:") and len(err.strip().splitlines()) == 1
