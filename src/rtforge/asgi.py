"""The HTTP face of :mod:`rtforge.service` for services in other languages (extra ``rtforge[serve]``).

An ASGI application (Starlette) over one :class:`~rtforge.service.StudyCache`;
``rtforge serve`` runs it with uvicorn.  Requests name studies by the paths
of their files on the server; a study is loaded on first use and kept in
the bounded cache.  Work runs in a thread pool, off the event loop.

Endpoints (JSON bodies; lengths in mm, angles in degrees, doses in Gy)
---------------------------------------------------------------------
``GET /health``
    ``{"status": "ok", "studies": N, "max_studies": M}``.
``POST /studies``
    ``{"ct": PATH}`` or ``{"dose": PATH, "structure_set": PATH}``: load a
    study now; answers what was loaded.
``POST /drr``
    ``{"ct": PATH, "geometries": [GEOMETRY, ...], "method": "siddon" |
    "trilinear", "device": "cpu" | "cuda", "format": "png" | "rtimage"}``
    where GEOMETRY is ``{"gantry": float, "isocenter": [x, y, z], "rows":
    int, "columns": int, "pixel_spacing": [dc, dr]}`` plus optional
    ``collimator``, ``couch``, ``sad``, ``sid``, ``patient_position``.
    One geometry answers ``image/png`` or ``application/dicom`` (RT Image,
    Part 10); several answer an ``application/zip`` of them.
``POST /dvh``
    ``{"dose": PATH, "structure_set": PATH, "rois": [NAME or NUMBER, ...],
    "dose_at_volume": [percent, ...], "volume_at_dose": [Gy, ...], "format":
    "json" | "rtdose"}``: metrics per ROI as JSON, or a DVH-only RT Dose.

Errors answer ``{"error": message}``: 400 for a body that is not a JSON
object, 404 for a path that does not exist, 422 for a field that is
missing, of the wrong type or out of range, or input rtforge rejects.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset, dcmwrite
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rtforge.core.beam import BeamGeometry
from rtforge.errors import RtforgeError
from rtforge.io.fileset import file_meta
from rtforge.service import CTStudy, StudyCache

__all__ = ["create_app", "RequestError"]

log = logging.getLogger(__name__)

#: Most geometries one DRR request may ask for.
MAX_GEOMETRIES = 360


class RequestError(Exception):
    """A request rtforge will not serve: its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------- validation
