"""Crash recovery of File and Restore: kill -9 anywhere, the next command reconciles."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rtforge.net.archive import file_case, restore_case
from rtforge.net.catalog import Catalog, InstanceState, file_sha256
from tests.net.archive_peers import RESTORE_AET, Archive
from tests.net.peers import LOCALHOST

PATIENT = "RTF-PHANTOM-001"
#: A pid above Linux's pid_max (2**22): no process has it.
DEAD_PID = 99999999


def _leftovers(store: Path) -> list[Path]:
    """Temporary files and folders a command leaves only when it is killed."""
    return sorted([*store.rglob("*.tmp"), *store.rglob("*.partial")])


def _assert_agree(catalog_path: Path, originals: dict[Path, bytes], when: str = "") -> None:
    """Catalog and disk agree, and no object is lost (local intact, or filed)."""
    with Catalog(catalog_path) as catalog:
        records = catalog.instances(PATIENT)
    assert len(records) == len(originals), when
    for record in records:
        if record.state is InstanceState.LOCAL:
            assert file_sha256(record.path) == record.sha256, when
            assert record.path.read_bytes() == originals[record.path], when
        else:
            assert record.state is InstanceState.FILED, (when, record)
            assert not record.path.exists(), when
    assert not _leftovers(catalog_path.parent), when


# -- recovery, played deterministically ---------------------------------------------------------

def test_filed_rows_whose_files_are_back_are_local_again(tmp_path: Path,
                                                         store: tuple[Catalog, dict]) -> None:
    """The state a restore killed on main left: rows filed, files back, a .tmp, a .restore/."""
    catalog, files = store
    records = catalog.instances(PATIENT)
    uids = [r.sop_instance_uid for r in records]
    catalog.mark_deleting(uids, folder := f"folder:{tmp_path / 'media'}")
    catalog.mark_filed(uids)
    stale_tmp = records[0].path.with_name(f".{records[0].path.name}.{DEAD_PID}.tmp")
    stale_tmp.write_bytes(b"half a file")
    live_tmp = records[0].path.with_name(f".{records[0].path.name}.{os.getpid()}.tmp")
    live_tmp.write_bytes(b"someone is writing this")
    stale_aside = catalog.path.parent / ".restore" / f"{PATIENT}-1.{DEAD_PID}.partial"
    (stale_aside / ".incoming").mkdir(parents=True)
    (stale_aside / "x.dcm").write_bytes(b"received")
    records[-1].path.unlink()  # this one was not written back
    edited = records[1].path
    edited.write_bytes(edited.read_bytes() + b"\0\0")  # other content than the filed copy

    r = records[2]  # and a copy to the folder archive was killed half-way
    media_tmp = tmp_path / "media" / PATIENT / r.study_uid / r.series_uid / \
        f".{r.sop_instance_uid}.dcm.{DEAD_PID}.tmp"
    media_tmp.parent.mkdir(parents=True)
    media_tmp.write_bytes(b"half a copy")

    report = file_case(catalog, PATIENT, tmp_path / "media")  # on main: refuses, 'filed'
    assert report.ok, report.failure
    assert report.total == len(records) - 2
    assert not stale_tmp.exists() and live_tmp.exists() and not stale_aside.exists()
    assert not media_tmp.exists()
    by_uid = {r.sop_instance_uid: r for r in catalog.instances(PATIENT)}
    # other content where a filed file was: a conflicting copy of the archive's copy, kept
    # aside and never filed (it was indexed as the instance, 'local', before)
    kept = by_uid[records[1].sop_instance_uid]
    assert (kept.state, kept.sha256) == (InstanceState.FILED, records[1].sha256)
    (aside,) = catalog.quarantined()
    assert (aside.path, aside.reason, aside.copy_archive) == (edited, "conflicting copy", folder)
    assert edited.exists()
    assert {r.archive for r in by_uid.values()} == {folder}


def test_interrupted_restore_rows_are_settled_from_the_disk(store: tuple[Catalog, dict]) -> None:
    catalog, files = store
    records = catalog.instances(PATIENT)
    uids = [r.sop_instance_uid for r in records]
    catalog.mark_deleting(uids, "ORTHANC@127.0.0.1:4242")
    catalog.mark_filed(uids)
    catalog.mark_restoring(uids)
    for record in records[3:]:
        record.path.unlink()
    assert catalog.recover() == {"filed": len(records) - 3, "local": 3}
    states = [r.state for r in catalog.instances(PATIENT)]
    assert states == [InstanceState.LOCAL] * 3 + [InstanceState.FILED] * (len(records) - 3)


# -- kill -9 of the real commands ---------------------------------------------------------------

def _config(tmp_path: Path, archive: Archive, store: Path, verify: str) -> dict[str, str]:
    config = tmp_path / "config.toml"
    config.write_text(f'[network.nodes.archive]\nae_title = "ORTHANC"\nhost = "{LOCALHOST}"\n'
                      f'port = {archive.port}\nverify = "{verify}"\n\n[archive]\n'
                      f'store = "{store}"\nrestore_ae_title = "{RESTORE_AET}"\n'
                      f'restore_port = {archive.restore_port}\n')
    return {**os.environ, "RTFORGE_CONFIG": str(config)}


def _command(name: str) -> list[str]:
    target = ["--to", "archive"] if name == "file" else []
    return [sys.executable, "-m", "rtforge", name, PATIENT, *target, "--bind", LOCALHOST, "-q"]


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool] | float) -> None:
    """SIGKILL ``proc`` once ``ready()`` (polled) or ``ready`` seconds passed, or it ended."""
    if isinstance(ready, float):
        at = time.monotonic() + ready
        ready = lambda: time.monotonic() >= at  # noqa: E731
    deadline = time.monotonic() + 60
    while proc.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.kill()
    proc.wait(10)


def _next_run(name: str, env: dict[str, str]) -> None:
    """Run the command again: it succeeds, or there is nothing left for it to do."""
    done = subprocess.run(_command(name), env=env, capture_output=True, text=True, timeout=120)
    nothing = "no local instances" if name == "file" else "no filed instances"
    assert done.returncode == 0 or (done.returncode == 1 and nothing in done.stderr), done.stderr


def _kill_points(store: Path, archive: Archive, files: dict[Path, bytes], name: str,
                 ) -> dict[str, Callable[[], bool] | float]:
    """When to kill: at a step of the module notes' order, or after a seeded delay."""
    partial = store / ".restore"
    points: dict[str, Callable[[], bool] | float] = {
        "receiving": lambda: any(partial.glob("*.partial"))}
    if name == "file":
        points["storing"] = lambda: bool(archive.rest("GET", "/statistics")[  # type: ignore[index]
            "CountInstances"])
        points["deleting"] = lambda: not all(p.exists() for p in files)
    else:
        points["writing back"] = lambda: any(p.exists() for p in files)
    for seed in (1, 2):
        points[f"seed {seed}"] = random.Random(seed).uniform(0.3, 1.5)
    return points


