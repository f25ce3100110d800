"""The command table: lazy registration, one module per command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rtforge.cli import _COMMAND_HELP, _COMMAND_MODULE, _MODULES, build_parser, main
from tests.datafiles import pydicom_file


def _commands(parser) -> set[str]:
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)


def test_command_table_matches_registrations() -> None:
    everything = _commands(build_parser())
    assert everything == set(_COMMAND_MODULE)
    assert set(_COMMAND_MODULE.values()) == set(_MODULES)
    for command, module in _COMMAND_MODULE.items():
        # A run registers only the module of its command, and that module has the command.
        only = _commands(build_parser(command))
        assert command in only
        assert only == {c for c, m in _COMMAND_MODULE.items() if m == module}


def test_the_static_help_table_is_what_the_modules_register() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {c.dest: c.help for c in sub._choices_actions} == _COMMAND_HELP
    assert list(_COMMAND_HELP) == [c.dest for c in sub._choices_actions]  # --help order


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []])
def test_version_and_help_import_no_command_module(argv) -> None:
    code = ("import sys; from rtforge.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('rtforge.cli.')"
            " or m in ('numpy', 'pydicom', 'numba')), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stderr.strip().splitlines()[-1] == "[]", out.stderr


def test_top_level_help_describes_the_tool_and_lists_commands(capsys) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "radiotherapy DICOM compute core" in text
    assert all(name in text for name in _COMMAND_HELP)
    assert "answer DRR and DVH requests over HTTP" in text


def test_unknown_command_lists_every_command(capsys) -> None:
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and "reslice" in err and "receive" in err


def test_reslice_does_not_import_the_network_stack() -> None:
    code = ("import sys; from rtforge.cli import build_parser; build_parser('reslice'); "
            "print(sorted(m for m in sys.modules if m.startswith(('rtforge.net', 'pynetdicom'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["rtforge.core", "rtforge.io", "rtforge.net", "rtforge.workflows"])
def test_lazy_exports_resolve_to_their_definitions(package) -> None:
    # In a fresh interpreter: import every submodule first, so that a name that is also
    # a submodule's name (rtforge.core.reslice) would be shadowed if it were not bound.
    code = f"""
import importlib, pkgutil
pkg = importlib.import_module({package!r})
for info in pkgutil.iter_modules(pkg.__path__):
    importlib.import_module(f"{package}.{{info.name}}")
bad = []
for name in pkg.__all__:
    value = getattr(pkg, name)
    module = importlib.import_module(f"{package}." + pkg._EXPORTS[name]) if name in pkg._EXPORTS \\
        else None
    if module is not None and getattr(module, name) is not value:
        bad.append(name)