def _field(body: dict, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if name not in body:
        if default is ...:
            raise RequestError(422, f"'{name}' is required")
        return default
    value = body[name]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise RequestError(422, f"'{name}' must be {_kind_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise RequestError(422, f"'{name}' must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", list: "a list",
             dict: "an object"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _numbers(body: dict, name: str, count: int | None = None, default: Any = ...) -> list[float]:
    values = _field(body, name, list, default)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise RequestError(422, f"'{name}' must be a list of numbers")
    if count is not None and len(values) != count:
        raise RequestError(422, f"'{name}' must have {count} numbers, got {len(values)}")
    return [float(v) for v in values]


def _path(body: dict, name: str) -> Path:
    path = Path(_field(body, name, str))
    if not path.exists():
        raise RequestError(404, f"'{name}': no such file or folder on the server: {path}")
    return path


def _choice(body: dict, name: str, choices: tuple[str, ...]) -> str:
    value = _field(body, name, str, choices[0])
    if value not in choices:
        raise RequestError(422, f"'{name}' must be one of {', '.join(choices)}; got {value!r}")
    return value


def _geometry(item: object, n: int) -> BeamGeometry:
    if not isinstance(item, dict):
        raise RequestError(422, f"geometries[{n}] must be an object")
    known = {"gantry", "isocenter", "rows", "columns", "pixel_spacing", "collimator", "couch",
             "sad", "sid", "patient_position"}
    unknown = sorted(set(item) - known)
    if unknown:
        raise RequestError(422, f"geometries[{n}]: unknown field(s) {', '.join(unknown)}")
    try:
        return BeamGeometry(
            float(_field(item, "gantry", (int, float))), np.asarray(_numbers(item, "isocenter", 3)),
            collimator_angle=float(_field(item, "collimator", (int, float), 0.0)),
            couch_angle=float(_field(item, "couch", (int, float), 0.0)),
            sad=float(_field(item, "sad", (int, float), 1000.0)),
            sid=float(_field(item, "sid", (int, float), 1500.0)),
            rows=_field(item, "rows", int), columns=_field(item, "columns", int),
            pixel_spacing=tuple(_numbers(item, "pixel_spacing", 2)),  # type: ignore[arg-type]
            patient_position=_field(item, "patient_position", str, "HFS"))
    except RequestError as exc:
        raise RequestError(exc.status, f"geometries[{n}]: {exc}") from exc
    except RtforgeError as exc:
        raise RequestError(422, f"geometries[{n}]: {exc}") from exc


def _part10(ds: Dataset) -> bytes:
    ds.file_meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID)  # our Implementation Class UID
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _zip(files: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()


# --------------------------------------------------------------- handlers
def create_app(cache: StudyCache | None = None, *, max_studies: int = 4) -> Starlette:
    """The ASGI application answering DRR and DVH requests.

    Parameters
    ----------
    cache : StudyCache, optional
        Where loaded studies are kept; by default a new one of ``max_studies``.
    max_studies : int
        Bound of the default cache.

    Returns
    -------
    starlette.applications.Starlette
    """
    cache = cache or StudyCache(max_studies)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "studies": len(cache),
                             "max_studies": cache.max_studies})

    def load(body: dict) -> dict:
        if "ct" in body:
            study = cache.ct(_path(body, "ct"))
            grid = study.volume.grid
            return {"kind": "ct", "shape": list(grid.shape), "spacing": list(grid.spacing),
                    "patient_id": str(study.header.get("PatientID", ""))}
        dose = cache.dose(_path(body, "dose"), _path(body, "structure_set"))
        return {"kind": "dose", "rois": [{"number": s.number, "name": s.name}
                                         for s in dose.structure_set.structures]}

    def drr(body: dict) -> Response:
        items = _field(body, "geometries", list)
        if not 1 <= len(items) <= MAX_GEOMETRIES:
            raise RequestError(422, f"'geometries' must hold 1 to {MAX_GEOMETRIES} geometries, "
                                    f"got {len(items)}")
        geometries = [_geometry(item, n) for n, item in enumerate(items)]
        method = _choice(body, "method", ("siddon", "trilinear"))
        device = _choice(body, "device", ("cpu", "cuda"))
        kind = _choice(body, "format", ("png", "rtimage"))
        study = cache.ct(_path(body, "ct"))
        images = study.drr_images(geometries, method=method, device=device)
        if kind == "png":
            files = [(f"drr_{n + 1:04d}.png", CTStudy.png(image)) for n, image in enumerate(images)]
            media = "image/png"
        else:
            datasets = study.rt_images(geometries, images,
                                       derivation=f"DRR computed by rtforge serve ({method})")
            files = [(f"drr_{n + 1:04d}.dcm", _part10(ds)) for n, ds in enumerate(datasets)]
            media = "application/dicom"
        if len(files) == 1:
            return Response(files[0][1], media_type=media)
        return Response(_zip(files), media_type="application/zip")

    def dvh(body: dict) -> Response:
        rois = _field(body, "rois", list)
        if not rois or not all(isinstance(r, (str, int)) and not isinstance(r, bool) for r in rois):
            raise RequestError(422, "'rois' must be a non-empty list of ROI names or numbers")
        at_volume = _numbers(body, "dose_at_volume", default=[])
        at_dose = _numbers(body, "volume_at_dose", default=[])
        kind = _choice(body, "format", ("json", "rtdose"))
        study = cache.dose(_path(body, "dose"), _path(body, "structure_set"))
        metrics = [study.metrics(r, dose_at_volume_percent=at_volume, volume_at_dose_gy=at_dose)
                   for r in rois]
        if kind == "rtdose":
            return Response(_part10(study.rt_dose(rois)), media_type="application/dicom")
        return JSONResponse({"rois": [
            {"number": m.roi_number, "name": m.name, "volume_cm3": m.volume_cm3,
             "min_gy": m.min_gy, "mean_gy": m.mean_gy, "max_gy": m.max_gy,
             "dose_at_volume_gy": {f"{k:g}": v for k, v in m.dose_at_volume_gy.items()},
             "volume_at_dose_cm3": {f"{k:g}": v for k, v in m.volume_at_dose_cm3.items()}}
            for m in metrics]})

    def endpoint(work: Callable[[dict], Response | dict]) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                try:
                    body = json.loads(await request.body())
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise RequestError(400, f"the body is not JSON: {exc}") from exc
                if not isinstance(body, dict):
                    raise RequestError(400, "the body must be a JSON object")
                answer = await run_in_threadpool(work, body)
            except RequestError as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
            except RtforgeError as exc:
                return JSONResponse({"error": str(exc)}, status_code=422)
            return answer if isinstance(answer, Response) else JSONResponse(answer)

        return handle

    return Starlette(routes=[
        Route("/health", health, methods=["GET"]),
        Route("/studies", endpoint(load), methods=["POST"]),
        Route("/drr", endpoint(drr), methods=["POST"]),
        Route("/dvh", endpoint(dvh), methods=["POST"]),
    ])
