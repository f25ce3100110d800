"""The HTTP face of :mod:`rtforge.workflows.service` for other languages (extra ``rtforge[serve]``).

An ASGI application (Starlette) over one :class:`~rtforge.workflows.service.StudyCache`;
``rtforge serve`` runs it with uvicorn.  Requests name studies by the paths
of their files on the server; a study is loaded on first use and kept in
the bounded cache.  Work runs in a thread pool, off the event loop.

Endpoints (JSON bodies; lengths in mm, angles in degrees, doses in Gy)
---------------------------------------------------------------------
``GET /health``
    ``{"status": "ok", "studies": N, "max_studies": M, "cache_mb": X,
    "max_cache_mb": Y}``.
``GET /openapi.json``
    The OpenAPI 3.1 document: every request schema, built from the same
    definitions that validate requests (:mod:`rtforge.workflows._asgi_schema`).
``POST /studies``
    ``{"ct": PATH}`` or ``{"dose": PATH, "structure_set": PATH}``: load a
    study now; answers what was loaded.
``POST /drr``
    ``{"ct": PATH, "geometries": [GEOMETRY, ...], "method": "siddon" |
    "trilinear", "device": "cpu" | "cuda", "format": "png" | "rtimage",
    "annotate": bool}`` where GEOMETRY is ``{"gantry": float, "isocenter":
    [x, y, z], "rows": int, "columns": int, "pixel_spacing": [dc, dr]}`` plus
    optional ``collimator``, ``couch``, ``sad``, ``sid``, ``patient_position``.
    One geometry answers ``image/png`` or ``application/dicom`` (RT Image,
    Part 10); several answer an ``application/zip`` of them.  A PNG is the
    preview ``rtforge drr --png`` writes for the same CT and geometry, pixel
    for pixel: zoomed to at least 512 pixels, with the patient direction
    letters at its edges, the RT Image Label and the gantry, collimator and
    couch angles, a cross at the isocentre and a scale bar in mm at the
    isocentre.  ``"annotate": false`` (default true) answers the DRR as it
    is instead: rows x columns, nothing drawn, for callers that read or
    overlay the pixels themselves.  The RT Image is the same either way.
``POST /dvh``
    ``{"dose": PATH, "structure_set": PATH, "rois": [NAME or NUMBER, ...],
    "dose_at_volume": [percent, ...], "volume_at_dose": [Gy, ...], "format":
    "json" | "rtdose"}``: metrics per ROI as JSON, or a DVH-only RT Dose.

Limits and hygiene
------------------
Every answer but a success is ``{"error": message}`` and keeps the connection:
400 for a body that is not a JSON object or is nested deeper than
:attr:`Limits.max_depth`, and for a Host header that names none of the
service's names (:class:`AllowedHosts`, when given: against DNS rebinding);
401 without the bearer token when one is set; 403 for a path outside the data
roots (the same answer whether it exists or not); 404 for a path inside them
that does not exist; 413 for a body over :attr:`Limits.max_body_bytes`, an
image side over 65535, a DRR request whose rows x columns summed over its
geometries exceed :attr:`Limits.max_pixels` (checked before anything is
allocated), or a study whose files alone exceed the study cache's bound in
bytes; 415 for a body that is not ``application/json`` (so a web page cannot
make a browser post to the service without a CORS preflight, which is never
granted); 422 for a field missing, of the wrong type or out of range (numbers
must be finite and within the bounds the OpenAPI document states), or files
that cannot be read as the study asked for (messages name no file: the server
log does); 503 (with ``Retry-After``) when memory runs out or a DRR request
does not fit beside those being computed (their pixels together are held to
:attr:`Limits.max_pixels` too, so concurrent DRRs cannot add up). A defect
answers a JSON 500 and its traceback goes to the server log.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import logging
import re
import time
import zipfile
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset, dcmwrite
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rtforge import __version__
from rtforge.core.beam import BeamGeometry
from rtforge.errors import RtforgeError
from rtforge.io.fileset import file_meta
from rtforge.workflows._asgi_schema import (
    DRR,
    DVH,
    STUDY_CT,
    STUDY_DOSE,
    RequestError,
    openapi,
    validate,
)
from rtforge.workflows.service import (
    CTStudy,
    DataRoots,
    OutsideDataRootsError,
    PixelBudget,
    ServiceBusyError,
    StudyCache,
    StudyTooLargeError,
)

__all__ = ["AllowedHosts", "create_app", "Limits", "RequestError"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the service.

    Parameters
    ----------
    max_pixels : int
        Pixel budget of a DRR request: rows x columns summed over its
        geometries (default 64 Mpixel: 64,000,000).
    max_body_bytes : int
        Largest request body (default 1 MiB).
    max_depth : int
        Deepest nesting of arrays and objects in a body (default 16; the
        requests need 4).
    """

    max_pixels: int = 64_000_000
    max_body_bytes: int = 1 << 20
    max_depth: int = 16


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# ------------------------------------------------------------------- the body
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