print(bad, sorted(set(pkg.__all__) - set(dir(pkg))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"


def test_unknown_lazy_name_is_an_attribute_error() -> None:
    import rtforge.core

    with pytest.raises(AttributeError, match="no_such_name"):
        rtforge.core.no_such_name  # noqa: B018


def test_rtforge_and_the_batch_parent_load_neither_numpy_nor_numba() -> None:
    # The batch's parent only discovers and schedules: Numba is its workers' (0.13 s of
    # start), and a bare "import rtforge" loads no NumPy (the worker server sets NumPy's
    # threads before it loads).
    code = ("import sys, rtforge; bare = 'numpy' in sys.modules; import rtforge.workflows.batch; "
            "print(bare, 'numba' in sys.modules, rtforge.Grid.__module__, "
            "'Grid' in dir(rtforge))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "rtforge.core.geometry", "True"]


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("4", "4")])
def test_the_command_gives_openblas_one_thread_unless_the_user_chose(given, expected) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    code = ("import os, sys; from rtforge.cli import main; main(['validate', '--help']); "
            "print(os.environ['OPENBLAS_NUM_THREADS'], file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stderr.strip().splitlines()[-1] == expected


def test_a_reader_that_stops_early_is_not_a_failure(tmp_path) -> None:
    """``rtforge ... | head``: the closed pipe ends the command quietly, exit 0."""
    import os

    (tmp_path / "a.dcm").write_bytes(b"not dicom")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first line is written
    proc = subprocess.run([sys.executable, "-m", "rtforge", "validate", str(tmp_path / "a.dcm")],
                          stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_an_error_line_names_the_command_and_its_action(tmp_path, capsys) -> None:
    assert main(["dose", "info", str(tmp_path / "none.dcm")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rtforge dose info: ") and err.count("\n") == 1


def _stderr_on_a_terminal(command: list[str]) -> str:
    """Run ``command`` with stderr on a pseudo-terminal (as a person at a shell); its stderr."""
    import os
    import pty

    controller, terminal = pty.openpty()
    proc = subprocess.run(command, env=dict(os.environ), stdout=subprocess.DEVNULL,
                          stderr=terminal, timeout=300)
    os.close(terminal)
    chunks = []
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO: the terminal's other end is closed and drained
            break
        if not data:
            break
        chunks.append(data)
    os.close(controller)
    assert proc.returncode == 1
    return b"".join(chunks).decode()


def test_first_compile_is_announced_once(tmp_path, monkeypatch) -> None:
    """An empty Numba cache: a kernel command says it compiles (on a terminal); filled: not."""
    from pathlib import Path

    import rtforge.core as core_package
    from rtforge.core._kernel_cache import KERNEL_MODULES, cache_folder

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    command = [sys.executable, "-m", "rtforge", "dose", "info", str(tmp_path / "none.dcm")]
    assert _stderr_on_a_terminal(command).startswith("rtforge: compiling the Numba kernels once")
    assert "compiling" not in _stderr_on_a_terminal(command + ["-q"])
    piped = subprocess.run(command, capture_output=True, text=True)  # a script's log: quiet
    assert "compiling" not in piped.stderr and piped.stderr.count("\n") == 1
    core = Path(core_package.__file__).parent
    for name in KERNEL_MODULES:  # what Numba leaves after compiling, where it looks
        folder = cache_folder(core / f"{name}.py")
        assert folder.is_relative_to(tmp_path / "numba")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.kernel-10.py311.nbi").write_bytes(b"")
    later = _stderr_on_a_terminal(command)
    assert "compiling" not in later and "none.dcm" in later


@pytest.mark.slow  # compiles every kernel where the cache is cold (a minute)
def test_warmup_leaves_every_kernel_cached(capsys) -> None:
    from rtforge.core._kernel_cache import kernels_cached

    assert main(["warmup"]) == 0
    assert "kernels compiled and cached" in capsys.readouterr().out
    assert kernels_cached()


def test_demo_refuses_a_folder_that_is_not_empty(tmp_path, capsys) -> None:
    (tmp_path / "mine.txt").write_text("not the demo's")
    assert main(["demo", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"rtforge demo: {tmp_path}: is not an empty folder") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_pydicom_notes_on_reading_stay_off_the_terminal() -> None:
    """SC_rgb_jpeg.dcm says explicit VR but is implicit: pydicom warns (a Python warning and
    a log line); the command prints only its one line."""
    path = pydicom_file("SC_rgb_jpeg.dcm")
    proc = subprocess.run([sys.executable, "-m", "rtforge", "plan", "info", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("rtforge plan info: ") and proc.stderr.count("\n") == 1
    assert "not an RT Plan but Secondary Capture Image Storage" in proc.stderr


def test_the_program_exits_with_mains_status_and_all_its_output(tmp_path) -> None:
    """``rtforge`` ends without the interpreter's teardown (cli.run): the status is main's and
    every byte written reaches a pipe, however long the output."""
    import json

    rtdose = pydicom_file("rtdose.dcm")
    ok = subprocess.run([sys.executable, "-m", "rtforge", "dose", "info", "--json", str(rtdose)],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["bits"] == 32
    files = [str(rtdose)] * 150  # a long report: beyond one pipe buffer (64 KiB)
    many = subprocess.run([sys.executable, "-m", "rtforge", "validate", "--json", *files],
                          capture_output=True, text=True)
    assert len(many.stdout) > 65536 and len(json.loads(many.stdout)["files"]) == 150
    bad = subprocess.run([sys.executable, "-m", "rtforge", "dose", "info", str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("rtforge dose info: ")
    usage = subprocess.run([sys.executable, "-m", "rtforge", "no-such-command"],
                           capture_output=True, text=True)
    assert usage.returncode == 2
