"""The batch's forkserver: started ahead, stopped when a command finds no use for it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_STOP_AND_RESTART = """
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver
from rtforge.workflows._forkserver import start_forkserver, stop_forkserver

stop_forkserver()  # none running: nothing happens
start_forkserver()
first = forkserver._forkserver._forkserver_pid
stop_forkserver()  # while its preload (rtforge, the kernels) is still importing
try:
    os.kill(first, 0)
    print("still there")
except ProcessLookupError:
    print("stopped and reaped")
with ProcessPoolExecutor(1, mp_context=start_forkserver()) as pool:
    worker = pool.submit(os.getppid).result()
second = forkserver._forkserver._forkserver_pid
print(worker == second != first)
"""


def test_a_forkserver_stopped_while_importing_is_gone_and_a_new_one_serves() -> None:
    proc = subprocess.run([sys.executable, "-c", _STOP_AND_RESTART], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["stopped", "and", "reaped", "True"]


_EXIT_WHILE_IMPORTING = """
from multiprocessing import forkserver
from rtforge.workflows._forkserver import start_forkserver

start_forkserver()
print(forkserver._forkserver._forkserver_pid, flush=True)
"""


def test_a_forkserver_still_importing_does_not_outlive_the_process() -> None:
    # Left alone it would finish importing rtforge and the kernels after its parent ended.
    proc = subprocess.run([sys.executable, "-c", _EXIT_WHILE_IMPORTING], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout.split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
