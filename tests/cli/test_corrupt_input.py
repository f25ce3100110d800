"""Every reader that copies or rewrites objects rejects damaged ones (issue 14 item 6).

Each damage is made from a good file of the small RT set, and played against
``deid``, ``relink`` (the command fails, one line, nothing in OUT), ``media
import`` and ``store import`` (the file is named on stderr and neither copied
nor catalogued; exit status 1).  A full disk during ``deid`` (a 2 MiB tmpfs)
leaves OUT empty.
"""

from __future__ import annotations

import copy
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread

from rtforge.cli import main
from tests.cli.test_archive_cli import config  # noqa: F401  (config: a fixture)
from tests.io.test_references import make_rt_set, write_set

Damage = Callable[[Path], None]
pytestmark = pytest.mark.usefixtures("config")  # an empty configuration: the user's never leaks in


def _edit(path: Path, change: Callable[[Dataset], None]) -> None:
    ds = dcmread(path)
    change(ds)
    ds.save_as(path)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-3])  # inside the Pixel Data value


def _short_pixels(path: Path) -> None:
    _edit(path, lambda ds: setattr(ds, "PixelData", ds.PixelData[:6]))  # 2x2x16 bits: 8 bytes


def _nan_position(path: Path) -> None:
    _edit(path, lambda ds: setattr(ds, "ImagePositionPatient", ["nan", "0", "0"]))


def _contour(**values: object) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        def change(ds: Dataset) -> None:
            contour = ds.ROIContourSequence[0].ContourSequence[0]
            for keyword, value in values.items():
                setattr(contour, keyword, value)
        _edit(path, change)
    return damage


#: name -> (modality of the victim, damage, what the one line says)
DAMAGES: dict[str, tuple[str, Damage, str]] = {
    "truncated": ("CT", _truncate, "truncated"),
    "short-pixel-data": ("CT", _short_pixels, "truncated Pixel Data: 6 bytes"),
    "nan-position": ("CT", _nan_position, "ImagePositionPatient: must be 3 finite numbers"),
    "contour-count": ("RTSTRUCT", _contour(NumberOfContourPoints=5),
                      "Number of Contour Points says 5, Contour Data holds 3"),
    "closed-1-point": ("RTSTRUCT", _contour(ContourData=[0, 0, 0], NumberOfContourPoints=1),
                       "CLOSED_PLANAR contour needs at least 3 point(s), got 1"),
    "closed-0-points": ("RTSTRUCT", _contour(ContourData=None, NumberOfContourPoints=0),
                        "CLOSED_PLANAR contour needs at least 3 point(s), got 0"),
}


def good_set() -> list[Dataset]:
    """The small RT set, its structure set with a closed planar contour."""
    objects = make_rt_set()
    contour = objects[2].ROIContourSequence[0].ContourSequence[0]
    contour.ContourGeometricType = "CLOSED_PLANAR"
    contour.ContourData = [0, 0, 0, 10, 0, 0, 10, 10, 0]
    contour.NumberOfContourPoints = 3
    return objects


@pytest.fixture(params=sorted(DAMAGES))
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path, str]:
    """(input folder, the damaged file, what the error says)."""
    modality, damage, says = DAMAGES[request.param]
    folder = tmp_path / "in"
    write_set(folder, good_set())
    victim = next(p for p in sorted(folder.rglob("*.dcm"))
                  if dcmread(p, stop_before_pixels=True).Modality == modality)
    damage(victim)
    return folder, victim, says


