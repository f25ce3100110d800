"""``rtforge serve``: the DRR/DVH service, a real server on 127.0.0.1 and a real HTTP client."""

from __future__ import annotations

import http.client
import io
import json
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from rtforge.cli import main
from rtforge.core.beam import BeamGeometry
from rtforge.workflows.service import CTStudy
from tests.workflows.test_service import TRUE_VOLUME_CM3, write_dose_case

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

GEOMETRY = {"gantry": 90, "isocenter": [0, 0, 0], "rows": 12, "columns": 16,
            "pixel_spacing": [25, 25]}
JSON = {"Content-Type": "application/json"}
#: How much the server's resident memory may grow over the oversized requests: they
#: are refused before anything is allocated (one 1e9-pixel image alone would be 4 GB).
RSS_BOUND_KB = 32 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``rtforge serve ARGS`` in a subprocess; its stderr lines collected as they come."""

    def __init__(self, *args: str, verbose: bool = False, prefix: Sequence[str] = ()) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "rtforge", *(["-v"] if verbose else []), "serve",
             "--host", "127.0.0.1", "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120)
        deadline = time.monotonic() + 120
        while True:  # up when it answers at all (401 included)
            try:
                self.client.get("/health")
                break
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("rtforge serve did not start:\n"
                                       + "\n".join(self.lines[-40:])) from None
                time.sleep(0.1)

    def _read(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, found: Callable[[str], bool]) -> int:
        """Index of the first stderr line for which ``found`` holds (a hang guard of 120 s)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for n, line in enumerate(list(self.lines)):
                if found(line):
                    return n
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError("rtforge serve never logged the line; stderr:\n"
                             + "\n".join(self.lines[-40:]))

    def rss_kb(self) -> int:
        """The server process's resident memory (VmRSS, kB)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line for line in status.splitlines()
                        if line.startswith("VmRSS:")).split()[1])

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _roots(*folders: Path) -> list[str]:
    return [arg for folder in folders for arg in ("--data-root", str(folder))]


@pytest.fixture(scope="module")
def dose_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_dose_case(tmp_path_factory.mktemp("serve-dose"))


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside every data root, holding a file."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "secret.dcm").write_bytes(b"not for the service")
    return folder


@pytest.fixture(scope="module")
def serve(phantom_root, dose_case, outside) -> Iterator[Server]:
    """``rtforge serve`` on a free loopback port, at most two studies cached; data roots:
    the phantom patient and the dose case (holding a link to a file outside)."""
    (dose_case[0].parent / "link-out.dcm").symlink_to(outside / "secret.dcm")
    server = Server(*_roots(phantom_root, dose_case[0].parent), "--max-studies", "2")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def server(serve: Server) -> httpx.Client:
    return serve.client


def test_drr_png_and_rt_image(server, phantom_patient) -> None:
    ct = str(phantom_patient[0].folder)
    loaded = server.post("/studies", json={"ct": ct})
    assert loaded.status_code == 200 and loaded.json()["kind"] == "ct"
    png = server.post("/drr", json={"ct": ct, "geometries": [GEOMETRY]})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    rt = server.post("/drr", json={"ct": ct, "format": "rtimage",
                                   "geometries": [GEOMETRY, {**GEOMETRY, "gantry": 0}]})
    assert rt.status_code == 200 and rt.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(rt.content)) as archive:
        names = archive.namelist()
        ds = pydicom.dcmread(io.BytesIO(archive.read(names[1])))
    assert names == ["drr_0001.dcm", "drr_0002.dcm"]
    assert ds.Modality == "RTIMAGE" and (ds.Rows, ds.Columns) == (12, 16)
    assert float(ds.GantryAngle) == 0.0


def _rgb(png: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as picture:
        return np.asarray(picture.convert("RGB"))


def test_drr_png_is_annotated_as_the_command_line_draws_it(server, phantom_patient,
                                                             tmp_path) -> None:
    """The service's PNG is, pixel for pixel, the preview ``rtforge drr --png`` writes for the
    same CT and geometry; ``"annotate": false`` answers the DRR as it is."""
    ct = str(phantom_patient[0].folder)
    geometry = {**GEOMETRY, "collimator": 15, "couch": 350, "sad": 900, "sid": 1400}
    assert main(["drr", ct, "--gantry", "90", "--collimator", "15", "--couch", "350",
                 "--sad", "900", "--sid", "1400", "--isocenter", "0,0,0", "--size", "12x16",
                 "--pixel", "25", "-o", str(tmp_path / "out"), "--png", str(tmp_path / "png"),
                 "-q"]) == 0
    (written,) = (tmp_path / "png").glob("*.png")
    answer = server.post("/drr", json={"ct": ct, "geometries": [geometry]})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    served = _rgb(answer.content)
    assert served.shape == (384, 512, 3)  # zoomed 32 times, as the command line's
    np.testing.assert_array_equal(served, _rgb(written.read_bytes()))
    raw = server.post("/drr", json={"ct": ct, "geometries": [geometry], "annotate": False})
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/png"
    plain = _rgb(raw.content)
    assert plain.shape == (12, 16, 3)  # the requested rows and columns
    study = CTStudy.load(ct)
    (image,) = study.drr_images([BeamGeometry(90, (0, 0, 0), collimator_angle=15,
                                              couch_angle=350, sad=900, sid=1400, rows=12,
                                              columns=16, pixel_spacing=(25, 25))])
    np.testing.assert_array_equal(plain, _rgb(CTStudy.png(image)))
    zoomed = np.repeat(np.repeat(plain, 32, axis=0), 32, axis=1)
    assert (served != zoomed).any(axis=-1).mean() > 0.01  # annotations drawn on it
    # several geometries: each PNG of the zip annotated with its own angles
    both = server.post("/drr", json={"ct": ct, "geometries": [geometry, {**geometry,
                                                                         "gantry": 0}]})
    with zipfile.ZipFile(io.BytesIO(both.content)) as archive:
        first, second = (_rgb(archive.read(n)) for n in archive.namelist())
    np.testing.assert_array_equal(first, served)
    assert second.shape == served.shape and (second != served).any()
    bad = server.post("/drr", json={"ct": ct, "geometries": [geometry], "annotate": "no"})
    assert bad.status_code == 422 and "'annotate' must be a boolean" in bad.json()["error"]


def test_dvh_json_and_rt_dose(server, dose_case) -> None:
    struct, dose = (str(p) for p in dose_case)
    answer = server.post("/dvh", json={"dose": dose, "structure_set": struct, "rois": ["Column"],
                                       "dose_at_volume": [50], "volume_at_dose": [10]})
    assert answer.status_code == 200, answer.text
    roi = answer.json()["rois"][0]
    assert roi["number"] == 1 and roi["volume_cm3"] == pytest.approx(TRUE_VOLUME_CM3, rel=1e-3)
    assert roi["mean_gy"] == pytest.approx(10.0, abs=0.01)
    assert roi["dose_at_volume_gy"]["50"] == pytest.approx(10.0, abs=0.02)
    rt = server.post("/dvh", json={"dose": dose, "structure_set": struct, "rois": [1],
                                   "format": "rtdose"})
    assert rt.status_code == 200 and rt.headers["content-type"] == "application/dicom"
    assert pydicom.dcmread(io.BytesIO(rt.content)).Modality == "RTDOSE"


def _geometries(rows: int, columns: int, count: int = 1) -> list[dict]:
    return [{**GEOMETRY, "rows": rows, "columns": columns}] * count


#: Every kind of bad request: (path, body, status, words of the error).  A dict body is
#: sent as JSON with its placeholders (CT, DOSE, SS, DOSEDIR, MISSING) replaced by paths;
#: bytes are sent as they are.
BAD_REQUESTS = [
    ("/drr", b"{not json", 400, "not JSON"),
    ("/drr", b"[1, 2]", 400, "JSON object"),
    ("/drr", b"[" * 100_000 + b"]" * 100_000, 400, "nested deeper than 16"),
    ("/drr", b'{"ct": "CT", "geometries": [{"gantry": NaN}]}', 400, "NaN"),
    ("/drr", b'{"ct": "' + b"9" * 5000 + b'"}', 422, "'ct' must be 1 to 4096 characters"),
    ("/drr", b'{"ct": 1' + b"0" * 5000 + b"}", 400, "not JSON"),
    ("/drr", b'{"ct": "\xff\xfe"}', 400, "not JSON"),
    ("/drr", {"geometries": [GEOMETRY]}, 422, "'ct' is required"),
    ("/drr", {"ct": "MISSING", "geometries": [GEOMETRY]}, 404, "no such file"),
    ("/drr", {"ct": "/" + "a" * 9999, "geometries": [GEOMETRY]}, 422, "1 to 4096 characters"),
    ("/drr", {"ct": "CT/" + "a" * 300, "geometries": [GEOMETRY]}, 404, "no such file"),
    ("/drr", {"ct": "CT\x00", "geometries": [GEOMETRY]}, 422, "NUL"),
    ("/drr", {"ct": "CT", "geometries": []}, 422, "1 to 360"),
    ("/drr", {"ct": "CT", "geometries": [GEOMETRY] * 361}, 413, "1 to 360"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "rows": "12"}]}, 422,
     "geometries[0]: 'rows' must be an integer"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "rows": 0}]}, 422, "at least 1"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "rows": 10**30}]}, 413, "at most 65535"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "rows": 12.5}]}, 422, "an integer"),
    ("/drr", {"ct": "CT", "geometries": _geometries(100_000, 100_000)}, 413, "at most 65535"),
    ("/drr", {"ct": "CT", "geometries": _geometries(12_000, 12_000)}, 413, "64000000"),
    ("/drr", {"ct": "CT", "geometries": _geometries(4000, 4000, 5)}, 413, "80000000 pixels"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "isocenter": [0, 0]}]}, 422, "3 numbers"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "isocenter": [0, 0, 1e300]}]}, 422,
     "at most 100000"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "gantry": 1e30}]}, 422, "at most 360"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "pixel_spacing": [0, 1]}]}, 422,
     "greater than 0"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "sad": -5}]}, 422, "greater than 0"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "sid": 500}]}, 422, "geometries[0]"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "tilt": 1}]}, 422, "unknown field(s) tilt"),
    ("/drr", {"ct": "CT", "geometries": [GEOMETRY], "method": "magic"}, 422, "siddon"),
    ("/drr", {"ct": "CT", "geometries": ["x"]}, 422, "geometries[0] must be an object"),
    ("/drr", {"ct": "DOSE", "geometries": [GEOMETRY]}, 422, "not one readable CT series"),
    ("/drr", {"ct": "DOSEDIR", "geometries": [GEOMETRY]}, 422, "not one readable CT series"),
    ("/dvh", {"dose": "DOSE", "structure_set": "SS", "rois": ["Heart"]}, 422, "no ROI 'Heart'"),
    ("/dvh", {"dose": "DOSE", "structure_set": "SS", "rois": [True]}, 422, "'rois'"),
    ("/dvh", {"dose": "DOSE", "structure_set": "SS", "rois": [1], "dose_at_volume": [150]},
     422, "percentages"),
    ("/dvh", {"dose": "DOSE", "structure_set": "SS", "rois": [1], "volume_at_dose": [-1]},
     422, "doses must be at least 0"),
    ("/dvh", {"dose": "SS", "structure_set": "DOSE", "rois": [1]}, 422,
     "not a readable RT Dose"),
    ("/studies", {"ct": ["CT"]}, 422, "'ct' must be a string"),
    ("/studies", {"dose": "DOSE"}, 422, "'structure_set' is required"),
]


def _send(client: httpx.Client, paths: dict[str, str], path: str, body: dict | bytes
          ) -> httpx.Response:
    if isinstance(body, bytes):
        return client.post(path, content=body, headers=JSON)

    def fill(value: object) -> object:
        if isinstance(value, str):
            head, _, tail = value.partition("/")
            return paths[head] + "/" + tail if tail and head in paths else paths.get(value, value)
        return value

    return client.post(path, json={k: fill(v) for k, v in body.items()})


def _connection(answer: httpx.Response) -> tuple:
    """The client's end of the TCP connection that carried the answer."""
    return answer.extensions["network_stream"].get_extra_info("client_addr")


