"""The DRR/DVH service API: a study loaded once answers many requests."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset

from rtforge.core.beam import BeamGeometry
from rtforge.core.contours import Contour, Structure
from rtforge.core.drr import compute_drr
from rtforge.core.geometry import Grid, Volume
from rtforge.errors import InvalidInputError
from rtforge.io.rtdose import PlanReference, build_dose_grid, write_rtdose
from rtforge.io.rtimage import DrrRequest
from rtforge.io.rtstruct import build_rtstruct, write_rtstruct
from rtforge.io.series import read_series
from rtforge.io.uids import new_uid
from rtforge.workflows.drr import drr_of_series
from rtforge.workflows.service import (
    CTStudy,
    DataRoots,
    DoseStudy,
    OutsideDataRootsError,
    PixelBudget,
    ServiceBusyError,
    StudyCache,
    StudyTooLargeError,
)

#: The dose case: a 20 x 20 mm square column over 9 planes 2.5 mm apart (the default end
#: caps, half slabs: the solid stops at the end planes, 20 mm tall, 8 cm3) in the dose
#: 10 + 0.1 x Gy (x in mm).
SIDE, PLANES, GAP = 20.0, 9, 2.5
TRUE_VOLUME_CM3 = SIDE * SIDE * (PLANES - 1) * GAP / 1000


def write_dose_case(root: Path) -> tuple[Path, Path]:
    """Write the dose case's RT Structure Set and RT Dose; return their paths."""
    frame = str(new_uid())
    reference = Dataset()
    reference.PatientName, reference.PatientID = "Service^Test", "SERVICE"
    reference.StudyInstanceUID, reference.FrameOfReferenceUID = str(new_uid()), frame
    h = SIDE / 2
    square = [Contour(np.array([[-h, -h, z], [h, -h, z], [h, h, z], [-h, h, z]]))
              for z in GAP * (np.arange(PLANES) - PLANES // 2)]
    ss = build_rtstruct([Structure(1, "Column", tuple(square))], frame_of_reference_uid=frame,
                        source=reference).dataset
    root.mkdir(parents=True, exist_ok=True)
    struct = write_rtstruct(ss, root, flat=True)
    grid = Grid((24, 24, 24), origin=(-28.75, -28.75, -28.75), spacing=(2.5, 2.5, 2.5))
    x = grid.origin[0] + 2.5 * np.arange(24)
    dose = Volume(np.broadcast_to(10.0 + 0.1 * x, grid.shape).copy(), grid)
    ds = build_dose_grid(dose, summation_type="PLAN", plans=[PlanReference(str(new_uid()))],
                         reference=ss).dataset
    return struct, write_rtdose(ds, root / "rtdose.dcm")


@pytest.fixture(scope="module")
def dose_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_dose_case(tmp_path_factory.mktemp("dose"))


def _geometries(n: int = 2) -> list[BeamGeometry]:
    return [BeamGeometry(g, (0.0, 0.0, 0.0), rows=12, columns=16, pixel_spacing=(25.0, 25.0))
            for g in np.linspace(0.0, 90.0, n)]


def test_ct_study_answers_drrs_like_compute_drr(phantom_patient) -> None:
    study = CTStudy.load(phantom_patient[0].folder)
    assert study.prepared() is study.prepared()  # converted once
    integrals = study.drrs(_geometries())
    assert integrals.shape == (2, 12, 16) and integrals.dtype == np.float32
    direct = compute_drr(read_series(phantom_patient[0].folder).to_volume(), _geometries())
    np.testing.assert_allclose(integrals, direct, rtol=1e-6)
    assert integrals.max() > 0


def test_ct_study_images_png_and_rt_image(phantom_patient) -> None:
    study = CTStudy.load(phantom_patient[1].folder)  # the tilted series
    geometries = _geometries(3)
    images = study.drr_images(geometries, method="trilinear")
    assert len(images) == 3 and images[0].pixels.dtype == np.uint16
    png = CTStudy.png(images[0])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    datasets = study.rt_images(geometries, images)
    assert [ds.Modality for ds in datasets] == ["RTIMAGE"] * 3
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert datasets[0].PatientID == study.header.PatientID


def _decoded(png: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as picture:
        return np.asarray(picture.convert("RGB"))


def test_ct_study_png_is_the_command_lines_annotated_preview(phantom_patient, tmp_path) -> None:
    """With its geometry, the service's PNG is the one ``rtforge drr --png`` writes."""
    folder = phantom_patient[1].folder  # the tilted series
    geometry = BeamGeometry(90.0, (0.0, 0.0, 0.0), couch_angle=10.0, rows=12, columns=16,
                            pixel_spacing=(25.0, 25.0))
    run = drr_of_series(folder, [DrrRequest(geometry)], tmp_path / "out",
                        fit_field_of_view=False, png_dir=tmp_path / "png")
    written = _decoded(run.images[0].png.read_bytes())  # type: ignore[union-attr]
    study = CTStudy.load(folder)
    (image,) = study.drr_images([geometry])
    served = _decoded(CTStudy.png(image, geometry))
    assert served.shape == written.shape == (384, 512, 3)  # zoomed 32 times
    np.testing.assert_array_equal(served, written)
    assert run.images[0].label == study.rt_images([geometry], [image])[0].RTImageLabel \
        == "G90 C0 T10"  # the label drawn
    raw = _decoded(CTStudy.png(image))  # without a geometry: the DRR as it is
    assert raw.shape == (12, 16, 3)
    zoomed = np.repeat(np.repeat(raw, 32, axis=0), 32, axis=1)
    assert (served != zoomed).any(axis=-1).mean() > 0.01  # letters, text, cross and scale drawn


def test_ct_study_rejects_a_non_ct(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        CTStudy.load(tmp_path)


def test_dose_study_dvh_metrics_against_closed_form(dose_case) -> None:
    struct, dose = dose_case
    study = DoseStudy.load(dose, struct)
    assert study.dvh("Column") is study.dvh(1)  # computed once, by name or number
    m = study.metrics("Column", dose_at_volume_percent=[50], volume_at_dose_gy=[10.0])
    assert m.volume_cm3 == pytest.approx(TRUE_VOLUME_CM3, rel=1e-3)
    # Dose 10 + 0.1 x over x in [-10, 10] mm: mean and median 10 Gy, half the volume >= 10 Gy.
    assert m.mean_gy == pytest.approx(10.0, abs=0.01)
    assert m.min_gy == pytest.approx(9.0, abs=0.02) and m.max_gy == pytest.approx(11.0, abs=0.02)
    assert m.dose_at_volume_gy[50] == pytest.approx(10.0, abs=0.02)
    assert m.volume_at_dose_cm3[10.0] == pytest.approx(TRUE_VOLUME_CM3 / 2, rel=0.01)
    rt_dose = study.rt_dose(["Column"])
    assert rt_dose.Modality == "RTDOSE" and len(rt_dose.DVHSequence) == 1


def test_dose_study_validates(dose_case) -> None:
    study = DoseStudy.load(dose_case[1], dose_case[0])
    with pytest.raises(InvalidInputError, match="no ROI 'Heart'.*1 'Column'"):
        study.dvh("Heart")
    with pytest.raises(InvalidInputError, match="percentages"):
        study.metrics(1, dose_at_volume_percent=[120])
    with pytest.raises(InvalidInputError, match="doses"):
        study.metrics(1, volume_at_dose_gy=[-1])


def test_study_cache_is_bounded_and_reuses(phantom_patient, dose_case) -> None:
    with pytest.raises(InvalidInputError):
        StudyCache(0)
    cache = StudyCache(max_studies=2)
    first = cache.ct(phantom_patient[0].folder)
    assert cache.ct(phantom_patient[0].folder) is first
    cache.dose(dose_case[1], dose_case[0])
    cache.ct(phantom_patient[1].folder)  # evicts the least recently used: the first CT
    assert len(cache) == 2
    assert cache.ct(phantom_patient[0].folder) is not first


def test_study_cache_is_bounded_in_bytes(phantom_patient, dose_case) -> None:
    with pytest.raises(InvalidInputError):
        StudyCache(max_bytes=0)
    one_ct = CTStudy.load(phantom_patient[0].folder).nbytes  # 16 x 64 x 64 int16: 131072
    assert one_ct == 16 * 64 * 64 * 2
    ct_files = sum(f.stat().st_size for f in phantom_patient[0].folder.iterdir())
    assert one_ct < ct_files < 2 * one_ct  # one CT's files fit, two CTs' volumes do not
    cache = StudyCache(max_studies=10, max_bytes=ct_files)
    first = cache.ct(phantom_patient[0].folder)
    cache.ct(phantom_patient[1].folder)  # two CTs exceed the bytes: the first is dropped
    assert len(cache) == 1 and cache.nbytes <= cache.max_bytes
    assert cache.ct(phantom_patient[0].folder) is not first
    dose_bytes = DoseStudy.load(dose_case[1], dose_case[0]).nbytes
    growing = StudyCache(max_bytes=dose_bytes + 2 * one_ct)  # room for HU, not for μ (float32)
    dose = growing.dose(dose_case[1], dose_case[0])
    ct = growing.ct(phantom_patient[0].folder)
    assert len(growing) == 2
    ct.prepared()  # the CT grows by its converted volume: the next request trims
    assert growing.dose(dose_case[1], dose_case[0]) is dose and len(growing) == 1
    with pytest.raises(StudyTooLargeError, match="files hold 0.2 MB, more than the study "
                                                  "cache's 0.1 MB"):
        StudyCache(max_bytes=one_ct // 2).ct(phantom_patient[0].folder)  # refused unread
    files = dose_case[0].stat().st_size + dose_case[1].stat().st_size
    assert files < dose_bytes  # uint32 pixels in the file, float64 Gy in memory
    small = StudyCache(max_bytes=files)  # the files fit, the study does not: served, not kept
    assert small.dose(dose_case[1], dose_case[0]).dvh(1).volume_cm3 > 0
    assert len(small) == 0


def test_study_cache_loads_outside_its_lock(phantom_patient, dose_case, monkeypatch) -> None:
    """While one CT loads (held until released here), a cached study answers at once and a
    second request of the loading CT waits for that one load instead of loading again."""
    cache = StudyCache(max_studies=4)
    dose = cache.dose(dose_case[1], dose_case[0])
    started, release, loads = threading.Event(), threading.Event(), []
    real_load = CTStudy.load

    def held_load(source):
        loads.append(source)
        started.set()
        release.wait(60)
        return real_load(source)

    monkeypatch.setattr(CTStudy, "load", staticmethod(held_load))
    results: list[CTStudy] = []
    loaders = [threading.Thread(target=lambda: results.append(cache.ct(phantom_patient[0].folder)))
               for _ in range(2)]
    loaders[0].start()
    assert started.wait(60)
    loaders[1].start()
    cached = threading.Thread(target=lambda: results.append(cache.dose(dose_case[1], dose_case[0])))
    cached.start()
    cached.join(60)  # a hang guard, not a measurement: on a lock held while loading it hangs
    assert not cached.is_alive() and results == [dose]
    assert not release.is_set() and loaders[0].is_alive()  # the cold load is still running
    release.set()
    for thread in loaders:
        thread.join(60)
    assert len(loads) == 1 and results[1] is results[2]


def test_pixel_budget_bounds_the_drrs_computed_at_once() -> None:
    with pytest.raises(InvalidInputError):
        PixelBudget(0)
    budget = PixelBudget(100)
    with budget.hold(60), budget.hold(40):
        assert budget.used == 100
        with pytest.raises(ServiceBusyError, match="100 pixels .* 1 more .* 100 "):
            with budget.hold(1):
                pass  # pragma: no cover - refused
    assert budget.used == 0
    with pytest.raises(RuntimeError), budget.hold(100):
        raise RuntimeError("a failed DRR")
    assert budget.used == 0  # released however the work ends


def test_data_roots_confine_paths(tmp_path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "series" / ".hidden").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.dcm").write_bytes(b"x")
    (root / "series" / "a.dcm").write_bytes(b"x")
    (root / "series" / ".hidden" / "b.dcm").write_bytes(b"x")
    (root / "series" / "link.dcm").symlink_to(outside / "secret.dcm")
    (root / "escape").symlink_to(outside)
    roots = DataRoots([root])
    assert roots.confine("series") == root.resolve() / "series"  # relative to the first root
    assert roots.confine(root / "series" / "nothing") == root.resolve() / "series" / "nothing"
    for path in (outside / "secret.dcm", outside / "nothing", root / "escape" / "secret.dcm",
                 root / "escape" / "nothing", root / ".." / "outside", "/etc", "a\x00b"):
        with pytest.raises(OutsideDataRootsError, match="^the path is outside the data roots$"):
            roots.confine(path)
    assert roots.files(roots.confine("series")) == [root / "series" / "a.dcm"]
    with pytest.raises(InvalidInputError, match="data root"):
        DataRoots([tmp_path / "nothing"])
    cache = StudyCache(data_roots=roots)
    with pytest.raises(OutsideDataRootsError):
        cache.ct(outside)


_CUDA_SIMULATOR_SCRIPT = """
import json
import numpy as np
from pydicom import Dataset
from rtforge.core.beam import BeamGeometry
from rtforge.core.geometry import Grid, Volume
from rtforge.workflows.service import CTStudy

rng = np.random.default_rng(5)
hu = rng.integers(-1000, 1500, size=(8, 8, 8)).astype(np.int16)
study = CTStudy(Volume(hu, Grid(hu.shape, origin=(-7.0, -7.0, -7.0), spacing=(2.0, 2.0, 2.0))),
                Dataset())
geos = [BeamGeometry(g, (0.0, 0.0, 0.0), rows=4, columns=4, pixel_spacing=(8.0, 8.0), sad=100,
                     sid=150) for g in (0.0, 90.0)]
cpu = study.drrs(geos)
gpu = study.drrs(geos, device="cuda")
again = study.drrs(geos, device="cuda")
print(json.dumps([float(np.abs(cpu - gpu).max()), float(cpu.max()),
                  "cuda_mu" in study.prepared().cache, bool(np.array_equal(gpu, again))]))
"""


def test_ct_study_cuda_keeps_the_volume_resident() -> None:
    """Through numba's CUDA simulator (tiny volume): the CUDA path gives the CPU's
    integrals and the study's converted volume keeps its device copy between calls."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, "-c", _CUDA_SIMULATOR_SCRIPT], capture_output=True,
                          text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    diff, peak, resident, repeatable = json.loads(proc.stdout.strip().splitlines()[-1])
    assert peak > 0 and diff <= 1e-6 * peak
    assert resident and repeatable
