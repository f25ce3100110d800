"""TLS for DICOM associations: contexts from a node's settings, failures in words.

Every association rtforge requests (Verification and Storage on
:mod:`rtforge.net._association`; Query/Retrieve, Print and Storage
Commitment through pynetdicom, :mod:`rtforge.net._pynetdicom`) takes its TLS
context from :func:`client_context`, and every listener (``rtforge receive``
and the temporary Storage SCP of ``file`` and ``restore``) from
:func:`server_context`.

Policy (BCP 195, as PS3.15 B.9 and B.10 ask): TLS 1.2 at least; the peer's
certificate is verified against the node's ``tls_ca`` (only that CA when one
is given, else the system's trusted CAs) and, unless
``tls_verify_hostname`` is false, against the node's host name or address.
A node with ``tls_cert`` presents it as our client certificate (mutual TLS).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

from rtforge.config import Node
from rtforge.errors import InvalidInputError

__all__ = ["MINIMUM_VERSION", "ClientContext", "client_context", "server_context",
           "listener_context", "failure_text"]

#: The oldest protocol version we speak, either side.
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


class _ReportingSocket(ssl.SSLSocket):
    """An SSLSocket that keeps its first failure on its context (pynetdicom only logs it)."""

    def _keep(self, exc: OSError) -> None:
        context = self.context
        if isinstance(context, ClientContext) and context.failure is None:
            context.failure = exc

    def connect(self, address: Any) -> None:  # the handshake happens here
        try:
            super().connect(address)
        except OSError as exc:
            self._keep(exc)
            raise

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        try:
            return super().recv(buflen, flags)
        except ssl.SSLError as exc:  # a TLS 1.3 peer refuses a client certificate here
            self._keep(exc)
            raise


class ClientContext(ssl.SSLContext):
    """The TLS context of one requested association.

    Attributes
    ----------
    failure : OSError or None
        The first TLS failure of a socket it wrapped (handshake or read):
        what :func:`failure_text` explains when pynetdicom reports only that
        the association failed.
    """

    sslsocket_class = _ReportingSocket
    failure: OSError | None = None


def _check_readable(path: str | os.PathLike[str], what: str) -> None:
    try:
        Path(path).open("rb").close()  # readable now, or one clear line naming it
    except OSError as exc:
        raise InvalidInputError(f"cannot read the TLS {what}: {exc.strerror or exc}",
                                path=path) from None


def _ssl_words(exc: ssl.SSLError) -> str:
    """``[SSL: KEY_VALUES_MISMATCH] key values mismatch (_ssl.c:3926)`` -> its words."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason).lower().replace("_", " ")
    return str(exc.args[1] if len(exc.args) > 1 else exc)


def _load_trust(context: ssl.SSLContext, ca: str | os.PathLike[str]) -> None:
    _check_readable(ca, "CA certificate")
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise InvalidInputError(f"not a PEM CA certificate ({_ssl_words(exc)})",
                                path=ca) from None


def _load_pair(context: ssl.SSLContext, cert: str | os.PathLike[str],
               key: str | os.PathLike[str] | None) -> None:
    _check_readable(cert, "certificate")
    if key is not None:
        _check_readable(key, "private key")
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        words = _ssl_words(exc)
        if words == "pem lib":  # OpenSSL's word for a file it cannot parse
            words = "not a PEM certificate and private key (give the key with --tls-key / " \
                    "tls_key when it is a separate file)" if key is None \
                else "not a PEM certificate, or the key is not its PEM private key"
        raise InvalidInputError(f"cannot load the TLS certificate: {words}",
                                path=cert) from None