def test_every_bad_request_gets_a_json_4xx_on_the_same_connection(
        serve, phantom_patient, dose_case) -> None:
    paths = {"CT": str(phantom_patient[0].folder), "DOSE": str(dose_case[1]),
             "SS": str(dose_case[0]), "DOSEDIR": str(dose_case[0].parent),
             "MISSING": str(dose_case[0].parent / "no" / "such")}
    first = serve.client.get("/health")
    for path, body, status, words in BAD_REQUESTS:
        answer = _send(serve.client, paths, path, body)
        assert answer.status_code == status, (body if isinstance(body, dict) else body[:60],
                                              answer.text)
        assert words in answer.json()["error"], answer.text
        assert answer.headers.get("connection") != "close"
        assert _connection(answer) == _connection(first)
        if words.startswith("not "):  # a file that cannot be read: the server log names it
            assert ".dcm" not in answer.text
    for method, path, status in (("GET", "/nowhere", 404), ("GET", "/drr", 405)):
        answer = serve.client.request(method, path)
        assert answer.status_code == status and path in answer.json()["error"]
        assert _connection(answer) == _connection(first)


def test_text_plain_is_refused(server, dose_case) -> None:
    body = json.dumps({"dose": str(dose_case[1]), "structure_set": str(dose_case[0]),
                       "rois": [1]})
    for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        answer = server.post("/dvh", content=body, headers={"Content-Type": media})
        assert answer.status_code == 415 and "application/json" in answer.json()["error"]
    assert server.post("/dvh", content=body, headers={
        "Content-Type": "application/json; charset=utf-8"}).status_code == 200


