"""``rtforge serve``: the DRR/DVH service, a real server on 127.0.0.1 and a real HTTP client."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from rtforge.cli import main
from tests.test_service import TRUE_VOLUME_CM3, write_dose_case

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

GEOMETRY = {"gantry": 90, "isocenter": [0, 0, 0], "rows": 12, "columns": 16,
            "pixel_spacing": [25, 25]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[httpx.Client]:
    """``rtforge serve`` on a free loopback port, at most two studies cached."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rtforge", "serve", "--host", "127.0.0.1",
                             "--port", str(port), "--max-studies", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"rtforge serve did not start: "
                                       f"{proc.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.1)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def dose_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_dose_case(tmp_path_factory.mktemp("serve-dose"))


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


@pytest.mark.parametrize("path, body, status, words", [
    ("/drr", b"{not json", 400, "not JSON"),
    ("/drr", b"[1, 2]", 400, "JSON object"),
    ("/drr", {"geometries": [GEOMETRY]}, 422, "'ct' is required"),
    ("/drr", {"ct": "/no/such/ct", "geometries": [GEOMETRY]}, 404, "no such file"),
    ("/drr", {"ct": "CT", "geometries": []}, 422, "1 to 360"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "rows": "12"}]}, 422,
     "geometries[0]: 'rows' must be an integer"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "isocenter": [0, 0]}]}, 422, "3 numbers"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "sid": 500}]}, 422, "geometries[0]"),
    ("/drr", {"ct": "CT", "geometries": [{**GEOMETRY, "tilt": 1}]}, 422, "unknown field(s) tilt"),
    ("/drr", {"ct": "CT", "geometries": [GEOMETRY], "method": "magic"}, 422, "siddon"),
    ("/dvh", {"dose": "DOSE", "structure_set": "SS", "rois": ["Heart"]}, 422, "no ROI 'Heart'"),
    ("/dvh", {"dose": "DOSE", "structure_set": "SS", "rois": [True]}, 422, "'rois'"),
    ("/dvh", {"dose": "DOSE", "structure_set": "SS", "rois": [1], "dose_at_volume": [150]},
     422, "percentages"),
])
def test_bad_requests_get_clear_4xx(server, phantom_patient, dose_case, path, body, status,
                                    words) -> None:
    paths = {"CT": str(phantom_patient[0].folder), "DOSE": str(dose_case[1]),
             "SS": str(dose_case[0])}
    if isinstance(body, dict):
        body = {k: paths.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
        answer = server.post(path, json=body)
    else:
        answer = server.post(path, content=body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]


def test_cache_stays_bounded(server, phantom_patient, dose_case) -> None:
    for series in phantom_patient:
        assert server.post("/studies", json={"ct": str(series.folder)}).status_code == 200
    assert server.post("/studies", json={"dose": str(dose_case[1]),
                                         "structure_set": str(dose_case[0])}).status_code == 200
    health = server.get("/health").json()
    assert health == {"status": "ok", "studies": 2, "max_studies": 2}


def test_serve_usage_errors(capsys) -> None:
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["serve", "--max-studies", "0"]) == 2
