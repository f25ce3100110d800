"""C-STORE throughput on loopback, side by side, in one run.

Synthesizes a CT series (default 200 slices of 512x512 int16, random pixels,
Explicit VR Little Endian) and times, with dcmtk under ``TCP_NODELAY=1``:

Senders, into dcmtk ``storescp`` (``+B``):

- ``rtforge.net.send`` (our Storage SCU);
- stock pynetdicom: ``AE.associate`` and a plain ``send_c_store(path)`` loop;
- dcmtk ``storescu``.

Receivers, fed by dcmtk ``storescu``:

- ``rtforge.net.StorageSCP`` (our Storage SCP: each object parsed, written,
  flushed to disk with fdatasync, renamed and its folder flushed before
  success is answered);
- stock pynetdicom: ``AE.start_server`` with the ``EVT_C_STORE`` handler of
  pynetdicom's documentation, writing ``event.encoded_dataset()`` (no fsync);
  this is the reference of the target;
- the same handler made as durable as ours (temporary name, fdatasync,
  rename, folder fsync), to show what the durability costs either way;
- dcmtk ``storescp`` (no fsync);
- ``rtforge receive --no-fsync`` (``durable=False``), our SCP without the two
  flushes, to compare the transports alone.

Every variant gets an untimed warm-up, then ``--repeat`` timed runs,
round-robin so that machine noise spreads evenly; the median is reported with
images/s, MB/s and the ratios to stock pynetdicom and to dcmtk.  Every peer
announces a maximum PDU of 16384 bytes (dcmtk's default).

Usage::

    python bench/compare_store.py [--slices 200] [--size 512] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt

from rtforge.config import Node
from rtforge.net import StorageSCP, echo, send

STORESCP = "/usr/bin/storescp"
STORESCU = "/usr/bin/storescu"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
HOST = "127.0.0.1"
MAX_PDU = 16384


def make_series(folder: Path, slices: int, size: int) -> list[Path]:
    """A CT series of random int16 pixels, one Part 10 file per slice."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240601)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for k in range(slices):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.PatientName = "BENCH^CT"
        ds.PatientID = "BENCH-STORE"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality = "CT"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-0.5 * size, -0.5 * size, 2.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1, 1]
        ds.SliceThickness = 2
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = rng.integers(-1024, 3072, (size, size), dtype=np.int16).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"CT{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_ready(node: Node, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            echo(node)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def empty(folder: Path) -> None:
    """Remove what a receiver wrote (its folder stays)."""
    for child in folder.iterdir():
        if child.name == ".incoming":
            continue
        shutil.rmtree(child) if child.is_dir() else child.unlink()


# -- senders into storescp -------------------------------------------------------------------

def send_rtforge(files: list[Path], node: Node) -> None:
    report = send(files, node, ae_title="RTFORGE")
    if not report.ok:
        raise RuntimeError(f"rtforge send failed: {report.failed}")


class LostResponse(RuntimeError):
    """pynetdicom's association thread took a C-STORE response meant for send_c_store.

    Its reactor logs "Received unexpected C-STORE service message" and the
    caller times out: a race of pynetdicom's polling design, seen here under
    load.  The benchmark repeats such a run and counts it.
    """


def send_pynetdicom(files: list[Path], node: Node) -> None:
    ae = AE(ae_title="PYNETDICOM")
    ae.dimse_timeout = 5  # a lost response (see LostResponse) must not cost 30 s
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    if not assoc.is_established:
        raise RuntimeError("pynetdicom could not associate")
    try:
        for path in files:
            status = assoc.send_c_store(path)
            if not status:
                raise LostResponse(f"no response to the C-STORE of {path}")
            if status.Status != 0:
                raise RuntimeError(f"pynetdicom C-STORE answered 0x{status.Status:04X}")
    finally:
        assoc.release()