def test_outside_the_data_roots_is_one_403(serve, dose_case, outside) -> None:
    dose, struct = str(dose_case[1]), str(dose_case[0])
    attempts = [
        ("/drr", {"ct": str(outside), "geometries": [GEOMETRY]}),  # exists
        ("/drr", {"ct": str(outside / "nothing"), "geometries": [GEOMETRY]}),  # does not
        ("/drr", {"ct": "/etc", "geometries": [GEOMETRY]}),
        ("/drr", {"ct": str(dose_case[0].parent / ".." / outside.name), "geometries": [GEOMETRY]}),
        ("/studies", {"ct": str(outside / "secret.dcm")}),
        ("/studies", {"ct": str(outside / "nothing.dcm")}),
        ("/dvh", {"dose": str(outside / "secret.dcm"), "structure_set": struct, "rois": [1]}),
        ("/dvh", {"dose": dose, "structure_set": str(outside / "nothing"), "rois": [1]}),
        ("/dvh", {"dose": str(dose_case[0].parent / "link-out.dcm"), "structure_set": struct,
                  "rois": [1]}),  # a link inside a root that leads outside
    ]
    answers = [serve.client.post(path, json=body) for path, body in attempts]
    assert {(a.status_code, a.content) for a in answers} == {
        (403, b'{"error":"access denied: the path is outside the data roots"}')}


