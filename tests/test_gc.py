"""rtforge._gc: no collections during start-up work; freezing only in the command's process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"

_PAUSED = """
import gc
from rtforge import _gc

before = gc.get_freeze_count()
with _gc.paused():
    during = gc.isenabled()
    made = [[] for _ in range(1000)]
library = gc.get_freeze_count() - before  # a library caller's process: nothing frozen
_gc.freeze_after_pauses()  # as the command line does
with _gc.paused():
    kept = [[] for _ in range(1000)]
frozen = gc.get_freeze_count() - before
gc.disable()
with _gc.paused():
    pass
print(during, library, frozen >= 1000, gc.isenabled())
"""


def test_paused_restores_the_collector_and_freezes_only_when_the_command_says() -> None:
    proc = subprocess.run([sys.executable, "-c", _PAUSED], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    # paused meanwhile; nothing frozen for a library caller; frozen for the command line;
    # a collector the caller had disabled stays disabled.
    assert proc.stdout.split() == ["False", "0", "True", "False"]


_COMMAND = """
import atexit, gc, importlib, importlib.util, sys

def report():
    import pydicom.data.download as download
    print("requests" in sys.modules, "tqdm" in sys.modules, download.HAVE_REQUESTS,
          gc.get_freeze_count() > 10000)
    for name in ("requests", "tqdm"):  # still importable by everything else
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    print("imported", flush=True)

atexit.register(report)
sys.argv = ["rtforge", "plan", "info", sys.argv[1]]
from rtforge.cli import run
run()
"""


def test_the_program_starts_without_pydicoms_downloader_extras_and_freezes_its_start() -> None:
    # cli.plan imports pydicom when it loads: the import without the extras comes first.
    plan = DATA / "dicompyler-example" / "rtplan.dcm"
    proc = subprocess.run([sys.executable, "-c", _COMMAND, str(plan)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-2].split() == ["False", "False", "False", "True"]
    assert lines[-1] == "imported"


def test_main_called_in_process_freezes_nothing() -> None:
    # An embedding program (or this test session) calls main(): its garbage stays collectable.
    code = ("import gc, sys; from rtforge.cli import main; "
            "main(['plan', 'info', sys.argv[1]]); print(gc.get_freeze_count())")
    proc = subprocess.run([sys.executable, "-c", code,
                           str(DATA / "dicompyler-example" / "rtplan.dcm")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "0"


_LATER_CALLS = """
import gc
import numpy as np
from rtforge import _gc
from rtforge.core.phantom import oblique_stack
from rtforge.core.reslice import default_output_grid, reslice

_gc.freeze_after_pauses()  # as the program's process
stack = oblique_stack(size=8, spacing=1.0, nslices=4, slice_spacing=1.0)
grid = default_output_grid(stack)
reslice(np.zeros(stack.shape, np.int16), stack, grid)  # the first call: loads, may freeze
frozen = gc.get_freeze_count()
for _ in range(3):  # later calls (a long batch) never freeze what exists then
    garbage = [[]]
    garbage[0].append(garbage)  # a cycle that only the collector can free
    del garbage
    reslice(np.zeros(stack.shape, np.int16), stack, grid)
print(gc.get_freeze_count() == frozen, gc.collect() >= 3)
"""


def test_only_the_first_kernel_load_pauses_and_freezes() -> None:
    # Freezing at every call would keep the garbage cycles of a long batch forever.
    proc = subprocess.run([sys.executable, "-c", _LATER_CALLS], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]
