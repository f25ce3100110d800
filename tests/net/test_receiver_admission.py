"""Admission control of ``rtforge receive`` under attack, on loopback with real sockets.

Each attack comes from 127.0.0.3 (all of 127/8 is loopback on Linux), the
normal clients (our C-ECHO, dcmtk storescu) from 127.0.0.1.  The receiver
runs as a child process with short limits so that each attack lasts
seconds; while it lasts, a C-ECHO with a 2 s client timeout succeeds, the
receiver's resident memory stays within :data:`RSS_BOUND_KIB` of what it was
before, and every object storescu sent meanwhile is stored.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian, generate_uid

from rtforge.config import Node
from rtforge.net import echo
from rtforge.net._dimse import C_STORE_RQ, Command, encode_command
from rtforge.net._upper_layer import ProposedContext, encode_associate_rq
from rtforge.net.echo import VERIFICATION_SOP_CLASS
from tests.datafiles import pydicom_file
from tests.net.peers import (
    DCMTK_ENV,
    LOCALHOST,
    SMALL_FILES,
    STORESCU,
    ReceiverProcess,
    needs,
    received_files,
    start_receiver,
    stop_process,
)

pytestmark = pytest.mark.interop

ATTACKER = "127.0.0.3"
#: How much the receiver's VmRSS may grow during an attack.
RSS_BOUND_KIB = 100 * 1024
#: Short limits, so that each attack takes seconds.
LIMITS = ("--acse-timeout", "3", "--pdu-timeout", "5", "--network-timeout", "10",
          "--min-rate", "1000", "--rate-window", "2", "--max-pending", "40",
          "--max-pending-per-address", "8")


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` (VmRSS of /proc/PID/status), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def attacker_socket(rx: ReceiverProcess) -> socket.socket:
    """A TCP connection to the receiver from :data:`ATTACKER`."""
    sock = socket.socket()
    sock.bind((ATTACKER, 0))
    sock.settimeout(10)
    sock.connect((rx.node.host, rx.node.port))
    return sock


def associate_rq(abstract_syntax: str = VERIFICATION_SOP_CLASS, max_pdu: int = 16384) -> bytes:
    return encode_associate_rq("ATTACKER", "RTFORGE_RX",
                               [ProposedContext(abstract_syntax, (ImplicitVRLittleEndian,))],
                               max_pdu)


def read_pdu_type(sock: socket.socket) -> int | None:
    """The type of the next PDU the receiver sends (its body is skipped); None on a close."""
    try:
        header = b""
        while len(header) < 6:
            chunk = sock.recv(6 - len(header))
            if not chunk:
                return None
            header += chunk
        pdu_type, _, length = struct.unpack(">BBL", header)
        while length:
            chunk = sock.recv(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)
        return pdu_type
    except ConnectionResetError:
        return None


def associated(rx: ReceiverProcess, abstract_syntax: str = VERIFICATION_SOP_CLASS) -> socket.socket:
    """An attacker's connection with an accepted association on context 1."""
    sock = attacker_socket(rx)
    sock.sendall(associate_rq(abstract_syntax))
    assert read_pdu_type(sock) == 0x02  # A-ASSOCIATE-AC
    return sock


def closed_by_receiver(sock: socket.socket) -> bool:
    """Whether the receiver closes (or aborts) ``sock`` within the socket's timeout."""
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
            if data[0] == 0x07:  # A-ABORT
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def echo_within_2_s(rx: ReceiverProcess) -> None:
    """C-ECHO from 127.0.0.1 with a 2 s client timeout (raises if it fails)."""
    echo(Node(rx.node.ae_title, LOCALHOST, rx.node.port, timeout=2.0))


class NormalTraffic:
    """dcmtk storescu sending the small test files, and C-ECHOs, while an attack runs."""

    def __init__(self, rx: ReceiverProcess) -> None:
        self.rx = rx
        self.rss_start = rss_kib(rx.proc.pid)
        self.rss_most = self.rss_start
        self.sources = [pydicom_file(name) for name in SMALL_FILES]

    def sample(self) -> None:
        self.rss_most = max(self.rss_most, rss_kib(self.rx.proc.pid))

    def run(self, echoes: int = 3) -> None:
        """Echo, send every file with storescu, echo again; sample memory in between."""
        for _ in range(echoes):
            self.sample()
            echo_within_2_s(self.rx)
        subprocess.run([STORESCU, "-aet", "NORMAL", "-aec", "RTFORGE_RX", "-to", "5", "-ta", "5",
                        "-td", "5", LOCALHOST, str(self.rx.node.port),
                        *map(str, self.sources)], env=DCMTK_ENV, check=True,
                       capture_output=True, timeout=60)
        for _ in range(echoes):
            self.sample()
            echo_within_2_s(self.rx)

    def check(self) -> None:
        """Memory stayed bounded; every object sent is stored."""
        self.sample()
        assert self.rss_most - self.rss_start < RSS_BOUND_KIB, (self.rss_start, self.rss_most)
        stored = {dcmread(p, stop_before_pixels=True).SOPInstanceUID
                  for p in received_files(self.rx.out)}
        sent = {dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in self.sources}
        assert sent <= stored


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Callable[..., ReceiverProcess]]:
    needs(STORESCU)
    started: list[ReceiverProcess] = []

    def start(*extra: str) -> ReceiverProcess:
        rx = start_receiver(tmp_path, *LIMITS, *extra)
        started.append(rx)
        return rx

    yield start
    for rx in started:
        stop_process(rx.proc)