def test_oversized_requests_are_refused_before_any_allocation(serve, phantom_patient) -> None:
    ct = str(phantom_patient[0].folder)
    oversized = [{"ct": ct, "geometries": _geometries(1_000_000_000, 1)},
                 {"ct": ct, "geometries": _geometries(10**30, 10**30)},
                 {"ct": ct, "geometries": _geometries(100_000, 100_000)},
                 {"ct": ct, "geometries": _geometries(12_000, 12_000)},
                 {"ct": ct, "geometries": _geometries(8_000, 8_000, 360)}]
    serve.client.post("/drr", json={"ct": ct, "geometries": [GEOMETRY]})  # warm: code paths
    before = serve.rss_kb()
    for body in oversized:
        answer = serve.client.post("/drr", json=body)
        assert answer.status_code == 413, answer.text
    # a body larger than the limit, declared (refused unread) or streamed without a length
    with socket.create_connection(("127.0.0.1", serve.port)) as sock:
        sock.sendall(b"POST /drr HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 3000000000\r\n\r\n{")
        declared = http.client.HTTPResponse(sock)
        declared.begin()
        assert declared.status == 413
        assert "at most 1048576 bytes" in json.loads(declared.read())["error"]
    streamed = serve.client.post("/drr", headers=JSON,
                                 content=(b" " * 65536 for _ in range(17)))
    assert streamed.status_code == 413 and "at most 1048576 bytes" in streamed.json()["error"]
    assert serve.rss_kb() - before < RSS_BOUND_KB