def client_context(node: Node) -> ClientContext | None:
    """The TLS context for an association with ``node``; ``None`` when it does not speak TLS.

    Parameters
    ----------
    node : Node
        Its ``tls``, ``tls_ca``, ``tls_cert``, ``tls_key`` and
        ``tls_verify_hostname`` settings (see :class:`rtforge.config.Node`).

    Returns
    -------
    ClientContext or None
        A new context (one per association: it records that association's
        failure).

    Raises
    ------
    InvalidInputError
        If a certificate or key file is missing, unreadable, not PEM, or the
        key does not belong to the certificate (the file is named).
    """
    if not node.tls:
        return None
    context = ClientContext(ssl.PROTOCOL_TLS_CLIENT)  # certificate required, host name checked
    context.minimum_version = MINIMUM_VERSION
    context.check_hostname = node.tls_verify_hostname
    if node.tls_ca is not None:
        _load_trust(context, node.tls_ca)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if node.tls_cert is not None:
        _load_pair(context, node.tls_cert, node.tls_key)
    return context


def server_context(cert: str | os.PathLike[str], key: str | os.PathLike[str] | None = None,
                   ca: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """The TLS context of a listener.

    Parameters
    ----------
    cert : path-like
        Our certificate (PEM; the key too unless ``key`` is given).
    key : path-like, optional
        Its private key (PEM).
    ca : path-like, optional
        Require a client certificate signed by this CA (mutual TLS); without
        it any client may connect.

    Returns
    -------
    ssl.SSLContext

    Raises
    ------
    InvalidInputError
        If a file is missing, unreadable, not PEM, or the key does not
        belong to the certificate (the file is named).
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = MINIMUM_VERSION
    _load_pair(context, cert, key)
    if ca is not None:
        _load_trust(context, ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def listener_context(node: Node) -> ssl.SSLContext | None:
    """The TLS context of a listener that ``node`` connects to; ``None`` when it speaks no TLS.

    The temporary Storage SCP of ``file`` and ``restore`` (the C-MOVE
    destination) and the Storage Commitment report listener take a TLS
    node's traffic over TLS as well: they present the node's ``tls_cert``
    (our certificate) and require the node's client certificate, signed by
    ``tls_ca`` (else by a CA the system trusts).

    Raises
    ------
    InvalidInputError
        If the node speaks TLS but has no ``tls_cert`` to listen with, or a
        file cannot be loaded.
    """
    if not node.tls:
        return None
    if node.tls_cert is None:
        raise InvalidInputError(f"{node} speaks TLS, so the local Storage SCP it sends to does "
                                "too: give our certificate (tls_cert / --tls-cert, and tls_key "
                                "/ --tls-key)")
    context = server_context(node.tls_cert, node.tls_key, node.tls_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def failure_text(exc: BaseException, node: Node) -> str:
    """Why a TLS connection to ``node`` failed, in one line (without the peer's name).

    Parameters
    ----------
    exc : BaseException
        What the handshake, or the first read after it, raised.
    node : Node
        The peer (its CA and certificate settings suggest the remedy).
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = f"signed by {node.tls_ca}" if node.tls_ca is not None \
            else "signed by a CA the system trusts (else give tls_ca / --tls-ca)"
        naming = f", naming {node.host}" if node.tls_verify_hostname else ""
        return f"TLS handshake failed: the peer's certificate is not accepted " \
               f"({_ssl_words(exc)}); we accept one {trusted}{naming}"
    ours = f"our client certificate {node.tls_cert}" if node.tls_cert is not None \
        else "no client certificate (give tls_cert / --tls-cert)"
    if isinstance(exc, (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError)):
        return f"TLS connection closed by the peer during the handshake: it refused {ours}, " \
               "or does not speak TLS"
    if isinstance(exc, ssl.SSLError):
        words = _ssl_words(exc)
        if "alert" in words:  # the peer's own word for what it refused
            return f"TLS handshake failed: the peer refused it ({words}); we sent {ours}"
        if words == "wrong version number":
            return "TLS handshake failed: the peer does not speak TLS"
        return f"TLS handshake failed: {words}"
    if isinstance(exc, TimeoutError):
        return f"TLS handshake failed: no answer within {node.timeout:g} s"
    return f"TLS handshake failed: {getattr(exc, 'strerror', None) or exc}"
