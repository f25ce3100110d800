"""A throw-away PKI for the TLS tests, made with the ``openssl`` command in a test's folder.

Two certification authorities: ``ca`` signs the server and client
certificates the peers trust; ``rogue`` signs look-alikes (same names) that
must be refused.  Keys are P-256 (fast to make); every leaf certificate names
``localhost`` and ``127.0.0.1`` and serves both ends (TLS server and client):
our client certificate is also what the temporary SCP of ``file`` and
``restore`` presents, and an archive's server certificate what it presents
when it connects back.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

OPENSSL = "/usr/bin/openssl"
_DAYS = "2"


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """The files of :func:`make_pki`."""

    ca: Path
    server: Pair
    client: Pair
    rogue_ca: Path
    rogue_server: Pair
    rogue_client: Pair
    expired_server: Pair


def _openssl(*args: str) -> None:
    subprocess.run([OPENSSL, *args], check=True, capture_output=True, timeout=60)


def _authority(folder: Path, name: str) -> Pair:
    pair = Pair(folder / f"{name}.pem", folder / f"{name}.key")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(pair.key), "-out", str(pair.cert), "-days", _DAYS,
             "-subj", f"/CN=rtforge test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return pair


def _leaf(folder: Path, name: str, authority: Pair) -> Pair:
    pair = Pair(folder / f"{name}.pem", folder / f"{name}.key")
    request = folder / f"{name}.csr"
    extensions = folder / f"{name}.ext"
    extensions.write_text("basicConstraints=CA:FALSE\n"
                          "keyUsage=critical,digitalSignature,keyAgreement\n"
                          "extendedKeyUsage=serverAuth,clientAuth\n"
                          "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                          "subjectKeyIdentifier=hash\n"
                          "authorityKeyIdentifier=keyid\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(pair.key), "-out", str(request), "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(request), "-CA", str(authority.cert), "-CAkey",
             str(authority.key), "-CAcreateserial", "-out", str(pair.cert), "-days", _DAYS,
             "-extfile", str(extensions))
    return pair


def _expired(folder: Path, name: str, authority: Pair) -> Pair:
    """A leaf certificate of ``authority`` valid for one day, ten days ago (``cryptography``:
    OpenSSL 3.0's command line cannot back-date one)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key(authority.key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(authority.cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=10)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    pair = Pair(folder / f"{name}.pem", folder / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return pair


def make_pki(folder: Path) -> Pki:
    """Make the two authorities and their server and client certificates in ``folder``."""
    if not Path(OPENSSL).exists():
        pytest.skip(f"{OPENSSL} not installed (Debian package openssl)")
    folder.mkdir(parents=True, exist_ok=True)
    pytest.importorskip("cryptography", reason="the expired certificate is made with it")
    ca = _authority(folder, "ca")
    rogue = _authority(folder, "rogue-ca")
    return Pki(ca=ca.cert,
               server=_leaf(folder, "server", ca),
               client=_leaf(folder, "client", ca),
               rogue_ca=rogue.cert,
               rogue_server=_leaf(folder, "rogue-server", rogue),
               rogue_client=_leaf(folder, "rogue-client", rogue),
               expired_server=_expired(folder, "expired-server", ca))


def client_settings(pki: Pki) -> dict[str, object]:
    """Node settings of a client the peers trust (``ca``), that trusts them, with its certificate."""
    return {"tls": True, "tls_ca": str(pki.ca), "tls_cert": str(pki.client.cert),
            "tls_key": str(pki.client.key)}


def tls_flags(ca: Path, cert: Path | None = None, key: Path | None = None) -> list[str]:
    """``--tls-ca`` (and ``--tls-cert``, ``--tls-key``) for the command line."""
    flags = ["--tls-ca", str(ca)]
    if cert is not None:
        flags += ["--tls-cert", str(cert)]
    if key is not None:
        flags += ["--tls-key", str(key)]
    return flags
