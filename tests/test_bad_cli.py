"""Bad input to every ``integrand`` command: exit 2 and one line naming the argument, never a traceback.

Each case is checked before any model loads (or on the tiny embedded toxicity model), so the catalogue
runs in seconds. Internal errors exit 1 with a hint to rerun with ``--debug``, which re-raises.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from integrand.cli import main, options

# "{tmp}" is replaced by a folder holding: afile (a file), data.csv (a one-row dataset), empty/ (a folder).
CASES: list[tuple[str, list[str], int, str]] = [
    ("no command", [], 2, "command"),
    ("unknown option", ["explain", "hi", "--bogus"], 2, "--bogus"),
    ("missing required option", ["steer", "fit", "--out", "{tmp}/v.safetensors"], 2, "--layers"),
    ("--html in a missing folder", ["explain", "hi", "--html", "{tmp}/missing/x.html", "--quiet"], 2, "--html"),
    ("--json in a missing folder", ["explain", "hi", "--json", "{tmp}/missing/x.json", "--quiet"], 2, "--json"),
    ("--html is a folder", ["explain", "hi", "--html", "{tmp}/empty", "--quiet"], 2, "--html"),
    ("--html under a file", ["explain", "hi", "--html", "{tmp}/afile/x.html", "--quiet"], 2, "--html"),
    ("--html not UTF-8", ["explain", "hi", "--html", "\udcff.html", "--quiet"], 2, "--html"),
    ("data path not UTF-8", ["run", "{tmp}/caf\udce9.csv", "--out", "{tmp}/store"], 2, "data"),
    ("superscript digit steps", ["explain", "hi", "--steps", "\u00b2", "--quiet"], 2, "--steps"),
    ("arabic-indic digit steps", ["explain", "hi", "--steps", "\u0663", "--quiet"], 2, "--steps"),
    ("underscore steps", ["explain", "hi", "--steps", "1_6", "--quiet"], 2, "--steps"),
    ("infinite tol", ["explain", "hi", "--tol", "inf", "--quiet"], 2, "--tol"),
    ("superscript target", ["explain", "hi", "--target", "\u00b2", "--quiet"], 2, "target"),
    ("superscript baseline", ["explain", "hi", "--baseline", "\u00b2", "--quiet"], 2, "baseline"),
    ("generate --model missing", ["generate", "hi", "--model", "{tmp}/nomodel"], 2, "--model"),
    ("generate --model is a file", ["generate", "hi", "--model", "{tmp}/afile"], 2, "--model"),
    ("generate --model without config", ["generate", "hi", "--model", "{tmp}/empty"], 2, "--model"),
    ("generate --tol under occlusion", ["generate", "hi", "--tol", "1e-3"], 2, "--tol"),
    ("generate --steps under occlusion", ["generate", "hi", "--method", "occlusion", "--steps", "8"], 2, "--steps"),
    ("run --out is a file", ["run", "{tmp}/data.csv", "--out", "{tmp}/afile"], 2, "--out"),
    ("run --steps 0", ["run", "{tmp}/data.csv", "--out", "{tmp}/store", "--steps", "0"], 2, "--steps"),
    ("run --workers 0", ["run", "{tmp}/data.csv", "--out", "{tmp}/store", "--workers", "0"], 2, "--workers"),
    ("run superscript target", ["run", "{tmp}/data.csv", "--out", "{tmp}/store", "--target", "\u00b2"], 2, "--target"),
    ("cues fullwidth --top", ["cues", "{tmp}/empty", "--top", "\uff13"], 2, "--top"),
    ("sql run_dir not UTF-8", ["sql", "{tmp}/\udcff", "select 1"], 2, "run_dir"),
    (
        "steer fit --out in a missing folder",
        ["steer", "fit", "--model", "{tmp}/nomodel", "--layers", "0", "--out", "{tmp}/missing/v.safetensors"],
        2,
        "--out",
    ),
    ("steer fit superscript layer", ["steer", "fit", "--layers", "\u00b2", "--out", "{tmp}/v.st"], 2, "--layers"),
    (
        "steer generate nan strength",
        ["steer", "generate", "hi", "--model", "{tmp}/nomodel", "--vector", "{tmp}/afile", "--strength", "nan"],
        2,
        "--strength",
    ),
    ("serve port out of range", ["serve", "{tmp}/empty", "--port", "70000"], 2, "--port"),
    ("demo --out is a file", ["demo", "--out", "{tmp}/afile", "--sections", "text"], 2, "--out"),
    ("demo superscript port", ["demo", "--serve", "--port", "\u00b2"], 2, "--port"),
]


@pytest.fixture()
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "afile").write_text("not a folder", encoding="utf-8")
    (tmp_path / "data.csv").write_text("text\nhello there\n", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # a relative output must not land in the repository
    return tmp_path


def _argv(argv: list[str], tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in argv]


@pytest.mark.parametrize(("argv", "code", "name"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_with_one_line_naming_the_argument(
    argv: list[str], code: int, name: str, tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_argv(argv, tmp)) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"integrand: error: {name}: "), err[0]
    assert not list((tmp / "cwd").iterdir())  # nothing written
    assert not (tmp / "store").exists() and not (tmp / "missing").exists()


@pytest.fixture()
def busy_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A loopback port something already listens on; the viewer itself is stubbed so nothing can block."""
    import socket

    served: list[Any] = []
    monkeypatch.setattr("integrand.viewer.app.run_server", lambda *a, **k: served.append((a, k)))
    monkeypatch.setattr("integrand.demo.run_demo", lambda out, sections=None: Path(out) / "report.html")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])
    assert served == []


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["serve", "{tmp}/empty", "--port", "{port}"], "--port"),
        (["serve", "{tmp}/empty", "--host", "no such host.invalid", "--port", "{port}"], "--host"),
        (["demo", "--serve", "--out", "{tmp}/demo", "--port", "{port}"], "--port"),
    ],
    ids=["serve-port-in-use", "serve-unresolvable-host", "demo-port-in-use"],
)
def test_a_port_that_cannot_be_listened_on_is_refused_up_front(
    argv: list[str], name: str, busy_port: int, tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([a.replace("{port}", str(busy_port)) for a in _argv(argv, tmp)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"integrand: error: {name}: cannot ")


def test_internal_error_exits_1_with_a_debug_hint(monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp: Path) -> None:
    from integrand.cli import serve

    def broken(args: argparse.Namespace) -> int:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(serve, "run", broken)
    assert main(["serve", str(tmp / "empty")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == "integrand: internal error: RuntimeError: boom second line (rerun with --debug for the traceback)"
    with pytest.raises(RuntimeError, match="boom"):
        main(["serve", str(tmp / "empty"), "--debug"])
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", "serve", str(tmp / "empty")])


def test_interrupt_exits_130_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp: Path) -> None:
    from integrand.cli import serve

    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(serve, "run", interrupted)
    assert main(["serve", str(tmp / "empty")]) == 130
    assert capsys.readouterr().err == "integrand: interrupted\n"


def test_typed_errors_stay_exit_2_with_debug(capsys: Any, tmp: Path) -> None:
    assert main(["--debug", "serve", str(tmp / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("integrand: error: results_dir: ")


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        (options.integer, {"7": 7, "-2": -2, "+3": 3}, ["\u00b2", "\u0663", "\uff17", " 7", "1_0", "7.0", ""]),
        (options.number, {"1e-3": 1e-3, ".5": 0.5, "-2": -2.0}, ["nan", "inf", "-Infinity", "\u0663", "1_0", "0x1"]),
        (options.port, {"1": 1, "65535": 65535}, ["0", "65536", "\uff18\uff10", "-1"]),
        (options.positive_int, {"1": 1}, ["0", "-1", "\u00b9"]),
    ],
)
def test_numbers_are_strict(kind: Any, good: dict[str, Any], bad: list[str]) -> None:
    for text, value in good.items():
        assert kind(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)


def test_labels_by_index_only_with_ascii_digits() -> None:
    assert options.int_or_name("12") == 12
    assert options.int_or_name("\u00b2") == "\u00b2" and options.int_or_name("\u0663") == "\u0663"
    assert options.int_or_name("+1") == "+1" and options.int_or_name("toxic") == "toxic"


def _cli(*argv: str | bytes, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    code = "import sys; from integrand.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, capture_output=True, timeout=120)


@pytest.mark.parametrize(
    "argv",
    [
        ["explain", "hi", "--html", "{tmp}/missing/x.html"],
        ["explain", "hi", "--html", b"caf\xe9.html"],  # a Latin-1 byte: not UTF-8, arrives as a lone surrogate
    ],
    ids=["missing-folder", "non-utf8-argv"],
)
def test_no_traceback_from_a_real_process(argv: list[str | bytes], tmp: Path) -> None:
    args = [a.replace("{tmp}", str(tmp)) if isinstance(a, str) else a for a in argv]
    done = _cli(*args, cwd=tmp / "cwd")
    err = done.stderr.decode("utf-8", "replace").strip().splitlines()
    assert done.returncode == 2, err
    assert b"Traceback" not in done.stderr
    assert len(err) == 1 and err[0].startswith("integrand: error: "), err


def test_a_closed_stdout_pipe_ends_quietly(tmp: Path) -> None:
    """``integrand ... | head``: the reader leaves early; no traceback, no 'Exception ignored' noise."""
    code = "import sys; from integrand.cli import main; sys.exit(main())"
    argv = [sys.executable, "-c", code, "explain", "you are lovely", "--quiet", "--json", str(tmp / "out.json")]
    proc = subprocess.Popen(argv, cwd=tmp / "cwd", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command writes anything (it loads torch and a model first)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert b"Traceback" not in err and b"Exception ignored" not in err and b"BrokenPipe" not in err, err
