"""DRRs and DVHs for other services: load a study once, answer many requests.

- :class:`CTStudy` holds a CT converted to attenuation once per
  :class:`~rtforge.core.drr.Attenuation` (on the CUDA path the converted
  volume stays resident on the device between calls, in the
  :class:`~rtforge.core.drr.AttenuationVolume`'s cache) and answers DRR
  requests for any list of beam geometries: line integrals, 16-bit images,
  PNG previews (annotated as ``rtforge drr --png`` draws them, or raw) or RT
  Image data sets.
- :class:`DoseStudy` holds a dose grid and a structure set and answers DVH
  requests for chosen ROIs (each DVH computed once), with metrics, or as a
  DVH-only RT Dose data set.
- :class:`StudyCache` keeps the most recently used studies, bounded in
  number and in bytes, keyed by their files; it loads each study once, outside
  its lock, so requests for studies already loaded never wait behind a cold
  load.  The HTTP service (:mod:`rtforge.workflows.asgi`, ``rtforge serve``) answers
  every request through one.
- :class:`PixelBudget` bounds the DRR pixels computed at once (and so their
  memory) across concurrent requests.
- :class:`DataRoots` confines the files a service reads to chosen folders
  (symbolic links resolved).

Arrays in, arrays out; the IOD builders of :mod:`rtforge.io` sit on top.
Coordinates are patient x, y, z in mm (LPS); doses in Gy, volumes in cm3.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydicom import Dataset

from rtforge.core.beam import BeamGeometry
from rtforge.core.contours import Structure
from rtforge.core.drr import (
    Attenuation,
    AttenuationVolume,
    Device,
    DrrMethod,
    PixelMapping,
    QuantizedDrr,
    compute_drr,
    prepare_volume,
    quantize,
)
from rtforge.core.dvh import DVH, compute_dvh, contour_spacing
from rtforge.core.geometry import Volume
from rtforge.core.reslice import default_output_grid, reslice
from rtforge.errors import InvalidInputError, RtforgeError
from rtforge.io.rtdose import RTDose, build_dvh_dose, read_rtdose
from rtforge.io.rtimage import build_rt_image, encode_png, image_label
from rtforge.io.rtstruct import StructureSet, read_rtstruct
from rtforge.io.series import ImageSeries, read_series
from rtforge.io.uids import new_uid

__all__ = ["CTStudy", "DataRoots", "DoseStudy", "DvhMetrics", "OutsideDataRootsError",
           "PixelBudget", "ServiceBusyError", "StudyCache", "StudyTooLargeError",
           "regular_volume"]

log = logging.getLogger(__name__)

_S = TypeVar("_S", "CTStudy", "DoseStudy")


def regular_volume(series: ImageSeries) -> Volume:
    """The series on its own grid (sheared when tilted), or resliced onto its
    axis-aligned bounding grid when its slices are unevenly spaced (one affine
    cannot hold uneven spacing).

    Parameters
    ----------
    series : ImageSeries

    Returns
    -------
    Volume
    """
    if not series.uneven_spacing:
        return series.to_volume()
    grid = default_output_grid(series.stack)
    log.info("uneven slice spacing: resliced onto a regular grid")
    return Volume(reslice(series.array, series.stack, grid), grid)


class OutsideDataRootsError(RtforgeError):
    """A path outside every data root.  The message names neither the path nor
    whether it exists."""


class DataRoots:
    """The folders a service may read from; every other path is refused.

    Parameters
    ----------
    roots : iterable of str or path-like
        Existing folders.  Symbolic links in them are resolved once, here.

    Raises
    ------
    InvalidInputError
        If there is no root, or one is not an existing folder.

    Notes
    -----
    A path is confined after every symbolic link in it is resolved, so a link
    inside a root that points outside is outside.  Relative paths are taken
    relative to the first root.
    """

    def __init__(self, roots: Iterable[str | os.PathLike]) -> None:
        resolved = []
        for root in roots:
            path = Path(root).resolve()
            if not path.is_dir():
                raise InvalidInputError("the data root is not an existing folder", path=root)
            resolved.append(path)
        if not resolved:
            raise InvalidInputError("at least one data root is needed")
        self.roots: tuple[Path, ...] = tuple(resolved)

    def __repr__(self) -> str:
        return f"DataRoots({[str(r) for r in self.roots]!r})"

    def contains(self, path: Path) -> bool:
        """Whether the resolved ``path`` lies in a root."""
        return any(path == root or path.is_relative_to(root) for root in self.roots)

    def confine(self, path: str | os.PathLike) -> Path:
        """``path`` resolved (symbolic links followed), when it lies in a root.

        Raises
        ------
        OutsideDataRootsError
            If the resolved path is outside every root, whether it exists or not.
        """
        try:
            resolved = (self.roots[0] / path).resolve()
        except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte
            raise OutsideDataRootsError("the path is outside the data roots") from None
        if not self.contains(resolved):
            raise OutsideDataRootsError("the path is outside the data roots")
        return resolved

    def files(self, folder: Path) -> list[Path]:
        """The regular files under ``folder`` (recursively) whose resolved paths
        lie in a root; hidden entries and links that lead outside are left out.

        Parameters
        ----------
        folder : Path
            A folder already confined by :meth:`confine`.
        """
        return _regular_files(folder, self.contains)


def _regular_files(folder: Path, inside: Callable[[Path], bool] | None = None) -> list[Path]:
    """The regular files under ``folder``, hidden entries left out, sorted; with
    ``inside``, only those whose resolved path it accepts."""
    kept: list[Path] = []
    for top, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            path = Path(top) / name
            if path.is_file() and (inside is None or inside(path.resolve())):
                kept.append(path)
            elif path.is_symlink():
                log.warning("left out %s: a link that leads outside the data roots", path)
    return kept


class StudyTooLargeError(RtforgeError):
    """A study whose files alone exceed the study cache's bound in bytes."""


