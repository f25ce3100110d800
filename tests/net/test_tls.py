"""DICOM over TLS from the command line, against real peers (issue 15, item 3).

Peers: ``rtforge receive --tls-cert --tls-key --tls-ca`` (mutual TLS
required) as a child process, and dcmtk's ``storescp +tls`` (which requires
a client certificate by default, ``-rc``).  The certificates are made with
``openssl`` for each module (:mod:`tests.net.tls_pki`).
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtforge.cli import main
from rtforge.config import Node, load_config
from rtforge.errors import InvalidInputError
from rtforge.net import StorageSCP
from rtforge.net.tls import client_context, listener_context, server_context
from tests.net.archive_peers import RESTORE_AET, phantom_store
from tests.net.peers import (
    LOCALHOST,
    ORTHANC,
    ORTHANC_CONFIG,
    Peer,
    ReceiverProcess,
    free_port,
    needs,
    received_files,
    run_storescp,
    start_receiver,
    stop_process,
    wait_for_echo,
)
from tests.net.tls_pki import Pki, client_settings, tls_flags

PATIENT = "RTF-PHANTOM-001"


def _address(node: Node) -> str:
    return f"{node.ae_title}@{node.host}:{node.port}"


@pytest.fixture
def tls_receiver(tmp_path: Path, pki: Pki) -> Iterator[ReceiverProcess]:
    rx = start_receiver(tmp_path, "--tls-cert", str(pki.server.cert), "--tls-key",
                        str(pki.server.key), "--tls-ca", str(pki.ca), node_settings=client_settings(pki))
    yield rx
    stop_process(rx.proc)


def _one_line_failure(capsys: pytest.CaptureFixture[str], command: str, node: Node) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"rtforge {command}: {_address(node)}: ") and "TLS" in err, err
    return err


def test_echo_and_send_with_the_client_certificate(tls_receiver: ReceiverProcess, pki: Pki,
                                                   small_files: list[Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    flags = tls_flags(pki.ca, pki.client.cert, pki.client.key)
    assert main(["echo", _address(tls_receiver.node), *flags]) == 0
    assert "C-ECHO success" in capsys.readouterr().out
    assert main(["send", *map(str, small_files), "--to", _address(tls_receiver.node), "-q",
                 *flags]) == 0
    assert len(received_files(tls_receiver.out)) == len(small_files)


def test_plain_dicom_and_missing_client_certificate_are_refused(
        tls_receiver: ReceiverProcess, pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    node = tls_receiver.node
    assert main(["echo", _address(node), "--timeout", "5", *tls_flags(pki.ca)]) == 1
    err = _one_line_failure(capsys, "echo", node)
    assert "no client certificate" in err
    assert main(["echo", _address(node), "--timeout", "5"]) == 1  # no TLS at all
    assert capsys.readouterr().err.count("\n") == 1


def test_a_client_certificate_of_another_ca_is_refused(
        tls_receiver: ReceiverProcess, pki: Pki, small_files: list[Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    node = tls_receiver.node
    rogue = tls_flags(pki.ca, pki.rogue_client.cert, pki.rogue_client.key)
    assert main(["echo", _address(node), "--timeout", "5", *rogue]) == 1
    assert str(pki.rogue_client.cert) in _one_line_failure(capsys, "echo", node)
    assert main(["send", str(small_files[0]), "--to", _address(node), "--timeout", "5",
                 *rogue]) == 1
    assert "TLS" in capsys.readouterr().err
    assert received_files(tls_receiver.out) == []


def test_a_server_certificate_of_another_ca_is_refused(
        tls_receiver: ReceiverProcess, pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    node = tls_receiver.node
    assert main(["echo", _address(node), *tls_flags(pki.rogue_ca, pki.client.cert,
                                                  pki.client.key)]) == 1
    err = _one_line_failure(capsys, "echo", node)
    assert "certificate is not accepted" in err and str(pki.rogue_ca) in err


def test_an_expired_server_certificate_is_refused(tmp_path: Path, pki: Pki,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    context = server_context(pki.expired_server.cert, pki.expired_server.key)
    with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST, ssl_context=context) as server:
        node = Node(server.ae_title, LOCALHOST, server.port)
        assert main(["echo", _address(node), *tls_flags(pki.ca)]) == 1
        assert "certificate has expired" in _one_line_failure(capsys, "echo", node)


def test_the_host_name_is_checked_unless_told_not_to(tmp_path: Path, pki: Pki,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The certificates name localhost and 127.0.0.1; the receiver is reached at 127.0.0.2."""
    context = server_context(pki.server.cert, pki.server.key)
    with StorageSCP(tmp_path / "rx", port=0, host="127.0.0.2", ssl_context=context) as server:
        node = Node(server.ae_title, "127.0.0.2", server.port)
        assert main(["echo", _address(node), *tls_flags(pki.ca)]) == 1
        assert "mismatch" in _one_line_failure(capsys, "echo", node)
        assert main(["echo", _address(node), *tls_flags(pki.ca),
                     "--tls-no-verify-hostname"]) == 0