def send_storescu(files: list[Path], node: Node) -> None:
    subprocess.run([STORESCU, "+sd", "-aet", "STORESCU", "-aec", node.ae_title, node.host,
                    str(node.port), str(files[0].parent)], env=DCMTK_ENV, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- receivers fed by storescu ---------------------------------------------------------------

class Receiver:
    """A running receiver: its node, the folder it writes and how to stop it."""

    def __init__(self, node: Node, folder: Path, stop: Callable[[], None]) -> None:
        self.node, self.folder, self.stop = node, folder, stop


def start_rtforge(folder: Path, durable: bool = True) -> Receiver:
    scp = StorageSCP(folder, ae_title="RTFORGE_RX", port=0, host=HOST, max_pdu=MAX_PDU,
                     durable=durable).start()
    return Receiver(Node("RTFORGE_RX", HOST, scp.port), folder, scp.stop)


def start_pynetdicom(folder: Path, durable: bool = False) -> Receiver:
    folder.mkdir(parents=True, exist_ok=True)

    def on_store(event: evt.Event) -> int:  # pynetdicom's documented fast handler
        with open(folder / event.request.AffectedSOPInstanceUID, "wb") as f:
            f.write(event.encoded_dataset())
        return 0x0000

    def on_store_durable(event: evt.Event) -> int:  # the same, with our durability
        final = folder / event.request.AffectedSOPInstanceUID
        temp = final.with_suffix(".part")
        with open(temp, "wb") as f:
            f.write(event.encoded_dataset())
            f.flush()
            os.fdatasync(f.fileno())
        os.replace(temp, final)
        fd = os.open(folder, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        return 0x0000

    ae = AE(ae_title="PYNETDICOM_RX")
    ae.maximum_pdu_size = MAX_PDU
    ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_supported_context("1.2.840.10008.1.1")
    handler = on_store_durable if durable else on_store
    server = ae.start_server((HOST, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, handler)])
    return Receiver(Node("PYNETDICOM_RX", HOST, server.socket.getsockname()[1]), folder,
                    server.shutdown)


def start_storescp(folder: Path) -> Receiver:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen([STORESCP, "-aet", "STORESCP", "-od", str(folder), "+B", str(port)],
                            env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    return Receiver(Node("STORESCP", HOST, port), folder, stop)


LOST: dict[str, int] = {}


def timed(name: str, run: Callable[[], None]) -> float:
    """Seconds of one run; a run that lost a response is repeated (three tries)."""
    for attempt in range(3):
        start = time.perf_counter()
        try:
            run()
        except LostResponse:
            LOST[name] = LOST.get(name, 0) + 1
            if attempt == 2:
                raise
            continue
        return time.perf_counter() - start
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    for binary in (STORESCP, STORESCU):
        if not Path(binary).exists():
            sys.exit(f"{binary} is missing: apt-get install dcmtk")
    work = args.work or Path(tempfile.mkdtemp(prefix="rtforge-bench-store-"))
    try:
        files = make_series(work / "series", args.slices, args.size)
        warm = make_series(work / "warm", 5, args.size)
        megabytes = sum(p.stat().st_size for p in files) / 1e6

        results: dict[str, list[float]] = {}
        sink = start_storescp(work / "storescp-in")
        senders = {"rtforge send": send_rtforge, "stock pynetdicom (send_c_store loop)":
                   send_pynetdicom, "dcmtk storescu": send_storescu}
        try:
            wait_ready(sink.node)
            for sender in senders.values():
                sender(warm, sink.node)
            for _ in range(args.repeat):
                for name, sender in senders.items():
                    empty(sink.folder)
                    results.setdefault(name, []).append(
                        timed(name, lambda s=sender: s(files, sink.node)))
        finally:
            sink.stop()

        receivers = {"rtforge receive (fsync each)": start_rtforge,
                     "stock pynetdicom SCP (handler writes)": start_pynetdicom,
                     "dcmtk storescp": start_storescp,
                     "stock pynetdicom SCP + fsync, rename": partial(start_pynetdicom,
                                                                    durable=True),
                     "rtforge receive --no-fsync": partial(start_rtforge, durable=False)}
        for name, start in receivers.items():
            receiver = start(work / f"in-{len(results)}")
            try:
                wait_ready(receiver.node)
                send_storescu(warm, receiver.node)
                results[name] = []
            except BaseException:
                receiver.stop()
                raise
            receivers[name] = receiver  # type: ignore[assignment]
        try:
            for _ in range(args.repeat):
                for name, receiver in receivers.items():
                    empty(receiver.folder)  # type: ignore[attr-defined]
                    results[name].append(timed(
                        name, lambda r=receiver: send_storescu(files, r.node)))  # type: ignore[attr-defined]
        finally:
            for receiver in receivers.values():
                receiver.stop()  # type: ignore[attr-defined]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    rate = {name: args.slices / statistics.median(times) for name, times in results.items()}
    names = list(results)
    groups = (("sender -> dcmtk storescp", names[:3]), ("dcmtk storescu -> receiver", names[3:]))
    durable_stock = names[6]
    if args.json:
        print(json.dumps({"slices": args.slices, "size": args.size, "megabytes": megabytes,
                          "repeat": args.repeat, "seconds": results, "images_per_s": rate,
                          "repeated_runs": LOST}, indent=2))
        return 0
    print(f"C-STORE of {args.slices} CT slices of {args.size}x{args.size} ({megabytes:.1f} MB) "
          f"on loopback, median of {args.repeat} runs")
    for title, members in groups:
        stock, dcmtk = rate[members[1]], rate[members[2]]
        print(f"\n{title:<40}{'images/s':>10}{'MB/s':>9}{'x stock':>9}{'x dcmtk':>9}  runs (s)")
        for name in members:
            runs = " ".join(f"{t:.3f}" for t in results[name])
            print(f"  {name:<38}{rate[name]:>10.0f}{rate[name] * megabytes / args.slices:>9.1f}"
                  f"{rate[name] / stock:>9.2f}{rate[name] / dcmtk:>9.2f}  {runs}")
    ours = names[3]
    print(f"\nrtforge receive against the equally durable pynetdicom handler: "
          f"{rate[ours] / rate[durable_stock]:.2f}x")
    for name, count in LOST.items():
        print(f"{name}: {count} run(s) repeated: pynetdicom lost a C-STORE response")
    return 0


if __name__ == "__main__":
    sys.exit(main())
