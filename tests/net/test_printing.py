"""Basic Print Management SCU: dcmprscp (grayscale) and a pynetdicom print SCP (colour)."""

from __future__ import annotations

import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    BasicColorImageBox,
    BasicColorPrintManagementMeta,
    BasicFilmBox,
    BasicGrayscalePrintManagementMeta,
)

from rtforge.cli import main
from rtforge.config import Node
from rtforge.errors import InvalidInputError, NetworkError
from rtforge.net.printing import print_images, window_image
from rtforge.net.tls import server_context
from rtforge.workflows.demo import make_phantom_patient
from tests.net.peers import DCMTK_ENV, LOCALHOST, free_port, needs, stop_process, wait_for_echo
from tests.net.tls_pki import Pki, tls_flags

DCMPRSCP = "/usr/bin/dcmprscp"
CENTER, WIDTH = 40.0, 400.0
TEMPLATE = Path(__file__).resolve().parents[1] / "peers" / "dcmpstat.cfg.in"


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four 256 x 256 phantom CT slices (dcmprscp's minimum print resolution is 256)."""
    root = tmp_path_factory.mktemp("phantom")
    series = make_phantom_patient(root, size=256, nslices=4)
    return sorted(series[0].folder.glob("*.dcm"))


def _expected(path: Path, bits: int = 8) -> np.ndarray:
    """The windowed pixels, computed here from the standard's linear window."""
    ds = dcmread(path)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    low = CENTER - WIDTH / 2
    levels = np.rint(np.clip((hu - low) / WIDTH, 0, 1) * ((1 << bits) - 1))
    return levels.astype(np.uint8 if bits == 8 else np.uint16)


def test_window_image_matches_the_linear_window(slices: list[Path]) -> None:
    ds = dcmread(slices[0])
    pixels = window_image(ds, center=CENTER, width=WIDTH)
    assert pixels.dtype == np.uint8 and pixels.shape == (256, 256)
    np.testing.assert_array_equal(pixels, _expected(slices[0]))
    twelve = window_image(ds, bits=12, center=CENTER, width=WIDTH)
    assert twelve.dtype == np.uint16 and int(twelve.max()) <= 4095
    ds.PhotometricInterpretation = "MONOCHROME1"
    np.testing.assert_array_equal(window_image(ds, center=CENTER, width=WIDTH),
                                  255 - _expected(slices[0]))
    with pytest.raises(InvalidInputError, match="window width"):
        window_image(dcmread(slices[0]), center=0, width=0)


def test_bad_parameters_are_refused_before_connecting(slices: list[Path]) -> None:
    node = Node("NOBODY", LOCALHOST, free_port())
    with pytest.raises(InvalidInputError, match="STANDARD"):
        print_images(slices, node, display_format="2x2")
    with pytest.raises(InvalidInputError, match="film size"):
        print_images(slices, node, film_size="HUGE")
    with pytest.raises(InvalidInputError, match="8-bit"):
        print_images(slices, node, color=True, bits=12)


# -- dcmprscp: Basic Grayscale ----------------------------------------------------------------

@pytest.fixture
def dcmprscp(tmp_path: Path) -> Iterator[tuple[Node, Path]]:
    """dcmprscp from the shared template on a free port; (node, its database folder)."""
    needs(DCMPRSCP)
    work = tmp_path / "dcmprscp"
    for name in ("spool", "database", "log", "lut"):
        (work / name).mkdir(parents=True)
    port = free_port()
    config = work / "dcmpstat.cfg"
    config.write_text(TEMPLATE.read_text().replace("@WORK@", str(work))
                      .replace("@PORT@", str(port)))
    proc = subprocess.Popen([DCMPRSCP, "-c", str(config), "-p", "RTFORGE_PRINTER"], cwd=work,
                            env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = Node("PRINTSCP", LOCALHOST, port, timeout=10.0)
    try:
        wait_for_echo(node, proc)
        yield node, work / "database"
    finally:
        stop_process(proc)


@pytest.mark.interop
@pytest.mark.parametrize("bits", [8, 12])
def test_grayscale_2x2_film_on_dcmprscp(slices: list[Path], dcmprscp: tuple[Node, Path],
                                        bits: int) -> None:
    node, database = dcmprscp
    report = print_images(slices, node, display_format="STANDARD\\2,2", film_size="14INX17IN",
                          center=CENTER, width=WIDTH, bits=bits)
    assert (report.films, report.images, report.color) == (1, 4, False)
    assert report.printer_status == "NORMAL"
    stored = [dcmread(p) for p in sorted(database.rglob("*")) if p.is_file()
              and p.name != "index.dat"]
    images = [ds for ds in stored if "PixelData" in ds]
    assert len(images) == 4
    assert {int(ds.BitsStored) for ds in images} == {bits}
    printed = sorted(ds.pixel_array.astype(np.uint16).tobytes() for ds in images)
    assert printed == sorted(_expected(p, bits).astype(np.uint16).tobytes() for p in slices)


# -- a pynetdicom print SCP: Basic Color -------------------------------------------------------

@dataclass
class PrintSCP:
    """What a scripted print SCP received, and how it misbehaves."""

    node: Node
    image_boxes: dict[int, Dataset] = field(default_factory=dict)
    printed: int = 0
    deleted: int = 0
    fail_film_session: int | None = None
    stall: threading.Event | None = None


def _print_scp(tmp_path: Path) -> Callable[..., PrintSCP]:
    servers = []

    def start(ssl_context: ssl.SSLContext | None = None, **behaviour: object) -> PrintSCP:
        port = free_port()
        scp = PrintSCP(Node("COLORSCP", LOCALHOST, port, timeout=10.0), **behaviour)

        def n_get(event: evt.Event) -> tuple[int, Dataset]:
            if scp.stall is not None:
                scp.stall.wait(10)
            ds = Dataset()
            ds.PrinterStatus = "NORMAL"
            ds.PrinterStatusInfo = "NORMAL"
            return 0x0000, ds

        def n_create(event: evt.Event) -> tuple[int, Dataset | None]:
            request = event.request
            if request.AffectedSOPClassUID == BasicFilmBox:
                film = event.attribute_list
                columns, rows = (int(n) for n in film.ImageDisplayFormat.split("\\")[1].split(","))
                film.ReferencedImageBoxSequence = DicomSequence()
                for _ in range(columns * rows):
                    item = Dataset()
                    item.ReferencedSOPClassUID = BasicColorImageBox
                    item.ReferencedSOPInstanceUID = generate_uid()
                    film.ReferencedImageBoxSequence.append(item)
                return 0x0000, film
            if scp.fail_film_session is not None:
                return scp.fail_film_session, None
            return 0x0000, event.attribute_list

        def n_set(event: evt.Event) -> tuple[int, Dataset]:
            ds = event.modification_list
            scp.image_boxes[int(ds.ImageBoxPosition)] = ds
            return 0x0000, ds

        def n_action(event: evt.Event) -> tuple[int, None]:
            scp.printed += 1
            return 0x0000, None

        def n_delete(event: evt.Event) -> int:
            scp.deleted += 1
            return 0x0000

        ae = AE(ae_title="COLORSCP")
        for meta in (BasicColorPrintManagementMeta, BasicGrayscalePrintManagementMeta):
            ae.add_supported_context(meta, ImplicitVRLittleEndian)
        ae.network_timeout = ae.dimse_timeout = 10
        handlers = [(evt.EVT_N_GET, n_get), (evt.EVT_N_CREATE, n_create),
                    (evt.EVT_N_SET, n_set), (evt.EVT_N_ACTION, n_action),
                    (evt.EVT_N_DELETE, n_delete)]
        servers.append(ae.start_server((LOCALHOST, port), block=False, evt_handlers=handlers,
                                       ssl_context=ssl_context))
        return scp

    start.servers = servers  # type: ignore[attr-defined]
    return start


@pytest.fixture
def print_scp(tmp_path: Path) -> Iterator[Callable[..., PrintSCP]]:
    """Start scripted print SCPs; all are shut down afterwards."""
    start = _print_scp(tmp_path)
    yield start
    for server in start.servers:  # type: ignore[attr-defined]
        server.shutdown()


def test_color_2x2_film_holds_the_windowed_pixels(slices: list[Path],
                                                  print_scp: Callable[..., PrintSCP]) -> None:
    scp = print_scp()
    report = print_images(slices, scp.node, display_format="STANDARD\\2,2", color=True,
                          center=CENTER, width=WIDTH)
    assert (report.films, report.images, report.color) == (1, 4, True)
    assert scp.printed == 1 and scp.deleted == 1
    for position, path in enumerate(slices, start=1):
        item = scp.image_boxes[position].BasicColorImageSequence[0]
        assert (item.SamplesPerPixel, item.PhotometricInterpretation, item.PlanarConfiguration) \
            == (3, "RGB", 1)
        planes = np.frombuffer(item.PixelData, dtype=np.uint8).reshape(3, 256, 256)
        for plane in planes:
            np.testing.assert_array_equal(plane, _expected(path))


def test_failure_status_aborts_with_the_reason(slices: list[Path],
                                               print_scp: Callable[..., PrintSCP]) -> None:
    scp = print_scp(fail_film_session=0x0213)
    with pytest.raises(NetworkError, match=r"Film Session N-CREATE.*0x0213.*A-ABORT") as info:
        print_images(slices, scp.node, color=True)
    assert info.value.status == 0x0213
    assert scp.printed == 0


def test_printer_that_does_not_answer_in_time_aborts(slices: list[Path],
                                                     print_scp: Callable[..., PrintSCP]) -> None:
    stall = threading.Event()
    scp = print_scp(stall=stall)
    try:
        with pytest.raises(NetworkError, match=r"Printer N-GET: no response within 1 s"):
            print_images(slices[:1], scp.node, color=True, timeout=1.0)
    finally:
        stall.set()
    assert scp.printed == 0


def test_print_command(slices: list[Path], print_scp: Callable[..., PrintSCP], tmp_path: Path,
                       capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.toml").write_text("")
    monkeypatch.setenv("RTFORGE_CONFIG", str(tmp_path / "config.toml"))
    scp = print_scp()
    target = f"{scp.node.ae_title}@{LOCALHOST}:{scp.node.port}"
    assert main(["print", *map(str, slices), "--to", target, "--format", "STANDARD\\2,2",
                 "--film-size", "14INX17IN", "--color", "--window", "40,400", "--json"]) == 0
    assert '"images": 4' in capsys.readouterr().out and scp.printed == 1
    failing = print_scp(fail_film_session=0xC600)
    target = f"{failing.node.ae_title}@{LOCALHOST}:{failing.node.port}"
    assert main(["print", str(slices[0]), "--to", target, "--color", "-q"]) == 1
    assert "Film Session N-CREATE" in capsys.readouterr().err
    assert main(["print", str(slices[0]), "--to", target, "--film-size", "HUGE"]) == 2


def test_print_command_over_mutual_tls(slices: list[Path], print_scp: Callable[..., PrintSCP],
                                       pki: Pki, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.toml").write_text("")
    monkeypatch.setenv("RTFORGE_CONFIG", str(tmp_path / "config.toml"))
    scp = print_scp(ssl_context=server_context(pki.server.cert, pki.server.key, pki.ca))
    target = f"{scp.node.ae_title}@{LOCALHOST}:{scp.node.port}"
    assert main(["print", str(slices[0]), "--to", target, "--color", "-q",
                 *tls_flags(pki.ca, pki.client.cert, pki.client.key)]) == 0
    assert scp.printed == 1
    assert main(["print", str(slices[0]), "--to", target, "--color", "--timeout", "5",
                 *tls_flags(pki.ca, pki.rogue_client.cert, pki.rogue_client.key)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{target}: print job failed: TLS" in err, err
    assert scp.printed == 1