class CTStudy:
    """A CT loaded once, answering DRR requests.

    Parameters
    ----------
    volume : Volume
        HU (int16) on a regular grid (any orientation; sheared for gantry tilt).
    header : pydicom.Dataset
        A header of the CT series: patient, study and Frame of Reference of
        the RT Images.
    """

    def __init__(self, volume: Volume, header: Dataset) -> None:
        self.volume = volume
        self.header = header
        self._prepared: dict[str, AttenuationVolume] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, source: str | os.PathLike | Sequence[str | os.PathLike]) -> CTStudy:
        """Read a CT series (a folder holding one series, or a list of its files).

        A series with unevenly spaced slices is resliced onto a regular grid.

        Raises
        ------
        InvalidInputError
            If the files are not one readable CT series.
        """
        series = read_series(source)
        if series.modality != "CT":
            raise InvalidInputError(f"the series is {series.modality}, not CT", path=source)
        return cls(regular_volume(series), series.headers[0])

    @property
    def nbytes(self) -> int:
        """Bytes held: the HU volume and every converted volume."""
        return self.volume.array.nbytes + sum(p.mu.nbytes for p in list(self._prepared.values()))

    def prepared(self, attenuation: Attenuation | None = None) -> AttenuationVolume:
        """The volume converted to μ by ``attenuation`` (once per attenuation)."""
        attenuation = attenuation or Attenuation()
        key = attenuation.describe()
        with self._lock:
            if key not in self._prepared:
                self._prepared[key] = prepare_volume(self.volume, attenuation)
            return self._prepared[key]

    def drrs(self, geometries: Sequence[BeamGeometry], *,
             method: str | DrrMethod = DrrMethod.SIDDON, device: str | Device = Device.CPU,
             attenuation: Attenuation | None = None, step_mm: float | None = None) -> np.ndarray:
        """Line integrals of one DRR per geometry.

        Parameters
        ----------
        geometries : sequence of BeamGeometry
            All of one image size.
        method, device, step_mm
            As :func:`rtforge.core.drr.compute_drr`.
        attenuation : Attenuation, optional

        Returns
        -------
        ndarray of shape (n, rows, columns), dtype float32
            ``∫μ dl`` of each pixel, ``[d, r, c]``.

        Raises
        ------
        InvalidInputError, GeometryError
            As :func:`rtforge.core.drr.compute_drr`.
        """
        return compute_drr(self.prepared(attenuation), list(geometries), method=method,
                           step_mm=step_mm, device=device)

    def drr_images(self, geometries: Sequence[BeamGeometry], *,
                   mapping: str | PixelMapping = PixelMapping.LOG, invert: bool = False,
                   **drr_options: object) -> list[QuantizedDrr]:
        """16-bit DRRs (:func:`rtforge.core.drr.quantize` of :meth:`drrs`)."""
        integrals = self.drrs(geometries, **drr_options)  # type: ignore[arg-type]
        return [quantize(image, mapping, invert) for image in integrals]

    @staticmethod
    def png(image: QuantizedDrr, geometry: BeamGeometry | None = None, *,
            label: str | None = None) -> bytes:
        """A PNG preview of a DRR through its VOI window (8-bit RGB).

        Parameters
        ----------
        image : QuantizedDrr
        geometry : BeamGeometry, optional
            The geometry the DRR was computed with: the preview is then the
            one ``rtforge drr --png`` writes for it, zoomed and annotated with
            the orientation letters, label, angles, isocentre cross and scale
            bar (:func:`rtforge.io.rtimage.encode_png`).  Without it, the
            image as it is (rows x columns, nothing drawn).
        label : str, optional
            The label drawn; by default the RT Image Label :meth:`rt_images`
            writes (:func:`rtforge.io.rtimage.image_label`).

        Returns
        -------
        bytes
        """
        if geometry is not None and label is None:
            label = image_label(geometry)
        return encode_png(image, geometry=geometry, label=label or "")

    def rt_images(self, geometries: Sequence[BeamGeometry], images: Sequence[QuantizedDrr],
                  *, derivation: str | None = None) -> list[Dataset]:
        """RT Image data sets of DRRs, one series (see :func:`rtforge.io.rtimage.build_rt_image`)."""
        series_uid = str(new_uid())
        return [build_rt_image(image, geometry, ct=self.header, derivation=derivation,
                               series_uid=series_uid, instance_number=n + 1)
                for n, (geometry, image) in enumerate(zip(geometries, images, strict=True))]