@pytest.mark.interop
@pytest.mark.parametrize("name", ["file", "restore"])
def test_kill_9_anywhere_then_the_next_run_reconciles(tmp_path: Path,
                                                      store: tuple[Catalog, dict],
                                                      archive: Archive, name: str) -> None:
    catalog, files = store
    root = catalog.path.parent
    env = _config(tmp_path, archive, root, "retrieve")  # retrieval: a window with .partial
    if name == "restore":
        report = file_case(catalog, PATIENT, archive.node, scp_ae_title=RESTORE_AET,
                           scp_port=archive.restore_port, scp_host=LOCALHOST)
        assert report.ok, report.failure
    for point, ready in _kill_points(root, archive, files, name).items():
        proc = subprocess.Popen(_command(name), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        _kill_when(proc, ready)
        _next_run(name, env)
        _assert_agree(catalog.path, files, f"killed {name} at {point}")
        if name == "file":  # back to the start: everything local
            assert restore_case(catalog, PATIENT, scp_ae_title=RESTORE_AET,
                                scp_port=archive.restore_port, scp_host=LOCALHOST).ok
        else:
            assert file_case(catalog, PATIENT, archive.node, scp_ae_title=RESTORE_AET,
                             scp_port=archive.restore_port, scp_host=LOCALHOST).ok
    _assert_agree(catalog.path, files)