def test_start_up_line_and_access_log(serve, dose_case) -> None:
    started = serve.lines[serve.wait_for(lambda line: "listening on" in line)]
    assert f"http://127.0.0.1:{serve.port}" in started and "no token required" in started
    serve.client.post("/dvh", json={"dose": str(dose_case[1]), "structure_set": str(dose_case[0]),
                                    "rois": ["Nothing"]})
    line = serve.lines[serve.wait_for(lambda line: " POST /dvh 422 " in line)]
    client, method, path, status, ms, unit = line.split()
    assert (client, method, path, status, unit) == ("127.0.0.1", "POST", "/dvh", "422", "ms")
    assert float(ms) >= 0


def test_cache_stays_bounded(server, phantom_patient, dose_case) -> None:
    for series in phantom_patient:
        assert server.post("/studies", json={"ct": str(series.folder)}).status_code == 200
    assert server.post("/studies", json={"dose": str(dose_case[1]),
                                         "structure_set": str(dose_case[0])}).status_code == 200
    health = server.get("/health").json()
    assert {k: health[k] for k in ("status", "studies", "max_studies")} == {
        "status": "ok", "studies": 2, "max_studies": 2}
    assert 0 < health["cache_mb"] <= health["max_cache_mb"] == 2048


def test_openapi_names_every_endpoint(server) -> None:
    from rtforge.workflows.asgi import create_app

    document = server.get("/openapi.json").json()
    routes = {route.path for route in create_app().app.routes}  # type: ignore[attr-defined]
    assert set(document["paths"]) == routes == {"/health", "/openapi.json", "/studies", "/drr",
                                                "/dvh"}
    assert document["components"]["schemas"]["DrrRequest"]["required"] == ["ct", "geometries"]
    assert document["components"]["schemas"]["Geometry"]["properties"]["rows"]["maximum"] == 65535
    annotate = document["components"]["schemas"]["DrrRequest"]["properties"]["annotate"]
    assert annotate["type"] == "boolean" and annotate["default"] is True


def test_token_required(phantom_root, tmp_path) -> None:
    (tmp_path / "token").write_text("s3cret-token\n")
    server = Server(*_roots(phantom_root), "--token-file", str(tmp_path / "token"), "-q")
    try:
        assert "bearer token required" in server.lines[
            server.wait_for(lambda line: "listening on" in line)]
        url = f"http://127.0.0.1:{server.port}"
        bare = httpx.get(f"{url}/health")
        assert bare.status_code == 401 and "Bearer" in bare.json()["error"]
        assert bare.headers["www-authenticate"] == "Bearer"
        assert httpx.get(f"{url}/health", headers={"Authorization": "Bearer s3cret-tokeN"}
                         ).status_code == 401
        assert httpx.post(f"{url}/studies", json={"ct": str(phantom_root)}).status_code == 401
        server.client.headers["Authorization"] = "Bearer s3cret-token"
        assert server.client.get("/health").status_code == 200
        assert not any(" GET /health " in line for line in server.lines)  # -q: no access log
    finally:
        server.close()


