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
from typing import BinaryIO

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian, generate_uid

import rtforge.net._part10 as part10
from rtforge.cli import main
from rtforge.config import Node, ReceiveLimits, load_config
from rtforge.errors import InvalidInputError
from rtforge.net import StorageSCP, echo, send
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
    ct_slices,
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
    network timeout was per read).  The receiver has 12 slots here, 10 of them for one
    address, so that the normal clients associate while the 10 are still held; each of
    the 10 gets an A-ABORT once a --rate-window (2 s) brings less than --min-rate.
    (With the defaults one host gets 8 of 10 slots: the next test.)
    """
    rx = receiver("--max-associations", "12", "--max-associations-per-address", "10")
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


# -- the same limits, in this process -------------------------------------------------------


def _scp(tmp_path: Path, **kwargs: object) -> StorageSCP:
    return StorageSCP(tmp_path / "rx", ae_title="RTFORGE_RX", port=0, host=LOCALHOST,
                      **kwargs).start()  # type: ignore[arg-type]


def _connect(scp: StorageSCP, source: str = ATTACKER) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect((LOCALHOST, scp.port))
    return sock


def _rejection(sock: socket.socket) -> tuple[int, int, int]:
    """(result, source, reason) of the A-ASSOCIATE-RJ the receiver answers."""
    data = b""
    while len(data) < 10:
        chunk = sock.recv(10 - len(data))
        assert chunk, "closed without an A-ASSOCIATE-RJ"
        data += chunk
    assert data[0] == 0x03, data
    return data[7], data[8], data[9]


def test_calling_ae_judged_on_the_fixed_fields(tmp_path: Path) -> None:
    """Rejected as soon as the 74 bytes naming the caller are in; on main after the whole PDU."""
    scp = _scp(tmp_path, allowed_aets=["TPS1"], acse_timeout=30)
    try:
        request = encode_associate_rq("INTRUDER", "RTFORGE_RX", [ProposedContext(
            VERIFICATION_SOP_CLASS, (ImplicitVRLittleEndian,))], 16384)
        with _connect(scp) as sock:
            sock.sendall(request[:74])  # header and fixed fields; the items never come
            assert _rejection(sock) == (1, 1, 3)  # permanent, calling AE title not recognized
        echo(Node("RTFORGE_RX", LOCALHOST, scp.port, timeout=5.0), ae_title="TPS1")
    finally:
        scp.stop()


def test_protocol_version_other_than_1_is_rejected(tmp_path: Path) -> None:
    scp = _scp(tmp_path)
    try:
        request = bytearray(associate_rq())
        request[6:8] = b"\x00\x02"
        with _connect(scp) as sock:
            sock.sendall(request)
            assert _rejection(sock) == (1, 2, 2)  # permanent, protocol version not supported
    finally:
        scp.stop()


@pytest.mark.parametrize("excess", [65, 1 << 19])
def test_pdu_beyond_the_announced_maximum_is_aborted(tmp_path: Path, excess: int) -> None:
    """16 KiB announced: on main up to 1 MiB was read (and allocated)."""
    scp = _scp(tmp_path, max_pdu=16384)
    try:
        with _connect(scp) as sock:
            sock.sendall(associate_rq())
            assert read_pdu_type(sock) == 0x02
            sock.sendall(struct.pack(">BBL", 0x04, 0, 16384 + excess) + b"\0" * 1024)
            answer = sock.recv(10)
            assert answer[:1] == b"\x07" and answer[8:10] == b"\x02\x06"  # invalid parameter
    finally:
        scp.stop()


def test_pending_connections_are_capped_per_address_and_in_all(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    limits = ReceiveLimits(acse_timeout=30, max_pending=4, max_pending_per_address=2)
    scp = _scp(tmp_path, limits=limits)
    node = Node("RTFORGE_RX", LOCALHOST, scp.port, timeout=5.0)
    idle = []
    try:
        idle += [_connect(scp, "127.0.0.3") for _ in range(2)]
        with _connect(scp, "127.0.0.3") as third:  # a third from the same address
            assert third.recv(10) == b""  # closed at once
        idle += [_connect(scp, "127.0.0.4") for _ in range(2)]
        with _connect(scp, "127.0.0.5") as fifth:  # a fifth from anywhere
            assert fifth.recv(10) == b""
        assert "closed at once: already 2 connections from 127.0.0.3" in caplog.text
        assert "closed at once: already 4 connections waiting" in caplog.text
        for sock in idle[:2]:  # the idle ones go: their places are free again
            sock.close()
        wait_until = time.monotonic() + 10  # a bound on the test, not an assertion
        while scp.pending > 2 and time.monotonic() < wait_until:
            time.sleep(0.05)
        assert scp.pending == 2
        echo(node)  # from 127.0.0.1, with the other two still waiting
    finally:
        for sock in idle:
            sock.close()
        scp.stop()
    assert scp.pending == 0


def test_admission_limits_from_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[network]\nacse_timeout = 5\nmin_rate = 0\nmax_pending_per_address = 2\n")
    limits = load_config(path).network.receive
    assert (limits.acse_timeout, limits.min_rate, limits.max_pending_per_address) == (5.0, 0, 2)
    assert limits.pdu_timeout == ReceiveLimits().pdu_timeout
    path.write_text("[network]\nmax_pending = 0\n")
    with pytest.raises(InvalidInputError, match="max_pending must be an integer from 1"):
        load_config(path)
    with pytest.raises(InvalidInputError, match="cannot exceed max_pending"):
        ReceiveLimits(max_pending=2, max_pending_per_address=3)
    # flags given on the command line win; those not given (None) and other keys are ignored
    flags = {"min_rate": None, "max_pending": 5, "out": "rx"}
    assert limits.updated(flags) == ReceiveLimits(acse_timeout=5, min_rate=0, max_pending=5,
                                                  max_pending_per_address=2)


def test_receive_refuses_a_bad_limit_in_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["receive", "--out", str(tmp_path / "rx"), "--port", "0",
                 "--min-rate", "-1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "min_rate must be an integer from 0" in err


def test_a_receiver_busy_with_its_disk_does_not_make_the_sender_slow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only time spent waiting for the peer counts against --pdu-timeout and --min-rate."""
    real = part10._write_all
    stalls = []

    def slow_disk(fp: BinaryIO, data: memoryview) -> None:
        if not stalls:
            stalls.append(fp)
            time.sleep(2.5)  # longer than the PDU timeout and the rate window below
        real(fp, data)

    monkeypatch.setattr(part10, "_write_all", slow_disk)
    limits = ReceiveLimits(pdu_timeout=1.0, min_rate=1_000_000, rate_window=1.0)
    scp = _scp(tmp_path, limits=limits, sync="none")
    try:
        sources = ct_slices(tmp_path / "ct", 2)
        report = send(sources, Node("RTFORGE_RX", LOCALHOST, scp.port, timeout=10.0))
        assert report.ok and report.sent == 2 and stalls
    finally:
        scp.stop()
    assert scp.stored == 2


