"""``rtforge batch --scheduler``: the local batch's per-series step on Dask distributed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from rtforge.cli import main
from rtforge.config import DaskConfig, load_config
from rtforge.errors import InvalidInputError
from rtforge.workflows.batch import MANIFEST_NAME, run_batch
from rtforge.workflows.demo import make_phantom_patient
from rtforge.workflows.distributed import parse_scheduler
from tests.net.peers import free_port

distributed = pytest.importorskip("distributed")

#: Dask's default dashboard port, which a run must not open unless asked.
DASHBOARD_PORT = 8787
#: Seconds any one command of these tests may take before it counts as hung.
HUNG = 120


def _series(out: Path) -> dict[str, list[pydicom.Dataset]]:
    """Every finished output series, keyed by its folder relative to ``out``."""
    found = {}
    for folder in sorted(p for p in out.glob("*/*/*") if p.is_dir()):
        assert not folder.name.startswith("."), f"partial series left: {folder}"
        datasets = [pydicom.dcmread(f) for f in folder.glob("*.dcm")]
        found[str(folder.relative_to(out))] = sorted(datasets, key=lambda ds: int(ds.InstanceNumber))
    return found


def _check_complete(out: Path, expected: int) -> None:
    series = _series(out)
    assert len(series) == expected
    for name, datasets in series.items():
        numbers = [int(ds.InstanceNumber) for ds in datasets]
        assert numbers == list(range(1, len(datasets) + 1)), name  # complete, no duplicates
    uids = [json.loads(x)["output_series_uid"]
            for x in (out / MANIFEST_NAME).read_text().splitlines()]
    assert len(uids) == len(set(uids)) == expected


def _assert_same_output(expected_root: Path, got_root: Path) -> None:
    """The same series, instances, geometry and pixels under both roots."""
    expected, got = _series(expected_root), _series(got_root)
    assert got.keys() == expected.keys()
    for name in expected:
        for a, b in zip(expected[name], got[name], strict=True):
            assert a.SOPInstanceUID == b.SOPInstanceUID
            for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                            "SliceThickness", "Rows", "Columns"):
                assert a[keyword].value == b[keyword].value, (name, keyword)
            np.testing.assert_array_equal(a.pixel_array, b.pixel_array)


@pytest.fixture(scope="module")
def four_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two phantom patients: four series (oblique and tilted), small."""
    src = tmp_path_factory.mktemp("four") / "src"
    make_phantom_patient(src / "a", size=48, nslices=12)
    make_phantom_patient(src / "b", size=48, nslices=12)
    return src


@pytest.mark.parametrize("text, expected", [("local:2", 2), ("tcp://127.0.0.1:8786",
                                                              "tcp://127.0.0.1:8786")])
def test_parse_scheduler(text: str, expected: str | int) -> None:
    assert parse_scheduler(text) == expected


@pytest.mark.parametrize("text", ["local:0", "local:x", "127.0.0.1:8786", "tcp://host", ""])
def test_parse_scheduler_rejects(text: str) -> None:
    with pytest.raises(InvalidInputError, match="--scheduler"):
        parse_scheduler(text)


def test_bad_scheduler_fails_before_touching_anything(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="--scheduler"):
        run_batch(tmp_path / "nowhere", tmp_path / "out", scheduler="tcp:/oops")
    assert not (tmp_path / "out").exists()


def test_cli_bad_scheduler_is_usage_error(four_series: Path, tmp_path: Path, capsys) -> None:
    assert main(["batch", str(four_series), str(tmp_path / "out"), "--scheduler", "local:0"]) == 2
    assert "--scheduler" in capsys.readouterr().err