def test_a_configured_tls_node_works_like_the_flags(
        tls_receiver: ReceiverProcess, pki: Pki, small_files: list[Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Relative TLS paths are the config file's folder's; the flags override the node."""
    folder = tmp_path / "etc"
    (folder / "tls").mkdir(parents=True)
    for source in (pki.ca, pki.client.cert, pki.client.key, pki.rogue_client.cert,
                   pki.rogue_client.key):
        shutil.copy(source, folder / "tls" / source.name)
    node = tls_receiver.node
    config = folder / "rtforge.toml"
    config.write_text(f"[network.nodes.rx]\nae_title = '{node.ae_title}'\nhost = '{LOCALHOST}'\n"
                      f"port = {node.port}\ntls = true\ntls_ca = 'tls/{pki.ca.name}'\n"
                      f"tls_cert = 'tls/{pki.client.cert.name}'\n"
                      f"tls_key = 'tls/{pki.client.key.name}'\n"
                      f"[network.nodes.rogue]\nae_title = '{node.ae_title}'\n"
                      f"host = '{LOCALHOST}'\nport = {node.port}\ntls = true\n"
                      f"tls_ca = 'tls/{pki.ca.name}'\n"
                      f"tls_cert = 'tls/{pki.rogue_client.cert.name}'\n"
                      f"tls_key = 'tls/{pki.rogue_client.key.name}'\ntimeout = 5\n")
    assert load_config(config).network.nodes["rx"].tls_ca == str(folder / "tls" / pki.ca.name)
    assert main(["echo", "rx", "--config", str(config)]) == 0
    assert main(["send", *map(str, small_files), "--to", "rx", "--config", str(config),
                 "-q"]) == 0
    assert len(received_files(tls_receiver.out)) == len(small_files)
    capsys.readouterr()
    assert main(["echo", "rogue", "--config", str(config)]) == 1
    assert "TLS" in capsys.readouterr().err
    assert main(["echo", "rogue", "--config", str(config), "--tls-cert", str(pki.client.cert),
                 "--tls-key", str(pki.client.key)]) == 0


def test_missing_or_bad_tls_files_are_one_line_errors(
        pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    address = f"ANY@{LOCALHOST}:104"
    missing = tmp_path / "nowhere.pem"
    assert main(["echo", address, "--tls-cert", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and "cannot read" in err
    assert main(["echo", address, "--tls-ca", str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err
    assert main(["echo", address, "--tls-cert", str(pki.client.cert), "--tls-key",
                 str(pki.rogue_client.key)]) == 1  # not its key
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(pki.client.cert) in err
    assert main(["echo", address, "--tls-key", str(pki.client.key)]) == 1
    assert "needs tls_cert (--tls-cert)" in capsys.readouterr().err


def test_node_tls_settings_are_validated() -> None:
    with pytest.raises(InvalidInputError, match="set tls = true"):
        Node("PACS", LOCALHOST, 104, tls_ca="ca.pem")
    with pytest.raises(InvalidInputError, match="tls must be true or false"):
        Node("PACS", LOCALHOST, 104, tls="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="tls_cert must name a PEM file"):
        Node("PACS", LOCALHOST, 104, tls=True, tls_cert="")


def test_a_tls_listener_needs_our_certificate(pki: Pki) -> None:
    """file and restore listen with TLS for a TLS node: they need a certificate to present."""
    with pytest.raises(InvalidInputError, match="give our certificate"):
        listener_context(Node("PACS", LOCALHOST, 104, tls=True, tls_ca=str(pki.ca)))
    context = listener_context(Node("PACS", LOCALHOST, 104, **client_settings(pki)))
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    assert listener_context(Node("PACS", LOCALHOST, 104)) is None


def test_client_context_policy(pki: Pki) -> None:
    context = client_context(Node("PACS", LOCALHOST, 104, **client_settings(pki)))
    assert context is not None
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    loose = client_context(Node("PACS", LOCALHOST, 104, tls=True, tls_ca=str(pki.ca),
                                tls_verify_hostname=False))
    assert loose is not None and not loose.check_hostname
    assert loose.verify_mode == ssl.CERT_REQUIRED
    assert client_context(Node("PACS", LOCALHOST, 104)) is None


# dcmtk storescp +tls: requires a client certificate (-rc, its default)

def _storescp(tmp_path: Path, server_cert: Path, server_key: Path, pki: Pki) -> Iterator[Peer]:
    return run_storescp(tmp_path, "+tls", str(server_key), str(server_cert), "+cf", str(pki.ca),
                        "+xa", node_settings=client_settings(pki))


def test_storescp_mutual_tls(tmp_path: Path, pki: Pki, small_files: list[Path],
                             capsys: pytest.CaptureFixture[str]) -> None:
    peers = _storescp(tmp_path, pki.server.cert, pki.server.key, pki)
    peer = next(peers)
    try:
        flags = tls_flags(pki.ca, pki.client.cert, pki.client.key)
        assert main(["echo", _address(peer.node), *flags]) == 0
        assert main(["send", *map(str, small_files), "--to", _address(peer.node), "-q",
                     *flags]) == 0
        assert len(list((peer.work / "in").iterdir())) == len(small_files)
        capsys.readouterr()
        assert main(["echo", _address(peer.node), "--timeout", "5", *tls_flags(pki.ca)]) == 1
        _one_line_failure(capsys, "echo", peer.node)
        assert main(["echo", _address(peer.node), "--timeout", "5",
                     *tls_flags(pki.ca, pki.rogue_client.cert, pki.rogue_client.key)]) == 1
        _one_line_failure(capsys, "echo", peer.node)
    finally:
        peers.close()


def test_storescp_with_a_server_certificate_of_another_ca_is_refused(
        tmp_path: Path, pki: Pki, small_files: list[Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    # storescp is started with the rogue certificate; it is waited for with a client that
    # trusts the rogue CA
    peers = run_storescp(tmp_path, "+tls", str(pki.rogue_server.key), str(pki.rogue_server.cert),
                         "+cf", str(pki.ca), "+xa",
                         node_settings={**client_settings(pki), "tls_ca": str(pki.rogue_ca)})
    peer = next(peers)
    try:
        flags = tls_flags(pki.ca, pki.client.cert, pki.client.key)
        assert main(["send", str(small_files[0]), "--to", _address(peer.node), *flags]) == 1
        err = _one_line_failure(capsys, "send", peer.node)
        assert "certificate is not accepted" in err
        assert list((peer.work / "in").iterdir()) == []
    finally:
        peers.close()


# Orthanc with DICOM TLS (mutual): C-FIND, C-MOVE, File and Restore, the archive connecting back
# to our TLS listeners (the temporary SCP, the Storage Commitment report, 'rtforge receive')

@pytest.fixture
def tls_orthanc(tmp_path: Path, pki: Pki) -> Iterator[tuple[Node, int]]:
    """Orthanc speaking only TLS; its move destination RTFORGE_RST (over TLS) at the port given."""
    needs(ORTHANC)
    work = tmp_path / "orthanc"
    work.mkdir()
    port, restore_port = free_port(), free_port()
    config = json.loads(ORTHANC_CONFIG.format(port=port, http_port=free_port(), aet="ORTHANC",
                                              work=work, dest_aet=RESTORE_AET,
                                              dest_port=restore_port))
    config.update({
        "DicomTlsEnabled": True, "DicomTlsRemoteCertificateRequired": True,
        "DicomTlsCertificate": str(pki.server.cert), "DicomTlsPrivateKey": str(pki.server.key),
        "DicomTlsTrustedCertificates": str(pki.ca),
        "DicomModalities": {"rtforge": {"AET": RESTORE_AET, "Host": LOCALHOST,
                                        "Port": restore_port, "UseDicomTls": True}}})
    (work / "orthanc.json").write_text(json.dumps(config))
    proc = subprocess.Popen([ORTHANC, "--no-jobs", str(work / "orthanc.json")], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = Node("ORTHANC", LOCALHOST, port, timeout=20.0, **client_settings(pki))
    try:
        wait_for_echo(node, proc, seconds=30)
        yield node, restore_port
    finally:
        stop_process(proc, seconds=20)


def test_orthanc_tls_find_file_restore_move(tls_orthanc: tuple[Node, int], pki: Pki,
                                            tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    node, restore_port = tls_orthanc
    store = tmp_path / "store"
    files = {p: p.read_bytes() for p in phantom_store(store)}
    config = tmp_path / "rtforge.toml"
    config.write_text(
        f"[archive]\nstore = '{store}'\nrestore_ae_title = '{RESTORE_AET}'\n"
        f"restore_port = {restore_port}\n"
        f"[network.nodes.archive]\nae_title = 'ORTHANC'\nhost = '{LOCALHOST}'\n"
        f"port = {node.port}\ntimeout = 20\ntls = true\ntls_ca = '{pki.ca}'\n"
        f"tls_cert = '{pki.client.cert}'\ntls_key = '{pki.client.key}'\n")
    common = ["--config", str(config)]
    assert main(["store", "import", str(store), "-q", *common]) == 0
    assert main(["file", PATIENT, "--to", "archive", "--bind", LOCALHOST, "--json",
                 *common]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verified"] == report["deleted"] == len(files), report
    assert report["verified_by"] == ["commitment"]  # the report came back over TLS
    assert not any(p.exists() for p in files)

    assert main(["find", "archive", "--patient-id", PATIENT, "--json", *common]) == 0
    (study,) = json.loads(capsys.readouterr().out)

    assert main(["restore", PATIENT, "--bind", LOCALHOST, "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out)["restored"] == len(files)
    assert all(p.read_bytes() == data for p, data in files.items())

    rx = start_receiver(tmp_path, "--tls-cert", str(pki.client.cert), "--tls-key",
                        str(pki.client.key), "--tls-ca", str(pki.ca),
                        node_settings={**client_settings(pki), "ae_title": RESTORE_AET,
                                       "port": restore_port})
    try:
        assert main(["move", "archive", "--dest", RESTORE_AET, "--study-uid",
                     study["StudyInstanceUID"], "--json", *common]) == 0
        assert json.loads(capsys.readouterr().out)["completed"] == len(files)
    finally:
        stop_process(rx.proc)
    assert len(received_files(rx.out)) == len(files)
    capsys.readouterr()
    # the same archive without our certificate: refused, one line
    assert main(["find", f"ORTHANC@{LOCALHOST}:{node.port}", "--tls-ca", str(pki.ca),
                 "--timeout", "5"]) == 1
    _one_line_failure(capsys, "find", node)
