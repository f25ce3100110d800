"""C-STORE throughput on loopback, side by side, in one run.

Synthesizes a CT series (default 200 slices of 512x512 int16, random pixels,
Explicit VR Little Endian) and times, with dcmtk under ``TCP_NODELAY=1``:

Senders, into dcmtk ``storescp`` (``+B``):

- ``rtforge.net.send`` (our Storage SCU);
- stock pynetdicom: ``AE.associate`` and a plain ``send_c_store(path)`` loop;
- dcmtk ``storescu``.

Receivers, fed by dcmtk ``storescu``, one row per durability mode:

- ``rtforge receive --sync object`` (the default; ``StorageSCP(sync="object")``):
  each object written under a temporary name, flushed to disk with
  fdatasync, renamed and its folder flushed with fsync before success is
  answered;
- ``rtforge receive --sync none`` (``--no-fsync``): the same without the two
  flushes (still a temporary name, then a rename);
- stock pynetdicom: ``AE.start_server`` with the ``EVT_C_STORE`` handler of
  pynetdicom's documentation, writing ``event.encoded_dataset()`` (a Part 10
  file: preamble, File Meta Information and the data set as received, like
  ours) straight to its final name (no fsync); this is the reference of the
  target;
- the same handler made as durable as ``--sync object`` (temporary name,
  fdatasync, rename, folder fsync), the like-for-like reference of the default;
- dcmtk ``storescp`` (``+B``: written as received, no fsync).

Fairness: every receiver gets the same ``storescu`` command (same files,
same order, same maximum PDU of 16384 bytes, dcmtk's default, announced by
every peer), an untimed warm-up association, and writes under the same work
folder (the benchmark checks that it is one filesystem); after every timed
run the files each receiver wrote are counted (all ``--slices`` of them, or
the benchmark stops).  Runs are round-robin over the variants, ``--repeat``
times, so that machine noise spreads evenly; the median is reported with
images/s, MB/s and the ratios to stock pynetdicom and to dcmtk, and the
spread (min to max) of each row.  Before and after the runs it times making
one new file of a slice's size durable on the same filesystem (write,
fdatasync, rename, folder fsync): the floor of what ``--sync object`` adds
per object, which other work writing to the disk makes vary tenfold.

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
from rtforge.net.echo import echo
from rtforge.net.receiver import StorageSCP
from rtforge.net.store import send

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


def count_files(folder: Path) -> int:
    """Files a receiver wrote (hidden entries left out: its temporary folder, its lock file)."""
    return sum(1 for path in folder.rglob("*") if path.is_file()
               and not any(part.startswith(".") for part in path.relative_to(folder).parts))


def empty(folder: Path) -> None:
    """Remove what a receiver wrote (its folder stays)."""
    for child in folder.iterdir():
        if child.name.startswith("."):  # the receiver's temporary folder and lock file
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


def start_rtforge(folder: Path, sync: str = "object") -> Receiver:
    scp = StorageSCP(folder, ae_title="RTFORGE_RX", port=0, host=HOST, max_pdu=MAX_PDU,
                     sync=sync).start()
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

OURS_OBJECT = "rtforge receive --sync object (default)"
OURS_NONE = "rtforge receive --sync none (--no-fsync)"
STOCK = "stock pynetdicom SCP (handler writes)"
STOCK_DURABLE = "stock pynetdicom SCP + fsync, rename"
DCMTK_SCP = "dcmtk storescp"
DCMTK_SENDER = "dcmtk storescu"
STOCK_SENDER = "stock pynetdicom (send_c_store loop)"


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

        load_before = _load()
        slice_bytes = files[0].stat().st_size
        flush_before = flush_latency(work / "flush-probe", slice_bytes)
        results: dict[str, list[float]] = {}
        sink = start_storescp(work / "storescp-in")
        senders = {"rtforge send": send_rtforge, STOCK_SENDER: send_pynetdicom,
                   DCMTK_SENDER: send_storescu}
        try:
            wait_ready(sink.node)
            for sender in senders.values():
                sender(warm, sink.node)
            for _ in range(args.repeat):
                for name, sender in senders.items():
                    empty(sink.folder)
                    results.setdefault(name, []).append(
                        timed(name, lambda s=sender: s(files, sink.node)))
                    written = count_files(sink.folder)
                    if written != args.slices:
                        raise RuntimeError(f"{name}: storescp wrote {written} files of {args.slices}")
        finally:
            sink.stop()

        receivers = {OURS_OBJECT: start_rtforge,
                     OURS_NONE: partial(start_rtforge, sync="none"),
                     STOCK: start_pynetdicom,
                     STOCK_DURABLE: partial(start_pynetdicom, durable=True),
                     DCMTK_SCP: start_storescp}
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
        devices = {receiver.folder.stat().st_dev  # type: ignore[attr-defined]
                   for receiver in receivers.values()}
        if len(devices) != 1:
            raise RuntimeError("the receivers write to different filesystems: not comparable")
        try:
            for _ in range(args.repeat):
                for name, receiver in receivers.items():
                    empty(receiver.folder)  # type: ignore[attr-defined]
                    results[name].append(timed(
                        name, lambda r=receiver: send_storescu(files, r.node)))  # type: ignore[attr-defined]
                    written = count_files(receiver.folder)  # type: ignore[attr-defined]
                    if written != args.slices:
                        raise RuntimeError(f"{name} wrote {written} files of {args.slices}")
        finally:
            for receiver in receivers.values():
                receiver.stop()  # type: ignore[attr-defined]
        flush_after = flush_latency(work / "flush-probe", slice_bytes)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    rate = {name: args.slices / statistics.median(times) for name, times in results.items()}
    if args.json:
        print(json.dumps({"slices": args.slices, "size": args.size, "megabytes": megabytes,
                          "repeat": args.repeat, "seconds": results, "images_per_s": rate,
                          "default_sync": "object", "flush_ms": [flush_before, flush_after],
                          "repeated_runs": LOST}, indent=2))
        return 0
    print(f"C-STORE of {args.slices} CT slices of {args.size}x{args.size} ({megabytes:.1f} MB) "
          f"on loopback, median of {args.repeat} runs; load average before/after: "
          f"{load_before} / {_load()}")
    groups = (("sender -> dcmtk storescp", list(senders), STOCK_SENDER, DCMTK_SENDER),
              ("dcmtk storescu -> receiver", list(receivers), STOCK, DCMTK_SCP))
    for title, members, stock_name, dcmtk_name in groups:
        stock, dcmtk = rate[stock_name], rate[dcmtk_name]
        print(f"\n{title:<44}{'images/s':>9}{'MB/s':>8}{'x stock':>9}{'x dcmtk':>9}{'paired':>8}"
              f"  runs (s): median [min-max]")
        for name in members:
            times = results[name]
            print(f"  {name:<42}{rate[name]:>9.0f}{rate[name] * megabytes / args.slices:>8.1f}"
                  f"{rate[name] / stock:>9.2f}{rate[name] / dcmtk:>9.2f}"
                  f"{paired(results[stock_name], times):>8.2f}  "
                  f"{statistics.median(times):.3f} [{min(times):.3f}-{max(times):.3f}]")
    print("\npaired: the median over rounds of (stock's time / this row's time) in the same round")
    print(f"like for like (same durability): --sync object / durable stock handler "
          f"{rate[OURS_OBJECT] / rate[STOCK_DURABLE]:.2f}x (paired "
          f"{paired(results[STOCK_DURABLE], results[OURS_OBJECT]):.2f}x), --sync none / stock "
          f"handler {rate[OURS_NONE] / rate[STOCK]:.2f}x (paired "
          f"{paired(results[STOCK], results[OURS_NONE]):.2f}x)")
    print("default of rtforge receive: --sync object (each object on the disk before success)")
    print(f"disk flush of one new {slice_bytes / 1024:.0f} KiB file (write, fdatasync, rename, folder "
          f"fsync), median: {flush_before:.2f} ms before, {flush_after:.2f} ms after the runs")
    for name, count in LOST.items():
        print(f"{name}: {count} run(s) repeated: pynetdicom lost a C-STORE response")
    return 0


def flush_latency(folder: Path, size: int, count: int = 20) -> float:
    """Median milliseconds to make one new file of ``size`` bytes durable, as ``--sync object`` does.

    Write under a temporary name, fdatasync, rename, fsync the folder: the
    floor of what durability costs per object on this disk right now (other
    work writing to the same filesystem makes it vary a lot).
    """
    folder.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    times = []
    for index in range(count):
        temp, final = folder / f"{index}.part", folder / f"{index}.dcm"
        start = time.perf_counter()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
        folder_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)
        times.append(time.perf_counter() - start)
    for path in folder.iterdir():
        path.unlink()
    return 1e3 * statistics.median(times)


def paired(reference: list[float], times: list[float]) -> float:
    """Median of the per-round speed-ups: runs of one round share the machine's mood."""
    return statistics.median(r / t for r, t in zip(reference, times, strict=True))


def _load() -> str:
    """The 1-minute load average (other work on the machine skews the timings)."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


if __name__ == "__main__":
    sys.exit(main())