def test_one_host_cannot_take_every_association_slot(
        receiver: Callable[..., ReceiverProcess]) -> None:
    """With the default 10 slots, 10 slow associations from one host get 8 (the per-address
    default); the 9th and 10th are rejected (2/3/2), and another host's echo is answered
    while the 8 are still held."""
    rx = receiver()
    held = [associated(rx) for _ in range(8)]
    try:
        for _ in range(2):
            extra = attacker_socket(rx)
            extra.sendall(associate_rq(VERIFICATION_SOP_CLASS))
            assert read_pdu_type(extra) == 0x03  # A-ASSOCIATE-RJ
            extra.close()
        echo_within_2_s(rx)  # the 8 are still associated: nothing has aborted them yet
    finally:
        for sock in held:
            sock.close()


def test_refused_connections_do_not_flood_the_log(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """100 connections over the per-address cap: one log line per address every 10 s."""
    limits = ReceiveLimits(acse_timeout=30, max_pending=8, max_pending_per_address=1)
    scp = _scp(tmp_path, limits=limits)
    idle = [_connect(scp, "127.0.0.3")]
    try:
        for _ in range(100):
            with _connect(scp, "127.0.0.3") as refused:
                assert refused.recv(10) == b""  # closed at once, every one
        lines = [r for r in caplog.records if "closed at once" in r.getMessage()]
        assert len(lines) == 1
    finally:
        for sock in idle:
            sock.close()
        scp.stop()


def test_log_throttle_counts_what_it_holds_back() -> None:
    from rtforge.net._admission import LogThrottle

    throttle = LogThrottle(interval=10.0, most_addresses=2)
    assert throttle.allow("a", now=0.0) == 0
    assert [throttle.allow("a", now=t) for t in (1.0, 2.0, 9.9)] == [None, None, None]
    assert throttle.allow("a", now=10.0) == 3  # the next line says 3 were held back
    assert throttle.allow("b", now=10.0) == 0 and throttle.allow("c", now=10.0) == 0
    assert throttle.allow("a", now=11.0) == 0  # forgotten (the oldest of 3 > 2 addresses)