def _depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text (strings skipped)."""
    text = np.frombuffer(_STRING.sub(b"", raw), np.uint8)
    steps = np.isin(text, _OPEN).astype(np.int64) - np.isin(text, _CLOSE)
    return int(np.cumsum(steps).max(initial=0))


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


async def _json_body(request: Request, limits: Limits) -> dict:
    """The request's JSON object, read within the limits."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise RequestError(415, f"the body must be application/json, got "
                                f"{media[:60] or 'no Content-Type'!r}")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limits.max_body_bytes):
        raise RequestError(413, f"the body must be at most {limits.max_body_bytes} bytes, "
                                f"declared {declared[:20]}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise RequestError(413, f"the body must be at most {limits.max_body_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if _depth(raw) > limits.max_depth:
        raise RequestError(400, f"the body is nested deeper than {limits.max_depth} levels")
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError
        raise RequestError(400, f"the body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object")
    return body


# ------------------------------------------------------------- the requests
def _geometry(item: dict, n: int) -> BeamGeometry:
    try:
        return BeamGeometry(
            float(item["gantry"]), np.asarray(item["isocenter"], dtype=np.float64),
            collimator_angle=float(item["collimator"]), couch_angle=float(item["couch"]),
            sad=float(item["sad"]), sid=float(item["sid"]), rows=item["rows"],
            columns=item["columns"],
            pixel_spacing=tuple(float(v) for v in item["pixel_spacing"]),  # type: ignore[arg-type]
            patient_position=item["patient_position"])
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


# ------------------------------------------------------------------ hosts
@dataclass(frozen=True)
class AllowedHosts:
    """The Host headers the service answers: its defence against DNS rebinding.

    A web page can point a DNS name of its own at the service's address
    (loopback, or the local network) once the browser has loaded it: the
    browser then takes the service for the page's own origin and lets the
    page read its answers, files included.  Every such request names the
    page's host in its Host header, a name the service does not have.

    Answered: a Host that is an IP address (an origin that is an address
    cannot be rebound), a name in ``names`` (compared without case or a
    trailing dot; ``*.example.org`` also takes every name under
    example.org; ``*`` takes every Host), and a request without a Host
    (HTTP/1.0: not a browser's).  Any other answers 400.

    Parameters
    ----------
    names : collection of str
        The service's names, e.g. ``{"localhost", "rt-server.example.org"}``.
    """

    names: Collection[str]

    def __post_init__(self) -> None:
        cleaned = frozenset(_host_name(str(n)) for n in self.names)
        if "" in cleaned or any("*" in n and n != "*" and not (n.startswith("*.") and
                                                                "*" not in n[2:])
                                for n in cleaned):
            raise ValueError(f"allowed hosts must be names, '*.domain' or '*': {self.names!r}")
        object.__setattr__(self, "names", cleaned)

    def allows(self, host: bytes | None) -> bool:
        """Whether a request with this Host header value (None: none) is answered."""
        if host is None or "*" in self.names:
            return True
        text = host.decode("latin-1").strip()
        if text.startswith("["):  # [v6] or [v6]:port
            address = text[1:text.find("]")] if "]" in text else ""
        else:
            address = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
        if _is_ip_address(address):
            return True
        name = _host_name(address)
        if not name or not _HOST_NAME.fullmatch(name):
            return False
        return name in self.names or any(
            pattern.startswith("*.") and name.endswith(pattern[1:]) for pattern in self.names)


#: A DNS name (letters, digits, hyphens and underscores in dot-separated labels).
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*")


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _host_name(text: str) -> str:
    return text.strip().lower().rstrip(".")


# --------------------------------------------------------------- handlers
class _Guard:
    """Outermost layer: the Host, the bearer token, a JSON 500 for defects, the access log."""

    def __init__(self, app: ASGIApp, token: str | None,
                 access_log: Callable[[str], None] | None,
                 hosts: AllowedHosts | None = None) -> None:
        self.app, self.access_log, self.hosts = app, access_log, hosts
        self.token = None if token is None else f"Bearer {token}".encode()

    def _authorized(self, scope: Scope) -> bool:
        given = dict(scope["headers"]).get(b"authorization", b"")
        return hmac.compare_digest(given, self.token)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            host = dict(scope["headers"]).get(b"host")
            if self.hosts is not None and not self.hosts.allows(host):
                shown = (host or b"").decode("latin-1")[:100]
                await _error(400, f"the Host header {shown!r} names none of this service's "
                                  "names (rtforge serve --allowed-host; a guard against DNS "
                                  "rebinding)")(scope, receive, sending)
            elif self.token is not None and not self._authorized(scope):
                await _error(401, "a bearer token is required: Authorization: Bearer TOKEN",
                             {"WWW-Authenticate": "Bearer"})(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        except Exception:
            log.exception("defect answering %s %s", scope["method"], scope["path"])
            if not status:
                await _error(500, "internal error (logged on the server)")(scope, receive, sending)
        finally:
            if self.access_log is not None:
                client = (scope.get("client") or ("-",))[0]
                self.access_log(f"{client} {scope['method']} {scope['path'][:200]} {status} "
                                f"{1000 * (time.perf_counter() - start):.1f} ms")


def create_app(cache: StudyCache | None = None, *, max_studies: int = 4,
               limits: Limits | None = None, token: str | None = None,
               access_log: Callable[[str], None] | None = None,
               allowed_hosts: AllowedHosts | None = None) -> ASGIApp:
    """The ASGI application answering DRR and DVH requests.

    Parameters
    ----------
    cache : StudyCache, optional
        Where loaded studies are kept, and the data roots paths are confined
        to; by default a new one of ``max_studies`` whose data root is the
        current folder.
    max_studies : int
        Bound of the default cache.
    limits : Limits, optional
        What one request may ask (the defaults of :class:`Limits`).
    token : str, optional
        When given, every request needs ``Authorization: Bearer <token>``
        (compared in constant time); 401 otherwise.
    access_log : callable, optional
        Called with one line per request: client, method, path, status, ms.
    allowed_hosts : AllowedHosts, optional
        The Host headers answered (400 otherwise); by default every one
        (``rtforge serve`` always gives them).

    Returns
    -------
    ASGI application
    """
    if cache is None:  # not `cache or ...`: an empty cache is falsy (it has a length)
        cache = StudyCache(max_studies, data_roots=DataRoots([Path.cwd()]))
    limits = limits or Limits()
    in_progress = PixelBudget(limits.max_pixels)
    document = openapi(__version__, limits.max_pixels, limits.max_body_bytes)

    async def health(request: Request) -> Response:
        return JSONResponse({
            "status": "ok", "studies": len(cache), "max_studies": cache.max_studies,
            "cache_mb": round(cache.nbytes / 1e6, 3),
            "max_cache_mb": None if cache.max_bytes is None else cache.max_bytes / 1e6})

    async def schema(request: Request) -> Response:
        return JSONResponse(document)

    def existing(fields: dict, name: str) -> Path:
        path = cache.resolve(fields[name])
        try:
            found = path.exists()
        except OSError:  # a name too long for the file system
            found = False
        if not found:
            raise RequestError(404, f"'{name}': no such file or folder on the server: "
                                    f"{fields[name][:200]}")
        return path

    def study(names: str, what: str, load: Callable[[], Any]) -> Any:
        """``load()``; an unreadable file answers a 422 that names no file."""
        try:
            return load()
        except RtforgeError as exc:
            if getattr(exc, "path", None) is None:
                raise
            log.warning("%s: %s", names, exc)
            raise RequestError(422, f"{names}: not {what} (the server log names the file and "
                                    f"the problem)") from exc
        except OSError as exc:
            log.warning("%s: %s", names, exc)
            raise RequestError(422, f"{names}: cannot be read (the server log says why)") from exc

    def ct_study(fields: dict) -> CTStudy:
        path = existing(fields, "ct")
        return study("'ct'", "one readable CT series", lambda: cache.ct(path))

    def dose_study(fields: dict) -> Any:
        dose, structure_set = existing(fields, "dose"), existing(fields, "structure_set")
        return study("'dose', 'structure_set'",
                     "a readable RT Dose with a dose grid and RT Structure Set",
                     lambda: cache.dose(dose, structure_set))

    def load(body: dict) -> dict:
        if "ct" in body:
            ct = ct_study(validate(body, STUDY_CT))
            grid = ct.volume.grid
            return {"kind": "ct", "shape": list(grid.shape), "spacing": list(grid.spacing),
                    "patient_id": str(ct.header.get("PatientID", ""))}
        dose = dose_study(validate(body, STUDY_DOSE))
        return {"kind": "dose", "rois": [{"number": s.number, "name": s.name}
                                         for s in dose.structure_set.structures]}

    def drr(body: dict) -> Response:
        fields = validate(body, DRR)
        pixels = sum(g["rows"] * g["columns"] for g in fields["geometries"])
        if pixels > limits.max_pixels:
            raise RequestError(413, f"the request asks for {pixels} pixels (rows x columns "
                                    f"summed over its geometries); the limit is "
                                    f"{limits.max_pixels}")
        geometries = [_geometry(item, n) for n, item in enumerate(fields["geometries"])]
        method, kind = fields["method"], fields["format"]
        ct = ct_study(fields)
        with in_progress.hold(pixels):
            images = ct.drr_images(geometries, method=method, device=fields["device"])
        if kind == "png":
            drawn = fields["annotate"]
            files = [(f"drr_{n + 1:04d}.png", CTStudy.png(image, geometry if drawn else None))
                     for n, (image, geometry) in enumerate(zip(images, geometries, strict=True))]
            media = "image/png"
        else:
            datasets = ct.rt_images(geometries, images,
                                    derivation=f"DRR computed by rtforge serve ({method})")
            files = [(f"drr_{n + 1:04d}.dcm", _part10(ds)) for n, ds in enumerate(datasets)]
            media = "application/dicom"
        if len(files) == 1:
            return Response(files[0][1], media_type=media)
        return Response(_zip(files), media_type="application/zip")

    def dvh(body: dict) -> Response:
        fields = validate(body, DVH)
        rois = fields["rois"]
        dose = dose_study(fields)
        metrics = [dose.metrics(r, dose_at_volume_percent=fields["dose_at_volume"],
                                volume_at_dose_gy=fields["volume_at_dose"]) for r in rois]
        if fields["format"] == "rtdose":
            return Response(_part10(dose.rt_dose(rois)), media_type="application/dicom")
        return JSONResponse({"rois": [
            {"number": m.roi_number, "name": m.name, "volume_cm3": m.volume_cm3,
             "min_gy": m.min_gy, "mean_gy": m.mean_gy, "max_gy": m.max_gy,
             "dose_at_volume_gy": {f"{k:g}": v for k, v in m.dose_at_volume_gy.items()},
             "volume_at_dose_cm3": {f"{k:g}": v for k, v in m.volume_at_dose_cm3.items()}}
            for m in metrics]})

    def endpoint(work: Callable[[dict], Response | dict]) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                answer = await run_in_threadpool(work, await _json_body(request, limits))
            except RequestError as exc:
                return _error(exc.status, str(exc))
            except OutsideDataRootsError:
                return _error(403, "access denied: the path is outside the data roots")
            except StudyTooLargeError as exc:
                return _error(413, str(exc))
            except ServiceBusyError as exc:
                return _error(503, str(exc), {"Retry-After": "1"})
            except RtforgeError as exc:
                return _error(422, str(exc))
            except MemoryError:
                log.exception("out of memory answering %s", request.url.path)
                return _error(503, "the server has not the memory for this request now")
            except Exception:
                log.exception("defect answering %s", request.url.path)
                return _error(500, "internal error (logged on the server)")
            return answer if isinstance(answer, Response) else JSONResponse(answer)

        return handle

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, f"{request.method} {request.url.path[:200]}: {exc.detail}",
                      exc.headers)

    app = Starlette(routes=[
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", schema, methods=["GET"]),
        Route("/studies", endpoint(load), methods=["POST"]),
        Route("/drr", endpoint(drr), methods=["POST"]),
        Route("/dvh", endpoint(dvh), methods=["POST"]),
    ], exception_handlers={HTTPException: http_error})  # type: ignore[dict-item]
    return _Guard(app, token, access_log, allowed_hosts)