def test_pixel_budget_and_data_roots_from_the_config_file(phantom_patient, tmp_path) -> None:
    config = tmp_path / "rtforge.toml"
    config.write_text(f'[serve]\nmax_mpixel = 0.0002\ndata_roots = ["{phantom_patient[0].folder}"]\n')
    server = Server("--config", str(config))
    try:
        ct = str(phantom_patient[0].folder)
        assert server.client.post("/drr", json={"ct": ct, "geometries": [GEOMETRY]}
                                  ).status_code == 200  # 192 pixels
        over = server.client.post("/drr", json={"ct": ct, "geometries": [GEOMETRY] * 2})
        assert over.status_code == 413 and "the limit is 200" in over.json()["error"]
        assert server.client.post("/studies", json={"ct": str(phantom_patient[1].folder)}
                                  ).status_code == 403
    finally:
        server.close()


def test_a_study_larger_than_the_cache_is_refused_unread(phantom_patient, dose_case) -> None:
    server = Server(*_roots(phantom_patient[0].folder.parent, dose_case[0].parent),
                    "--max-cache-mb", "0.1")
    try:
        before = server.rss_kb()
        ct = server.client.post("/studies", json={"ct": str(phantom_patient[0].folder)})
        assert ct.status_code == 413, ct.text  # 16 files of 64 x 64 int16 and headers: 0.2 MB
        assert ct.json()["error"] == ("the study's files hold 0.2 MB, more than the study "
                                      "cache's 0.1 MB")
        assert server.rss_kb() - before < RSS_BOUND_KB
        dose = server.client.post("/studies", json={"dose": str(dose_case[1]),
                                                    "structure_set": str(dose_case[0])})
        assert dose.status_code == 200, dose.text  # 0.06 MB of files
    finally:
        server.close()


def _many_slices(template: Path, folder: Path, count: int) -> Path:
    """A CT series of ``count`` copies of one slice, each at its own position."""
    ds = pydicom.dcmread(template)
    ds.SeriesInstanceUID = generate_uid()
    folder.mkdir()
    for k in range(count):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [0.0, 0.0, 0.5 * k]
        ds.save_as(folder / f"{k:05d}.dcm")
    return folder


def test_cached_requests_are_not_delayed_by_a_cold_load(phantom_patient, dose_case,
                                                       tmp_path) -> None:
    """One cold load of a CT of 3000 files and 49 DVH requests of a cached dose study,
    all at once: the server's log orders the events (load started, every DVH answered,
    load finished); no clock is read."""
    template = next(phantom_patient[0].folder.rglob("*.dcm"))
    big = _many_slices(template, tmp_path / "big", 3000)
    server = Server(*_roots(tmp_path, dose_case[0].parent), verbose=True)
    try:
        dvh = {"dose": str(dose_case[1]), "structure_set": str(dose_case[0]), "rois": ["Column"],
               "dose_at_volume": [50]}
        assert server.client.post("/dvh", json=dvh).status_code == 200  # cached from now on
        with ThreadPoolExecutor(50) as pool:
            cold = pool.submit(server.client.post, "/studies", json={"ct": str(big)})
            loading = server.wait_for(lambda line: "loading ct" in line and str(big) in line)
            cached = [pool.submit(server.client.post, "/dvh", json=dvh) for _ in range(49)]
            assert all(f.result().status_code == 200 for f in cached)
            assert cold.result().json()["shape"][0] == 3000
        loaded = server.wait_for(lambda line: "loaded ct" in line and str(big) in line)
        served = [n for n, line in enumerate(server.lines) if " POST /dvh 200 " in line]
        assert len(served) == 50
        assert all(loading < n < loaded for n in served[1:]), "\n".join(server.lines)
    finally:
        server.close()