def _one_line(err: str, victim: Path, says: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert victim.name in lines[0] and says in lines[0], lines[0]


def _trial(tmp_path: Path) -> Path:
    trial = tmp_path / "trial.toml"
    trial.write_text('sponsor_name = "S"\nprotocol_id = "P"\nsubject_id = "SUBJ-1"\n')
    return trial


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
def test_deid_fails_and_writes_nothing(damaged: tuple[Path, Path, str], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder, victim, says = damaged
    out = tmp_path / "out"
    assert main(["deid", str(folder), str(out), "--trial", str(_trial(tmp_path)),
                 "--map-out", str(tmp_path / "map.csv")]) == 1
    _one_line(capsys.readouterr().err, victim, says)
    assert not out.exists() and not (tmp_path / "map.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "in", "trial.toml"]


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
def test_relink_fails_and_writes_nothing(damaged: tuple[Path, Path, str], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    folder, victim, says = damaged
    out = tmp_path / "out"
    out.mkdir()  # an existing OUT stays as it was
    assert main(["relink", str(folder), str(out), "--patient-id", "NEW-1"]) == 1
    _one_line(capsys.readouterr().err, victim, says)
    assert list(out.iterdir()) == []


def _catalogued(catalog: Path) -> set[str]:
    with sqlite3.connect(catalog) as db:
        return {row[0] for row in db.execute("SELECT sop_instance_uid FROM instances")}


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
@pytest.mark.parametrize("command", ["store", "media"])
def test_import_reports_and_skips(damaged: tuple[Path, Path, str], tmp_path: Path,
                                  command: str, capsys: pytest.CaptureFixture[str]) -> None:
    folder, victim, says = damaged
    bad_uid = str(dcmread(victim, force=True, stop_before_pixels=True).SOPInstanceUID)
    store = tmp_path / "store"
    assert main([command, "import", str(folder), "--store", str(store), "-q"]) == 1
    _one_line(capsys.readouterr().err, victim, says)
    catalogued = _catalogued(store / "catalog.sqlite")
    assert bad_uid not in catalogued and len(catalogued) == len(good_set()) - 1
    if command == "media":  # copied into the store: every file but the damaged one
        assert {p.stem for p in store.rglob("*.dcm")} == catalogued


def test_missing_input_creates_nothing(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    assert main(["store", "import", str(tmp_path / "no" / "such"), "--store", str(store)]) == 1
    assert main(["media", "import", str(tmp_path / "no" / "such"), "--store", str(store)]) == 1
    assert main(["deid", str(tmp_path / "no" / "such"), str(tmp_path / "out"), "--trial",
                 str(_trial(tmp_path)), "--key-file", str(tmp_path / "site.key")]) == 1
    assert main(["relink", str(tmp_path / "no" / "such"), str(tmp_path / "out"),
                 "--patient-id", "X"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(str(tmp_path / "no" / "such") in line for line in err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "trial.toml"]


# ------------------------------------------------------------------ full disk
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only; skipped where mounting is not permitted)."""
    mount = shutil.which("mount")
    point = tmp_path / "disk"
    point.mkdir()
    if mount is None:
        pytest.skip("no mount command")
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(point)],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], capture_output=True, timeout=30)


def big_set(folder: Path) -> int:
    """The RT set with 24 CT slices of 256 x 256 (3 MiB): more than the small disk holds."""
    objects = good_set()
    ct = objects[0]
    ct.Rows = ct.Columns = 256
    ct.PixelData = np.zeros((256, 256), dtype="<i2").tobytes()
    slices = []
    for n in range(24):
        one = copy.deepcopy(ct)
        one.SOPInstanceUID = f"{ct.SOPInstanceUID}.{n + 1}"
        one.ImagePositionPatient = [0, 0, 5.0 + 2.5 * n]
        slices.append(one)
    write_set(folder, objects + slices)
    return len(objects) + len(slices)


@pytest.mark.parametrize("where", ["mount-point", "new-folder-on-it"])
def test_full_disk_during_deid_leaves_out_empty(small_disk: Path, tmp_path: Path, where: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    big_set(tmp_path / "in")
    out = small_disk if where == "mount-point" else small_disk / "out"
    assert main(["deid", str(tmp_path / "in"), str(out), "--trial",
                 str(_trial(tmp_path))]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "No space left on device" in err[0], err
    assert list(small_disk.iterdir()) == []  # nothing of the run, not even the staging folder