@dataclass(frozen=True)
class DvhMetrics:
    """Metrics of one DVH (doses in Gy, volumes in cm3).

    Parameters
    ----------
    roi_number : int
    name : str
    volume_cm3, min_gy, mean_gy, max_gy : float
    dose_at_volume_gy : dict of float to float
        ``D{v}%``: the least dose received by ``v`` percent of the volume.
    volume_at_dose_cm3 : dict of float to float
        ``V{d}Gy``: volume receiving at least ``d`` Gy.
    """

    roi_number: int
    name: str
    volume_cm3: float
    min_gy: float
    mean_gy: float
    max_gy: float
    dose_at_volume_gy: dict[float, float]
    volume_at_dose_cm3: dict[float, float]


class DoseStudy:
    """A dose grid and a structure set loaded once, answering DVH requests.

    Parameters
    ----------
    dose : RTDose
        With Pixel Data (a dose grid).
    structure_set : StructureSet

    Raises
    ------
    InvalidInputError
        If the dose has no grid, or the two are in different Frames of Reference.
    """

    def __init__(self, dose: RTDose, structure_set: StructureSet) -> None:
        if dose.volume is None:
            raise InvalidInputError("the RT Dose holds no dose grid (no Pixel Data)")
        if (structure_set.frame_of_reference_uid
                and dose.frame_of_reference_uid != structure_set.frame_of_reference_uid):
            raise InvalidInputError(
                f"the dose (Frame of Reference {dose.frame_of_reference_uid}) and the structure "
                f"set ({structure_set.frame_of_reference_uid}) are not in one Frame of Reference")
        self.dose, self.structure_set = dose, structure_set
        self._dvhs: dict[int, DVH] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, dose_path: str | os.PathLike, structure_set_path: str | os.PathLike) -> DoseStudy:
        """Read an RT Dose file and an RT Structure Set file."""
        return cls(read_rtdose(dose_path), read_rtstruct(structure_set_path))

    @property
    def nbytes(self) -> int:
        """Bytes held, estimated: the dose grid, and the contour points twice (as
        arrays and as the structure set's Contour Data text)."""
        points = sum(c.points.nbytes for s in self.structure_set.structures for c in s.contours)
        return self.dose.volume.array.nbytes + 2 * points  # type: ignore[union-attr]

    def structure(self, roi: int | str) -> Structure:
        """The structure of ROI Number ``roi`` (int) or ROI Name ``roi`` (str).

        Raises
        ------
        InvalidInputError
            If there is no such ROI; the message lists those there are.
        """
        for s in self.structure_set.structures:
            if (s.number == roi) if isinstance(roi, int) else (s.name == roi):
                return s
        known = ", ".join(f"{s.number} {s.name!r}" for s in self.structure_set.structures)
        raise InvalidInputError(f"no ROI {roi!r} in the structure set; it has {known}")

    def dvh(self, roi: int | str) -> DVH:
        """The DVH of one ROI (computed once)."""
        structure = self.structure(roi)
        with self._lock:
            if structure.number not in self._dvhs:
                # slabs of the structure set's contour spacing, not the ROI's own
                self._dvhs[structure.number] = compute_dvh(
                    self.dose.volume, structure,  # type: ignore[arg-type]
                    contour_spacing_mm=contour_spacing(self.structure_set.structures))
            return self._dvhs[structure.number]

    def metrics(self, roi: int | str, *, dose_at_volume_percent: Sequence[float] = (),
                volume_at_dose_gy: Sequence[float] = ()) -> DvhMetrics:
        """Volume, min/mean/max dose and the requested ``D{v}%`` and ``V{d}Gy`` of one ROI.

        Raises
        ------
        InvalidInputError
            If the ROI is unknown, a percentage is outside [0, 100] or a dose is negative.
        """
        for v in dose_at_volume_percent:
            if not 0 <= v <= 100:
                raise InvalidInputError(f"dose_at_volume percentages must be in [0, 100], got {v}")
        for d in volume_at_dose_gy:
            if not d >= 0:
                raise InvalidInputError(f"volume_at_dose doses must be >= 0 Gy, got {d}")
        dvh = self.dvh(roi)
        structure = self.structure(roi)
        return DvhMetrics(
            roi_number=structure.number, name=structure.name, volume_cm3=dvh.volume_cm3,
            min_gy=dvh.min_gy, mean_gy=dvh.mean_gy, max_gy=dvh.max_gy,
            dose_at_volume_gy={v: dvh.dose_at_volume(v, percent=True)
                               for v in dose_at_volume_percent},
            volume_at_dose_cm3={d: dvh.volume_at_dose(d) for d in volume_at_dose_gy})

    def rt_dose(self, rois: Sequence[int | str]) -> Dataset:
        """A DVH-only RT Dose data set of the ROIs (:func:`rtforge.io.rtdose.build_dvh_dose`),
        with the dose grid's summation type, dose type and plan references."""
        return build_dvh_dose([self.dvh(r) for r in rois],
                              structure_set=self.structure_set.dataset,
                              summation_type=self.dose.summation_type, plans=self.dose.plans,
                              dose_type=self.dose.dose_type).dataset