def test_local_cluster_equals_local_batch(four_series: Path, tmp_path: Path, capsys) -> None:
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert main(["batch", str(four_series), str(local), "-q", "--no-fsync"]) == 0
    capsys.readouterr()
    assert main(["batch", str(four_series), str(dask), "--scheduler", "local:2", "--json",
                 "--no-fsync"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["done"]) == 4 and not report["failed"]
    _check_complete(dask, 4)
    _assert_same_output(local, dask)
    # A re-run on Dask finds everything done.
    assert main(["batch", str(four_series), str(dask), "--scheduler", "local:2", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert len(again["skipped"]) == 4 and not again["done"]


def test_worker_killed_mid_series_is_redone(tmp_path: Path) -> None:
    """SIGKILL a worker while it writes a series: the series is redone, and a re-run
    completes the job with nothing duplicated and no partial series."""
    src, out = tmp_path / "src", tmp_path / "out"
    make_phantom_patient(src / "a", size=128, nslices=32)
    make_phantom_patient(src / "b", size=128, nslices=32)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        pids = set(client.run(os.getpid).values())
        outcome: dict = {}
        slices: list[int] = []
        series: list[tuple[int, int]] = []
        runner = threading.Thread(target=lambda: outcome.update(result=run_batch(
            src, out, scheduler=cluster.scheduler_address, on_slices=slices.append,
            on_series=lambda done, total: series.append((done, total)))))
        runner.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and runner.is_alive():
            if any(any(p.glob("*.dcm")) for p in out.glob("*/*/.partial-*")):
                break
            time.sleep(0.005)
        assert runner.is_alive(), "the batch finished before a worker could be killed"
        os.kill(sorted(pids)[0], signal.SIGKILL)
        runner.join(timeout=180)
        assert not runner.is_alive()
    result = outcome["result"]
    assert series[-1] == (4, 4) and sum(slices) > 0  # progress from the workers
    assert len(result.done) + len(result.failed) == 4
    # Whatever the first run managed, a re-run finishes it.
    rerun = run_batch(src, out)
    assert not rerun.failed
    assert len(rerun.done) == len(result.failed)
    _check_complete(out, 4)


# ------------------------------------------------- a real scheduler and workers
def _dask(*args: str, cwd: Path) -> subprocess.Popen:
    """``dask ARGS`` (the scheduler or a worker) as a process of this interpreter."""
    return subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _wait_for_workers(address: str, n: int) -> None:
    with distributed.Client(address, timeout=30, set_as_default=False) as client:
        client.wait_for_workers(n, timeout=HUNG)


@pytest.fixture
def scheduler_process(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``dask scheduler`` on a free loopback port (no dashboard): its address and process."""
    port = free_port()
    proc = _dask("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                 "--dashboard-address", "127.0.0.1:0", cwd=tmp_path)
    try:
        deadline = time.monotonic() + HUNG
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "no scheduler"
                time.sleep(0.1)
        yield f"tcp://127.0.0.1:{port}", proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def scheduler(scheduler_process: tuple[str, subprocess.Popen]) -> str:
    """The address of ``scheduler_process``."""
    return scheduler_process[0]


@pytest.fixture
def start_worker(scheduler: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start a ``dask worker`` (one thread, no nanny) of ``scheduler``, working in its own
    folder, and wait until the scheduler has it; all are killed at the end."""
    procs: list[subprocess.Popen] = []
    cwd = tmp_path / "worker"
    cwd.mkdir()

    def start(*extra: str) -> subprocess.Popen:
        proc = _dask("worker", scheduler, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                     "--host", "127.0.0.1", *extra, cwd=cwd)
        procs.append(proc)
        _wait_for_workers(scheduler, 1)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
    assert not any(cwd.iterdir()), "a worker wrote into its own working folder"


def _batch(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rtforge", "batch", *args, "--no-fsync"],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def local_output(phantom_root: Path, tmp_path: Path) -> Path:
    """The phantom archive reconverted by a local batch: what every Dask run must equal."""
    out = tmp_path / "local"
    assert main(["batch", str(phantom_root), str(out), "-q", "--workers", "1", "--no-fsync"]) == 0
    return out


def _run_one_series_in(scheduler: str, start_worker, src: Path, out: Path) -> tuple[
        subprocess.Popen, subprocess.Popen]:
    """Start a worker that holds every series after the first, run the batch with
    ``--worker-timeout 5``, and return (run, worker) once the first series is written
    and in the run's manifest."""
    worker = start_worker("--preload", str(Path(__file__).with_name("dask_gate.py")))
    run = _batch(str(src), str(out), "--scheduler", scheduler, "--worker-timeout", "5")
    manifest = out / MANIFEST_NAME
    deadline = time.monotonic() + HUNG
    while not (manifest.exists() and manifest.read_text().count("\n") == 1):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.01)
    return run, worker


def _kill_then_one_line(victim: subprocess.Popen, run: subprocess.Popen, what: str) -> None:
    """SIGKILL ``victim``: ``run`` (5 s worker timeout) ends with exit 1 and one line, saying
    ``what`` and that one series of two is done."""
    os.kill(victim.pid, signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=5 + HUNG)
    assert run.returncode == 1, (stdout, stderr)
    assert stderr.splitlines() == [
        f"rtforge batch: {what}: 1 series done, 1 left; run the same command again to resume"]


def test_last_worker_killed_run_ends_then_resumes(scheduler: str, start_worker,
                                                  phantom_root: Path, local_output: Path,
                                                  tmp_path: Path, capsys) -> None:
    """SIGKILL the only worker once the first series is in: the run ends after
    --worker-timeout with one line naming the scheduler and the series done and left;
    a re-run with a new worker finishes, equal to a local batch, nothing duplicated."""
    out = tmp_path / "out"
    run, worker = _run_one_series_in(scheduler, start_worker, phantom_root, out)
    _kill_then_one_line(worker, run, f"no live Dask worker at {scheduler} for 5 s")
    start_worker()
    assert main(["batch", str(phantom_root), str(out), "--scheduler", scheduler, "--json",
                 "--no-fsync"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["skipped"]) == 1 and len(report["done"]) == 1 and not report["failed"]
    _check_complete(out, 2)
    _assert_same_output(local_output, out)


def test_lost_scheduler_ends_the_run(scheduler_process: tuple[str, subprocess.Popen],
                                     start_worker, phantom_root: Path, tmp_path: Path) -> None:
    """SIGKILL the scheduler mid-run: one line naming it and the series done and left."""
    scheduler, process = scheduler_process
    run, _ = _run_one_series_in(scheduler, start_worker, phantom_root, tmp_path / "out")
    _kill_then_one_line(process, run, f"lost the Dask scheduler at {scheduler}")
    assert process.poll() is not None  # the scheduler is gone; the finished series stays
    _check_complete(tmp_path / "out", 1)


def test_relative_paths_reach_remote_workers(scheduler: str, start_worker, phantom_root: Path,
                                             local_output: Path, tmp_path: Path) -> None:
    """SRC_ROOT and OUT_ROOT relative to the command's folder; the worker works elsewhere."""
    start_worker()
    here = tmp_path / "client"
    here.mkdir()
    run = _batch(os.path.relpath(phantom_root, here), "out", "--scheduler", scheduler, "-q",
                 "--json", cwd=here)
    stdout, stderr = run.communicate(timeout=HUNG)
    assert run.returncode == 0, stderr
    report = json.loads(stdout)
    assert len(report["done"]) == 2 and not report["failed"]
    _check_complete(here / "out", 2)
    _assert_same_output(local_output, here / "out")


def _listening(port: int) -> set[str]:
    """Inodes of the sockets listening on ``port`` (any address, IPv4 or IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as fh:
            for row in list(fh)[1:]:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    found.add(fields[9])
    return found


def test_local_cluster_is_quiet_and_opens_no_dashboard(phantom_root: Path,
                                                       tmp_path: Path) -> None:
    """``local:2 -q --json``: only the JSON report on stdout, nothing on stderr, and
    nothing listens on Dask's dashboard port while it runs."""
    before = _listening(DASHBOARD_PORT)  # someone else's, if any
    run = _batch(str(phantom_root), str(tmp_path / "out"), "--scheduler", "local:2", "-q",
                 "--json")
    opened: set[str] = set()
    deadline = time.monotonic() + HUNG
    while run.poll() is None and time.monotonic() < deadline:
        opened |= _listening(DASHBOARD_PORT) - before
        time.sleep(0.05)
    stdout, stderr = run.communicate(timeout=HUNG)
    assert run.returncode == 0, stderr
    assert stderr == ""
    assert len(json.loads(stdout)["done"]) == 2
    assert not opened, f"something listened on {DASHBOARD_PORT} during the run"


def test_local_cluster_dashboard_when_asked(phantom_root: Path, tmp_path: Path) -> None:
    port = free_port()
    seen: list[bool] = []

    def probe(done: int, total: int) -> None:  # called while the cluster runs
        with socket.socket() as sock:
            seen.append(sock.connect_ex(("127.0.0.1", port)) == 0)

    result = run_batch(phantom_root, tmp_path / "out", scheduler="local:1",
                       dask=DaskConfig(dashboard=f"127.0.0.1:{port}"), on_series=probe)
    assert len(result.done) == 2 and seen == [True, True]


@pytest.fixture(params=["refused", "silent", "not-dask"])
def dead_end(request: pytest.FixtureRequest) -> Iterator[str]:
    """An address where no Dask scheduler answers: nothing listens; a listener that never
    answers; a peer that answers HTTP."""
    if request.param == "refused":
        yield f"tcp://127.0.0.1:{free_port()}"
        return
    with socket.create_server(("127.0.0.1", 0)) as server:
        stop = threading.Event()

        def answer_http() -> None:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        thread = threading.Thread(target=answer_http, daemon=True)
        if request.param == "not-dask":
            thread.start()
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
        stop.set()
        if thread.is_alive():
            thread.join()


def test_unreachable_scheduler_fails_within_the_connect_timeout(dead_end: str,
                                                                phantom_root: Path,
                                                                tmp_path: Path) -> None:
    config = tmp_path / "rtforge.toml"
    config.write_text("[dask]\nconnect_timeout = 2\n")
    run = _batch(str(phantom_root), str(tmp_path / "out"), "--scheduler", dead_end, "--config",
                 str(config), "-q")
    stdout, stderr = run.communicate(timeout=HUNG)
    assert run.returncode == 1
    assert stdout == ""
    [line] = stderr.splitlines()
    assert line.startswith(f"rtforge batch: cannot reach the Dask scheduler at {dead_end}: ")


def test_tls_scheduler_without_dask_tls_settings(phantom_root: Path, tmp_path: Path,
                                                 capsys) -> None:
    assert main(["batch", str(phantom_root), str(tmp_path / "out"), "--scheduler",
                 f"tls://127.0.0.1:{free_port()}", "-q"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "tls:// needs Dask's TLS settings" in line


def test_dask_config_section(tmp_path: Path) -> None:
    path = tmp_path / "rtforge.toml"
    path.write_text('[dask]\nworker_timeout = 5\nconnect_timeout = 2.5\n'
                    'dashboard = "127.0.0.1:8788"\n')
    assert load_config(path).dask == DaskConfig(worker_timeout=5.0, connect_timeout=2.5,
                                                dashboard="127.0.0.1:8788")
    assert DaskConfig() == DaskConfig(worker_timeout=60, connect_timeout=30, dashboard="")
    for bad in ("worker_timeout = 0", "connect_timeout = -1", "worker_timeout = true",
                'dashboard = "http://x"', "retries = 3"):
        path.write_text(f"[dask]\n{bad}\n")
        with pytest.raises(InvalidInputError, match="dask|timeout|dashboard"):
            load_config(path)
