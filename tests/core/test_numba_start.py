"""Numba's start without the optional imports rtforge's kernels never need."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

_IMPORT = """
import importlib, importlib.util, sys
from rtforge.core import reslice  # the first import of Numba
import numba
print("colorama" in sys.modules, "yaml" in sys.modules, numba.config.NUMBA_NUM_THREADS)
for name in ("colorama", "yaml"):  # still importable by everything else
    if importlib.util.find_spec(name) is not None:
        importlib.import_module(name)
print("imported")
"""


def _run(cwd: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    proc = subprocess.run([sys.executable, "-c", _IMPORT], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_numba_starts_without_colorama_and_yaml(tmp_path: Path) -> None:
    words = _run(tmp_path)
    assert words[:2] == ["False", "False"] and words[-1] == "imported"


def test_a_numba_config_file_in_the_working_folder_is_still_read(tmp_path: Path) -> None:
    if importlib.util.find_spec("yaml") is None:
        pytest.skip("PyYAML is not installed: Numba cannot read its configuration file")
    (tmp_path / ".numba_config.yaml").write_text("num_threads: 1\n")
    words = _run(tmp_path)
    assert words[1] == "True" and words[2] == "1"