def test_serve_usage_errors(capsys, tmp_path) -> None:
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["serve", "--max-studies", "0"]) == 2
    assert main(["serve", "--max-mpixel", "-1"]) == 2
    assert "--max-mpixel" in capsys.readouterr().err
    assert main(["serve", "--data-root", str(tmp_path / "nothing")]) == 1
    assert "data root" in capsys.readouterr().err
    (tmp_path / "empty").write_text("  \n")
    assert main(["serve", "--data-root", str(tmp_path), "--token-file",
                 str(tmp_path / "empty")]) == 1
    assert "token" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text("[serve]\nmax_mpixel = -1\n")
    assert main(["serve", "--config", str(tmp_path / "bad.toml")]) == 1
    assert "max_mpixel must be a positive number" in capsys.readouterr().err


# ------------------------------------------------------- Host: DNS rebinding
@pytest.mark.parametrize("host, answered", [
    (b"localhost", True), (b"localhost:8000", True), (b"LocalHost.", True),
    (b"127.0.0.1:8000", True), (b"10.1.2.3", True), (b"[::1]:8000", True), (b"::1", True),
    (b"rt.example.org", True), (b"x.lab.example.org:443", True),
    (b"evil.example", False), (b"evil.example:8000", False), (b"lab.example.org", False),
    (b"localhost.evil.example", False), (b"127.0.0.1.evil.example", False), (b"a b", False),
    (b"", False), (None, True)])
def test_allowed_hosts_answers_addresses_and_the_services_names(host, answered) -> None:
    from rtforge.workflows.asgi import AllowedHosts

    hosts = AllowedHosts({"localhost", "rt.example.org", "*.lab.example.org"})
    assert hosts.allows(host) is answered
    assert AllowedHosts({"*"}).allows(b"evil.example")


def test_allowed_hosts_refuses_what_is_no_name() -> None:
    from rtforge.workflows.asgi import AllowedHosts

    for bad in ({"a*b"}, {"*.*.org"}, {" "}):
        with pytest.raises(ValueError):
            AllowedHosts(bad)


def _get(port: int, host: str) -> tuple[int, dict]:
    """GET /health with this Host header, through a plain HTTP/1.1 connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("GET", "/health", skip_host=True)
        connection.putheader("Host", host)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def test_a_rebound_name_is_refused_and_the_services_names_answered(serve) -> None:
    # A page at evil.example whose DNS now points at 127.0.0.1 makes the browser send this.
    status, body = _get(serve.port, f"evil.example:{serve.port}")
    assert status == 400 and "Host header" in body["error"] and "--allowed-host" in body["error"]
    assert _get(serve.port, f"localhost:{serve.port}")[0] == 200
    assert _get(serve.port, f"127.0.0.1:{serve.port}")[0] == 200
    line = serve.lines[serve.wait_for(lambda text: "listening on" in text)]
    assert "Host: IP addresses, localhost;" in line
    serve.wait_for(lambda text: " GET /health 400 " in text)  # the access log has it


def test_allowed_hosts_from_the_flag_the_config_and_beyond_loopback(phantom_root,
                                                                   tmp_path) -> None:
    server = Server(*_roots(phantom_root), "--allowed-host", "rt.example.org", "-q")
    try:
        assert _get(server.port, "rt.example.org")[0] == 200
        assert _get(server.port, "localhost")[0] == 200
        assert _get(server.port, "other.example.org")[0] == 400
    finally:
        server.close()
    config = tmp_path / "rtforge.toml"
    config.write_text('[serve]\nallowed_hosts = ["*"]\n')
    server = Server(*_roots(phantom_root), "--config", str(config), "-q")
    try:
        assert _get(server.port, "evil.example")[0] == 200  # '*': no guard, as configured
    finally:
        server.close()
    # Listening on every address: this machine's own name is one of the service's.
    server = Server(*_roots(phantom_root), "--host", "0.0.0.0", "-q")
    try:
        line = server.lines[server.wait_for(lambda text: "listening on" in text)]
        assert socket.gethostname() in line
        assert _get(server.port, socket.gethostname())[0] == 200
        assert _get(server.port, "evil.example")[0] == 400
    finally:
        server.close()


def test_a_malformed_allowed_host_is_a_usage_error(capsys, tmp_path) -> None:
    assert main(["serve", "--data-root", str(tmp_path), "--allowed-host", "a*b"]) == 1
    err = capsys.readouterr().err
    assert "allowed hosts" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "bad.toml").write_text("[serve]\nallowed_hosts = \"localhost\"\n")
    assert main(["serve", "--config", str(tmp_path / "bad.toml")]) == 1
    assert "allowed_hosts must be a list" in capsys.readouterr().err


# ------------------------------------------------- connections and request time
def _half_request(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A connection that sends the start of a request and nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
    return sock


def _answer_of(sock: socket.socket, timeout: float) -> tuple[int, dict]:
    """The status and JSON body the service wrote before closing ``sock``."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _health(port: int, source: str) -> int:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(f"http://127.0.0.1:{port}/health").status_code