class _Loading:
    """A study being loaded by one thread, awaited by the others."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.study: CTStudy | DoseStudy | None = None
        self.error: BaseException | None = None


class StudyCache:
    """The most recently used studies, bounded in number and in bytes.

    Studies are keyed by their files' resolved paths; the least recently used
    are dropped while the cache holds more than ``max_studies`` studies or
    more than ``max_bytes`` bytes (checked at each request: a CT grows by its
    converted volumes after loading).  A study whose files alone hold more
    than ``max_bytes`` is refused before it is read; one that grows beyond
    it on loading is answered but not kept.  Thread-safe: each study is loaded by one
    thread while the others asking for it wait; a load runs outside the
    cache's lock, so requests for other studies are never delayed by it.

    Parameters
    ----------
    max_studies : int
        At least 1.
    max_bytes : int, optional
        At least 1; no bound in bytes when None.
    data_roots : DataRoots, optional
        When given, every path is confined to these folders (a CT folder's
        files too) and :class:`OutsideDataRootsError` is raised for any other.

    Raises
    ------
    InvalidInputError
        If ``max_studies`` or ``max_bytes`` is less than 1.
    """

    def __init__(self, max_studies: int = 4, max_bytes: int | None = None, *,
                 data_roots: DataRoots | None = None) -> None:
        if max_studies < 1:
            raise InvalidInputError(f"max_studies must be at least 1, got {max_studies}")
        if max_bytes is not None and max_bytes < 1:
            raise InvalidInputError(f"max_bytes must be at least 1, got {max_bytes}")
        self.max_studies, self.max_bytes, self.data_roots = max_studies, max_bytes, data_roots
        self._studies: OrderedDict[tuple[str, ...], CTStudy | DoseStudy] = OrderedDict()
        self._loading: dict[tuple[str, ...], _Loading] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._studies)

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached studies (as :attr:`CTStudy.nbytes` counts them)."""
        with self._lock:
            return sum(study.nbytes for study in self._studies.values())

    def resolve(self, path: str | os.PathLike) -> Path:
        """``path`` resolved (symbolic links followed), confined to the data roots if any.

        Raises
        ------
        OutsideDataRootsError
            If there are data roots and the path lies outside them.
        """
        if self.data_roots is None:
            return Path(path).resolve()
        return self.data_roots.confine(path)

    def _get(self, key: tuple[str, ...], load: Callable[[], _S]) -> _S:
        with self._lock:
            if key in self._studies:
                self._studies.move_to_end(key)
                self._trim()  # studies grow after loading (a CT's converted volumes)
                return self._studies[key]  # type: ignore[return-value]
            loading = self._loading.get(key)
            owner = loading is None
            if loading is None:
                loading = self._loading[key] = _Loading()
        if not owner:
            loading.done.wait()
            if loading.error is not None:
                raise loading.error
            return loading.study  # type: ignore[return-value]
        log.info("study cache: loading %s", " ".join(key))
        try:
            loading.study = load()
        except BaseException as exc:
            loading.error = exc
            raise
        finally:
            with self._lock:
                del self._loading[key]
                if loading.study is not None:
                    self._keep(key, loading.study)
            loading.done.set()
        return loading.study  # type: ignore[return-value]

    def _keep(self, key: tuple[str, ...], study: CTStudy | DoseStudy) -> None:
        """Add ``study`` and drop the least recently used beyond the bounds (lock held)."""
        size = study.nbytes
        log.info("study cache: loaded %s (%.1f MB)", " ".join(key), size / 1e6)
        if self.max_bytes is not None and size > self.max_bytes:
            log.warning("study cache: %s (%.1f MB) exceeds the cache's %.1f MB: not kept",
                        " ".join(key), size / 1e6, self.max_bytes / 1e6)
            return
        self._studies[key] = study
        self._trim()

    def _trim(self) -> None:
        """Drop the least recently used beyond the bounds, never the most recent (lock held)."""
        while len(self._studies) > self.max_studies or (
                self.max_bytes is not None and len(self._studies) > 1
                and sum(s.nbytes for s in self._studies.values()) > self.max_bytes):
            dropped, _ = self._studies.popitem(last=False)
            log.info("study cache full: dropped %s", " ".join(dropped))

    def ct(self, path: str | os.PathLike) -> CTStudy:
        """The CT study of the series at ``path``, loaded on first use.

        Raises
        ------
        OutsideDataRootsError
            If ``path`` is outside the data roots.
        StudyTooLargeError
            If the series' files hold more than ``max_bytes``.
        InvalidInputError
            If the files are not one readable CT series.
        """
        resolved = self.resolve(path)

        def load() -> CTStudy:
            if not resolved.is_dir():
                self._check_size([resolved])
                return CTStudy.load(resolved)
            files = _regular_files(
                resolved, None if self.data_roots is None else self.data_roots.contains)
            if not files:
                raise InvalidInputError("folder holds no files", path=resolved)
            self._check_size(files)
            return CTStudy.load(files)

        return self._get(("ct", str(resolved)), load)

    def dose(self, dose_path: str | os.PathLike,
             structure_set_path: str | os.PathLike) -> DoseStudy:
        """The dose study of an RT Dose and an RT Structure Set, loaded on first use.

        Raises
        ------
        OutsideDataRootsError
            If either path is outside the data roots.
        StudyTooLargeError
            If the two files hold more than ``max_bytes``.
        InvalidInputError
            If the files are not an RT Dose with a grid and an RT Structure Set
            of one Frame of Reference.
        """
        d, s = self.resolve(dose_path), self.resolve(structure_set_path)

        def load() -> DoseStudy:
            self._check_size([d, s])
            return DoseStudy.load(d, s)

        return self._get(("dose", str(d), str(s)), load)

    def _check_size(self, files: Sequence[Path]) -> None:
        """Refuse, before reading them, files that alone hold more than the bound."""
        size = sum(f.stat().st_size for f in files)
        if self.max_bytes is not None and size > self.max_bytes:
            raise StudyTooLargeError(
                f"the study's files hold {size / 1e6:.1f} MB, more than the study cache's "
                f"{self.max_bytes / 1e6:.1f} MB")


class ServiceBusyError(RtforgeError):
    """The work asked for does not fit beside the work in progress now; retry later."""


class PixelBudget:
    """DRR pixels being computed at once, across threads, at most ``limit``.

    Each DRR request holds its pixels (rows x columns summed over its
    geometries) while it computes; one that does not fit beside those in
    progress is refused at once (no thread waits), so the memory of
    concurrent DRRs stays bounded by the budget of one request.

    Parameters
    ----------
    limit : int
        At least 1.

    Raises
    ------
    InvalidInputError
        If ``limit`` is less than 1.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise InvalidInputError(f"the pixel budget must be at least 1, got {limit}")
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        """Pixels held now."""
        return self._used

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` of the budget for the ``with`` block.

        Raises
        ------
        ServiceBusyError
            If they do not fit beside the pixels held now.
        """
        with self._lock:
            if self._used + pixels > self.limit:
                raise ServiceBusyError(
                    f"{self._used} pixels of DRRs are being computed; {pixels} more would "
                    f"exceed the {self.limit} the service computes at once: retry shortly")
            self._used += pixels
        try:
            yield
        finally:
            with self._lock:
                self._used -= pixels