def _stop_all(workers: list[threading.Thread], stop: threading.Event) -> None:
    stop.set()
    for worker in workers:
        worker.join(30)


def test_200_idle_connections(receiver: Callable[..., ReceiverProcess]) -> None:
    """On main every echo failed for 30 s, and connections past 18 were closed unheard."""
    rx = receiver()
    traffic = NormalTraffic(rx)
    idle = []
    for _ in range(200):
        with contextlib.suppress(OSError):  # the receiver may close one before we see it open
            idle.append(attacker_socket(rx))
    try:
        traffic.run()
        # Every idle connection is closed: at once past the caps, or at --acse-timeout.
        for sock in idle:
            sock.settimeout(10)
            assert closed_by_receiver(sock)
        traffic.check()
    finally:
        for sock in idle:
            sock.close()


def test_18_slow_loris_writers(receiver: Callable[..., ReceiverProcess]) -> None:
    """Each writer sends an A-ASSOCIATE-RQ 1 byte every 2 s and reconnects when closed.

    On main the 30 s limit was per read: the echo failed for as long as the
    attack lasted.  Every writer's connection is closed (the whole request
    has --acse-timeout, 3 s here) while the attack goes on.
    """
    rx = receiver()
    traffic = NormalTraffic(rx)
    stop = threading.Event()
    closes = [0] * 18
    request = associate_rq()

    def writer(index: int) -> None:
        while not stop.is_set():
            try:
                with attacker_socket(rx) as sock:
                    for byte in request:
                        sock.sendall(bytes([byte]))
                        if stop.wait(2.0):
                            return
            except OSError:
                closes[index] += 1
                stop.wait(0.2)

    workers = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(18)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)  # let every writer connect and start trickling
        traffic.run()
        deadline = time.monotonic() + 20  # a bound on the test, not an assertion
        while min(closes) == 0 and time.monotonic() < deadline:
            traffic.sample()
            time.sleep(0.5)
    finally:
        _stop_all(workers, stop)
    assert min(closes) > 0, closes
    traffic.check()


def test_10_slow_associations(receiver: Callable[..., ReceiverProcess]) -> None:
    """10 associations whose message trickles in (1 byte every 5 s) are aborted.

    On main they held their slots for as long as the sender liked (the 60 s
    network timeout was per read).  The receiver has 12 slots here, so that
    the normal clients associate while the 10 are still held; each of the 10
    gets an A-ABORT once a --rate-window (2 s) brings less than --min-rate.
    """
    rx = receiver("--max-associations", "12")
    traffic = NormalTraffic(rx)
    slow = [associated(rx) for _ in range(10)]
    stop = threading.Event()
    header = struct.pack(">BBL", 0x04, 0, 100)  # a P-DATA-TF of 100 bytes

    def trickle(sock: socket.socket) -> None:
        for byte in header:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
            if stop.wait(5.0):
                return

    workers = [threading.Thread(target=trickle, args=(sock,), daemon=True) for sock in slow]
    for worker in workers:
        worker.start()
    try:
        traffic.run(echoes=1)
        for sock in slow:
            sock.settimeout(15)
            assert read_pdu_type(sock) == 0x07  # A-ABORT
        echo_within_2_s(rx)
    finally:
        _stop_all(workers, stop)
        for sock in slow:
            sock.close()
    traffic.check()


def _store_command(max_declared: int) -> tuple[bytes, int]:
    """A C-STORE-RQ command PDV and the PDV header of its data set, within ``max_declared``."""
    command = Command(C_STORE_RQ, message_id=1, affected_sop_class_uid=CTImageStorage,
                      affected_sop_instance_uid=generate_uid(), priority=0)
    command.has_data_set = True
    encoded = encode_command(command)
    command_pdv = struct.pack(">LBB", len(encoded) + 2, 1, 0x03) + encoded
    return command_pdv, max_declared - len(command_pdv) - 4


def test_3_gib_declared_pdu(receiver: Callable[..., ReceiverProcess]) -> None:
    """With --max-pdu 1 GiB, on main one connection declaring 3 GiB took 1.7 GB.

    A P-DATA-TF declaring 3 GiB (beyond the announced maximum) is aborted at
    its header; one declaring 1 GiB (allowed) followed by 8 MiB of data
    costs no more than the data, and is aborted once it stalls.
    """
    rx = receiver("--max-pdu", str(1 << 30))
    traffic = NormalTraffic(rx)
    huge = associated(rx, CTImageStorage)
    huge.sendall(struct.pack(">BBL", 0x04, 0, 3 << 30) + b"\0" * 65536)
    huge.settimeout(10)
    assert read_pdu_type(huge) == 0x07  # A-ABORT
    huge.close()

    allowed = associated(rx, CTImageStorage)
    command_pdv, data_length = _store_command(1 << 30)
    allowed.sendall(struct.pack(">BBL", 0x04, 0, 1 << 30) + command_pdv
                    + struct.pack(">LBB", data_length, 1, 0x00))
    for _ in range(8):
        allowed.sendall(b"\0" * (1 << 20))
        traffic.sample()
    try:
        traffic.run()
        allowed.settimeout(15)
        assert closed_by_receiver(allowed)  # stalled: aborted at the next rate window
    finally:
        allowed.close()
    traffic.check()