def test_connections_are_bounded_per_client_and_half_requests_time_out(phantom_root) -> None:
    server = Server(*_roots(phantom_root), "--max-connections", "30",
                    "--max-connections-per-address", "10", "--request-timeout", "2")
    held: list[socket.socket] = []
    try:
        # The Server's own client keeps one connection from its start-up check: 9 more fit.
        held = [_half_request(server.port) for _ in range(9)]
        late = [_half_request(server.port) for _ in range(5)]
        for sock in late:  # over this client's share: answered at once and closed
            status, body = _answer_of(sock, timeout=5)
            assert status == 503 and "connections one client may (10)" in body["error"]
            sock.close()
        assert _health(server.port, "127.0.0.2") == 200  # another client is answered meanwhile
        for sock in held:  # the half requests end with the request timeout, as a 408
            status, body = _answer_of(sock, timeout=30)
            assert status == 408 and "within 2 s" in body["error"]
        assert _health(server.port, "127.0.0.1") == 200  # their slots are free again
        server.wait_for(lambda line: "refused a connection from 127.0.0.1" in line)
        assert sum("refused a connection" in line for line in server.lines) == 1  # throttled
    finally:
        for sock in held:
            sock.close()
        server.close()


def test_a_thousand_half_requests_do_not_silence_the_service(phantom_root) -> None:
    # The attack as found: 1100 connections that each send half a request, against a
    # service limited to the common 1024 file descriptors, silenced it for good.
    import resource
    import shutil

    if shutil.which("prlimit") is None:
        pytest.skip("needs util-linux prlimit to give the service the usual 1024 descriptors")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip(f"this test process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1300), hard))
    server = Server(*_roots(phantom_root), "-q", prefix=["prlimit", "--nofile=1024"])
    sockets: list[socket.socket] = []
    try:
        before = server.rss_kb()
        sockets = [_half_request(server.port) for _ in range(1100)]
        start = time.monotonic()
        assert _health(server.port, "127.0.0.2") == 200
        assert time.monotonic() - start < 5
        assert server.rss_kb() - before < RSS_BOUND_KB
        # Beyond one client's 128 connections every one was answered 503 and closed.
        status, body = _answer_of(sockets[-1], timeout=5)
        assert status == 503 and "connections" in body["error"]
    finally:
        for sock in sockets:
            sock.close()
        server.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_connection_limits_from_the_config_and_their_usage_errors(phantom_root, tmp_path,
                                                                 capsys) -> None:
    config = tmp_path / "rtforge.toml"
    config.write_text("[serve]\nmax_connections_per_address = 2\nrequest_timeout = 30\n")
    server = Server(*_roots(phantom_root), "--config", str(config), "-q")
    held: list[socket.socket] = []
    try:
        held = [_half_request(server.port) for _ in range(2)]
        status, body = _answer_of(_half_request(server.port), timeout=5)
        assert status == 503 and "(2)" in body["error"]
    finally:
        for sock in held:
            sock.close()
        server.close()
    for flag in ("--max-connections", "--max-connections-per-address", "--request-timeout"):
        assert main(["serve", flag, "0"]) == 2
        assert flag in capsys.readouterr().err
    config.write_text("[serve]\nmax_connections = 0\n")
    assert main(["serve", "--config", str(config)]) == 1
    assert "max_connections must be a positive number" in capsys.readouterr().err
