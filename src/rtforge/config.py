"""One typed configuration object, read from TOML.

The file is found at ``$RTFORGE_CONFIG`` or, when that is unset, at
``$XDG_CONFIG_HOME/rtforge/config.toml`` (``~/.config/rtforge/config.toml``).
A missing file means the defaults.  Example::

    [export]
    uid_root = "1.2.826.0.1.3680043.8.498."
    platform_name = "RTFORGE-01"
    station_name = "planning-1"
    character_set = "ISO_IR 100"    # or "ISO_IR 192" (UTF-8); see rtforge.io.charset
    private_isocenter_block = false   # RT Images: iPlan's private group 3273 (Note 8-15)

    [network]
    ae_title = "RTFORGE"
    port = 11112
    acse_timeout = 10     # rtforge receive: admission limits (ReceiveLimits, defaults shown)
    pdu_timeout = 30
    network_timeout = 60
    min_rate = 1024       # bytes/s while a message arrives, over each rate_window
    rate_window = 10
    max_pending = 64
    max_pending_per_address = 8
    max_associations_per_address = 8

    [network.nodes.pacs]
    ae_title = "ORTHANC"
    host = "pacs.example.org"
    port = 4242
    timeout = 30          # seconds (iPlan 4.4.2 default)
    max_pdu = 28672       # bytes we accept per PDU (iPlan 4.4.2 default)
    verify = "commitment" # how 'rtforge file' proves the archive holds a copy: "auto",
                          # "commitment" (Storage Commitment) or "retrieve" (C-MOVE back)

    [network.nodes.secure-pacs]   # DICOM over TLS (mutual TLS with tls_cert)
    ae_title = "PACS"
    host = "pacs.example.org"
    port = 2762
    tls = true
    tls_ca = "tls/ca.pem"         # trust only this CA (default: the system's CAs); relative
    tls_cert = "tls/rtforge.pem"  #   paths are relative to this file's folder
    tls_key = "tls/rtforge.key"

    [archive]
    store = "/srv/rtforge/store"   # the local store (catalog.sqlite in it by default)
    restore_ae_title = "RTFORGE_RST"
    restore_port = 11113

    [reslice]
    max_gap_factor = 3    # a gap between slices wider than this times the median is refused

    [serve]
    data_roots = ["/srv/studies"]  # the only folders 'rtforge serve' reads (default: where it starts)
    token_file = "/etc/rtforge/serve.token"  # bearer token required of every request
    max_mpixel = 64       # DRR pixels per request: rows x columns over its geometries
    max_cache_mb = 2048   # studies kept loaded, least recently used dropped first
    max_studies = 4

    [dask]
    worker_timeout = 60   # seconds 'rtforge batch --scheduler' waits with no live worker
    connect_timeout = 30  # seconds to reach the scheduler
    dashboard = ""        # a local:N cluster's dashboard address ("127.0.0.1:8787"); "" = none

Importing rtforge changes no other library's global state.
"""

from __future__ import annotations

import math
import os
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType

from rtforge.errors import InvalidInputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ExportConfig",
    "Node",
    "NetworkConfig",
    "ReceiveLimits",
    "ArchiveConfig",
    "ServeConfig",
    "DaskConfig",
    "Config",
    "config_path",
    "load_config",
    "check_ae_title",
    "VERIFY_METHODS",
]

#: pydicom's registered UID root, usable by anyone; organisations set their own.
DEFAULT_UID_ROOT = "1.2.826.0.1.3680043.8.498."
_UID_ROOT_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*\.$")
_NODE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
#: Specific Character Sets rtforge can write (the first is the default: iPlan table 8-22
#: writes ISO_IR 100 always); the policy is in rtforge.io.charset.
CHARACTER_SETS = ("ISO_IR 100", "ISO_IR 192")
DEFAULT_CHARACTER_SET = CHARACTER_SETS[0]
_DASHBOARD_RE = re.compile(r"^[^\s/]*:\d{1,5}$")
#: Network defaults: iPlan 4.4.2 (timeout 30 s, maximum PDU 28672).
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_PDU = 28672
#: How filing proves an archive node holds each instance (see :mod:`rtforge.net.archive`).
VERIFY_METHODS = ("auto", "commitment", "retrieve")
#: A node's TLS files: paths relative to the configuration file are resolved against its folder.
_TLS_FILES = ("tls_ca", "tls_cert", "tls_key")


@dataclass(frozen=True)
class ExportConfig:
    """What rtforge writes into the objects it creates.

    Parameters
    ----------
    uid_root : str
        Organisation UID root ending in ``.``; at most 40 characters so that a
        generated UID keeps 24 digits of randomness within 64 characters.
    platform_name : str
        Export Platform Name written in our private block (iPlan table 8-15).
    private_creator : str
        Private Creator string of that block (iPlan's is ``BrainLAB_Conversion``).
    station_name : str
        Station Name (0008,1010); the host name by default.
    character_set : {"ISO_IR 100", "ISO_IR 192"}
        Specific Character Set (0008,0005) of every object rtforge writes
        (:mod:`rtforge.io.charset`): ``ISO_IR 100`` (Latin-1, the default, as
        iPlan writes) refuses a value outside Latin-1; ``ISO_IR 192`` (UTF-8)
        holds every character.
    private_isocenter_block : bool
        Write the private group 3273 (Isocenter Position, Patient Position)
        into RT Images, under ``private_creator`` (iPlan Note 8-15; off by
        default).
    """

    uid_root: str = DEFAULT_UID_ROOT
    platform_name: str = "rtforge"
    private_creator: str = "RTFORGE_Conversion"
    station_name: str = field(default_factory=lambda: socket.gethostname()[:16] or "rtforge")
    character_set: str = DEFAULT_CHARACTER_SET
    private_isocenter_block: bool = False

    def __post_init__(self) -> None:
        if not _UID_ROOT_RE.match(self.uid_root) or len(self.uid_root) > 40:
            raise InvalidInputError(
                f"uid_root {self.uid_root!r} must be dotted digits ending in '.', at most 40 "
                "characters")
        for name in ("platform_name", "private_creator"):
            value = getattr(self, name)
            if not value or len(value) > 64 or "\\" in value:
                raise InvalidInputError(f"{name} must be 1 to 64 characters without backslash")
        if len(self.station_name) > 16:
            raise InvalidInputError("station_name must be at most 16 characters (SH)")
        if self.character_set not in CHARACTER_SETS:
            raise InvalidInputError(f"character_set must be one of {', '.join(CHARACTER_SETS)}, "
                                    f"got {self.character_set!r}")
        if not isinstance(self.private_isocenter_block, bool):
            raise InvalidInputError("private_isocenter_block must be true or false, got "
                                    f"{self.private_isocenter_block!r}")


def check_ae_title(value: object, name: str = "ae_title") -> str:
    """Validate an AE title (PS3.5 VR AE) and return it without padding.

    Parameters
    ----------
    value : object
        The candidate AE title.
    name : str
        The setting or flag it came from, named in the error.

    Returns
    -------
    str
        The title, leading and trailing spaces removed (they are not significant).

    Raises
    ------
    InvalidInputError
        If it is not a string of 1 to 16 printable ASCII characters without
        backslash.
    """
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string, got {value!r}")
    title = value.strip(" ")
    if not title or len(value) > 16 or "\\" in title \
            or not all(32 <= ord(c) < 127 for c in title):
        raise InvalidInputError(
            f"{name} {value!r} must be 1 to 16 printable ASCII characters without backslash")
    return title


def _check_port(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidInputError(f"{name} must be an integer port 1 to 65535, got {value!r}")
    return value


@dataclass(frozen=True)
class Node:
    """A remote DICOM application entity (iPlan 4.4.1.1 and 4.4.2).

    Parameters
    ----------
    ae_title : str
        Its AE title (the Called AE Title of our requests).
    host : str
        Host name or IP address.
    port : int
        TCP port.
    timeout : float
        Seconds to wait for a connection, an association answer, a response
        or any network read before giving up (default 30).
    max_pdu : int
        Largest PDU we accept from this node, in bytes (default 28672); 0
        means no limit.
    verify : str
        How ``rtforge file`` proves, before deleting anything, that this
        node holds each instance filed to it: ``"commitment"`` (Storage
        Commitment, PS3.4 Annex J), ``"retrieve"`` (C-MOVE each study back
        and compare the data set checksums), or ``"auto"`` (default:
        commitment where the node accepts the Storage Commitment Push Model,
        else retrieve).  :mod:`rtforge.net.archive` says what each proves.
    tls : bool
        Speak TLS with this node (default false); :mod:`rtforge.net.tls`
        holds the policy (TLS 1.2 at least, the peer's certificate verified).
    tls_ca : str, optional
        PEM file of the CA(s) whose signature on the node's certificate we
        accept (default: the system's trusted CAs).
    tls_cert : str, optional
        PEM file of our client certificate (mutual TLS); it may hold the key.
    tls_key : str, optional
        PEM file of its private key.
    tls_verify_hostname : bool
        Check that the node's certificate names ``host`` (default true).

    Raises
    ------
    InvalidInputError
        If any value is out of range.
    """

    ae_title: str
    host: str
    port: int
    timeout: float = DEFAULT_TIMEOUT
    max_pdu: int = DEFAULT_MAX_PDU
    verify: str = "auto"
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_verify_hostname: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title))
        self._check_tls()
        if self.verify not in VERIFY_METHODS:
            raise InvalidInputError(f"verify must be one of {', '.join(VERIFY_METHODS)}, got "
                                    f"{self.verify!r}")
        if not isinstance(self.host, str) or not self.host or any(c.isspace() for c in self.host):
            raise InvalidInputError(f"host must be a host name or address, got {self.host!r}")
        _check_port(self.port, "port")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) \
                or not 0 < self.timeout <= 3600:
            raise InvalidInputError(f"timeout must be 0 to 3600 seconds, got {self.timeout!r}")
        object.__setattr__(self, "timeout", float(self.timeout))
        if isinstance(self.max_pdu, bool) or not isinstance(self.max_pdu, int) \
                or not (self.max_pdu == 0 or 4096 <= self.max_pdu < 2**32):
            raise InvalidInputError(
                f"max_pdu must be 0 (no limit) or 4096 to 4294967295 bytes, got {self.max_pdu!r}")

    def _check_tls(self) -> None:
        for name in ("tls", "tls_verify_hostname"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(f"{name} must be true or false, got "
                                        f"{getattr(self, name)!r}")
        files = [name for name in _TLS_FILES if getattr(self, name) is not None]
        for name in files:
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidInputError(f"{name} must name a PEM file, got {value!r}")
        if files and not self.tls:
            raise InvalidInputError(f"{', '.join(files)} given but tls is off: set tls = true")
        if self.tls_key is not None and self.tls_cert is None:
            raise InvalidInputError("tls_key (--tls-key) needs tls_cert (--tls-cert), the "
                                    "certificate it belongs to")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"


@dataclass(frozen=True)
class ReceiveLimits:
    """What ``rtforge receive`` grants a connection before and after it associates.

    Set in ``[network]`` (same names) and on ``rtforge receive`` (same names
    as flags, ``-`` for ``_``).  :mod:`rtforge.net.receiver` says how they
    work together.

    Parameters
    ----------
    acse_timeout : float
        Seconds from the connection to the whole A-ASSOCIATE-RQ read (TLS
        handshake included; ARTIM, PS3.8 9.1.5); default 10.
    pdu_timeout : float
        Seconds each PDU has, once its header is read, to arrive whole;
        default 30.
    network_timeout : float
        Seconds an association may stay silent between messages; default 60.
    min_rate : int
        Bytes per second a message must bring while it arrives, over every
        ``rate_window``; 0 means no minimum; default 1024.
    rate_window : float
        Seconds over which ``min_rate`` is measured; default 10.
    max_pending : int
        Connections not yet associated (TLS handshake, A-ASSOCIATE-RQ),
        from everyone together; one more is closed at once; default 64.
    max_pending_per_address : int
        The same, from one IP address; default 8.
    max_associations_per_address : int
        Associations one IP address may hold at once (of the receiver's
        ``max_associations`` slots), so that one host cannot take them all;
        one more is rejected as a local limit (2/3/2); default 8.

    Raises
    ------
    InvalidInputError
        If any value is out of range.
    """

    acse_timeout: float = 10.0
    pdu_timeout: float = 30.0
    network_timeout: float = 60.0
    min_rate: int = 1024
    rate_window: float = 10.0
    max_pending: int = 64
    max_pending_per_address: int = 8
    max_associations_per_address: int = 8

    def __post_init__(self) -> None:
        for name in ("acse_timeout", "pdu_timeout", "network_timeout", "rate_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < value <= 86400:
                raise InvalidInputError(f"{name} must be 0 to 86400 seconds, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name, low in (("min_rate", 0), ("max_pending", 1), ("max_pending_per_address", 1),
                          ("max_associations_per_address", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value < 2**31:
                raise InvalidInputError(f"{name} must be an integer from {low}, got {value!r}")
        if self.max_pending_per_address > self.max_pending:
            raise InvalidInputError(f"max_pending_per_address ({self.max_pending_per_address}) "
                                    f"cannot exceed max_pending ({self.max_pending})")

    def updated(self, values: Mapping[str, object]) -> ReceiveLimits:
        """These limits with those of ``values`` (e.g. parsed flags) that are set (not ``None``).

        Keys other than the field names are ignored.

        Raises
        ------
        InvalidInputError
            If a new value is out of range.
        """
        given = {f.name: values[f.name] for f in fields(self)
                 if values.get(f.name) is not None}
        return replace(self, **given)


@dataclass(frozen=True)
class NetworkConfig:
    """Our own application entity and the nodes we know (Oncentra 4.4.1).

    Parameters
    ----------
    ae_title : str
        Our AE title: the Calling AE Title of our requests and the default
        title of ``rtforge receive`` (default ``RTFORGE``).
    port : int
        Default listening port of ``rtforge receive`` (default 11112).
    nodes : mapping of str to Node
        Remote nodes by name (letters, digits, ``_``, ``.``, ``-``).
    receive : ReceiveLimits
        Admission limits of ``rtforge receive`` (its fields are keys of
        ``[network]`` itself).
    """

    ae_title: str = "RTFORGE"
    port: int = 11112
    nodes: Mapping[str, Node] = field(default_factory=dict)
    receive: ReceiveLimits = field(default_factory=ReceiveLimits)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title))
        _check_port(self.port, "port")
        for name, node in self.nodes.items():
            if not _NODE_NAME_RE.match(name):
                raise InvalidInputError(
                    f"node name {name!r} may hold only letters, digits, '_', '.' and '-'")
            if not isinstance(node, Node):
                raise InvalidInputError(f"node {name!r} must be a Node, got {type(node).__name__}")
        object.__setattr__(self, "nodes", MappingProxyType(dict(self.nodes)))
        if not isinstance(self.receive, ReceiveLimits):
            raise InvalidInputError(f"receive must be ReceiveLimits, got {type(self.receive).__name__}")


@dataclass(frozen=True)
class ArchiveConfig:
    """The local store and File/Restore (Oncentra 4.2.3).

    Parameters
    ----------
    store : str
        Folder of the local store (default ``rtforge-store`` in the working
        folder).
    catalog : str
        The SQLite catalog; empty means ``catalog.sqlite`` in ``store``.
    restore_ae_title : str
        AE title of the temporary Storage SCP a restore opens (the archive
        must know it as a move destination; default ``RTFORGE_RST``).
    restore_port : int
        Its port (default 11113).
    """

    store: str = "rtforge-store"
    catalog: str = ""
    restore_ae_title: str = "RTFORGE_RST"
    restore_port: int = 11113

    def __post_init__(self) -> None:
        for name in ("store", "catalog"):
            if not isinstance(getattr(self, name), str):
                raise InvalidInputError(f"{name} must be a path string")
        if not self.store:
            raise InvalidInputError("store must name a folder")
        object.__setattr__(self, "restore_ae_title",
                           check_ae_title(self.restore_ae_title, "restore_ae_title"))
        _check_port(self.restore_port, "restore_port")

    @property
    def catalog_path(self) -> Path:
        """Where the catalog is."""
        return Path(self.catalog) if self.catalog else Path(self.store) / "catalog.sqlite"


def _positive(value: object, name: str, kind: type | tuple[type, ...] = int) -> None:
    if isinstance(value, bool) or not isinstance(value, kind) or not 0 < value < math.inf:
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class ServeConfig:
    """``rtforge serve``, the HTTP service (its flags override these).

    Parameters
    ----------
    data_roots : tuple of str
        The only folders the service reads from; empty means the folder it
        is started in.
    token_file : str
        A file holding the bearer token every request must carry; empty
        means no token.
    max_mpixel : float
        Pixel budget of one DRR request in millions: rows x columns summed
        over its geometries (default 64).
    max_cache_mb : float
        Memory the study cache may hold, in MB (default 2048).
    max_studies : int
        Studies the cache may hold (default 4).
    allowed_hosts : tuple of str
        The names the service answers to in a request's Host header, besides
        IP addresses and ``localhost`` (``*.example.org`` takes the names
        under example.org, ``*`` every name: no guard against DNS rebinding);
        empty means the machine's own names when it listens beyond loopback.
    max_connections : int
        Connections open at once (default 512); more are answered 503.
    max_connections_per_address : int
        Connections open at once from one client, an IPv4 address or an IPv6
        /64 (default 128); more are answered 503.
    request_timeout : float
        Seconds a request may take to arrive whole, headers and body (default
        10); the connection is closed after.
    """

    data_roots: tuple[str, ...] = ()
    token_file: str = ""
    max_mpixel: float = 64.0
    max_cache_mb: float = 2048.0
    max_studies: int = 4
    allowed_hosts: tuple[str, ...] = ()
    max_connections: int = 512
    max_connections_per_address: int = 128
    request_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.data_roots, (list, tuple)) \
                or not all(isinstance(r, str) and r for r in self.data_roots):
            raise InvalidInputError("data_roots must be a list of folder paths")
        object.__setattr__(self, "data_roots", tuple(self.data_roots))
        if not isinstance(self.allowed_hosts, (list, tuple)) \
                or not all(isinstance(h, str) and h.strip() for h in self.allowed_hosts):
            raise InvalidInputError("allowed_hosts must be a list of host names")
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        if not isinstance(self.token_file, str):
            raise InvalidInputError("token_file must be a path string")
        _positive(self.max_mpixel, "max_mpixel", (int, float))
        _positive(self.max_cache_mb, "max_cache_mb", (int, float))
        _positive(self.max_studies, "max_studies")
        _positive(self.max_connections, "max_connections")
        _positive(self.max_connections_per_address, "max_connections_per_address")
        _positive(self.request_timeout, "request_timeout", (int, float))


@dataclass(frozen=True)
class ResliceConfig:
    """How CT series are reconverted (``[reslice]``).

    Parameters
    ----------
    max_gap_factor : float
        A gap between adjacent slices larger than this multiple of the
        series' median slice spacing is refused (a missing part of the series
        would be filled by interpolation) unless ``--allow-gaps`` is given.
        Default 3.
    """

    max_gap_factor: float = 3.0

    def __post_init__(self) -> None:
        if isinstance(self.max_gap_factor, bool) \
                or not isinstance(self.max_gap_factor, (int, float)) \
                or not math.isfinite(self.max_gap_factor) or self.max_gap_factor <= 1:
            raise InvalidInputError(
                f"max_gap_factor must be a number above 1, got {self.max_gap_factor!r}")


@dataclass(frozen=True)
class DaskConfig:
    """Batch runs on Dask distributed (``rtforge batch --scheduler``).

    Parameters
    ----------
    worker_timeout : float
        Seconds a run waits while its scheduler has no live worker before it
        fails (default 60); the run is resumable.
    connect_timeout : float
        Seconds to reach the scheduler (default 30, a node's timeout).
    dashboard : str
        ``HOST:PORT`` (or ``:PORT``) of the dashboard of a ``local:N``
        cluster; empty (default) starts none.

    Raises
    ------
    InvalidInputError
        If a timeout is not a positive number of seconds or the dashboard is
        not an address.
    """

    worker_timeout: float = 60.0
    connect_timeout: float = DEFAULT_TIMEOUT
    dashboard: str = ""

    def __post_init__(self) -> None:
        for name in ("worker_timeout", "connect_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < value <= 86400:
                raise InvalidInputError(f"{name} must be 0 to 86400 seconds, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.dashboard, str) \
                or (self.dashboard and not _DASHBOARD_RE.match(self.dashboard)):
            raise InvalidInputError(
                f"dashboard must be HOST:PORT, :PORT or empty, got {self.dashboard!r}")


@dataclass(frozen=True)
class Config:
    """All of rtforge's settings.

    Parameters
    ----------
    export : ExportConfig
        Identity written into created objects.
    network : NetworkConfig
        Our AE title and port, and the remote nodes.
    archive : ArchiveConfig
        The local store and File/Restore.
    reslice : ResliceConfig
        CT reconversion.
    serve : ServeConfig
        The HTTP service.
    dask : DaskConfig
        Batch runs on Dask distributed.
    """

    export: ExportConfig = field(default_factory=ExportConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    reslice: ResliceConfig = field(default_factory=ResliceConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    dask: DaskConfig = field(default_factory=DaskConfig)


def config_path() -> Path:
    """Where the configuration file is looked for."""
    env = os.environ.get("RTFORGE_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "rtforge" / "config.toml"


def _section(cls: type, data: object, path: Path, name: str) -> object:
    if not isinstance(data, dict):
        raise InvalidInputError(f"[{name}] must be a table", path=path)
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise InvalidInputError(f"unknown setting(s) in [{name}]: {', '.join(sorted(unknown))}",
                                path=path)
    required = {f.name for f in fields(cls)
                if f.default is MISSING and f.default_factory is MISSING}
    missing = required - set(data)
    if missing:
        raise InvalidInputError(f"missing setting(s) in [{name}]: {', '.join(sorted(missing))}",
                                path=path)
    return cls(**data)


def _resolve_tls_files(entry: object, path: Path) -> object:
    """A node's table with its relative TLS file paths made relative to the file's folder."""
    if not isinstance(entry, dict):
        return entry
    resolved = dict(entry)
    for name in _TLS_FILES:
        value = resolved.get(name)
        if isinstance(value, str) and value.strip():
            resolved[name] = str(path.absolute().parent / Path(value).expanduser())
    return resolved


def _network(data: object, path: Path) -> NetworkConfig:
    if not isinstance(data, dict):
        raise InvalidInputError("[network] must be a table", path=path)
    data = dict(data)
    if "receive" in data:  # the admission limits are keys of [network] itself
        raise InvalidInputError("unknown setting(s) in [network]: receive", path=path)
    limits = {f.name: data.pop(f.name) for f in fields(ReceiveLimits) if f.name in data}
    data["receive"] = _section(ReceiveLimits, limits, path, "network")
    nodes_data = data.pop("nodes", {})
    if not isinstance(nodes_data, dict):
        raise InvalidInputError("[network.nodes] must be a table of tables", path=path)
    nodes = {name: _section(Node, _resolve_tls_files(entry, path), path,
                            f"network.nodes.{name}")
             for name, entry in nodes_data.items()}
    return _section(NetworkConfig, {**data, "nodes": nodes}, path, "network")  # type: ignore[return-value]


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read the configuration file (defaults where it is missing).

    Parameters
    ----------
    path : str or path-like, optional
        The file; by default :func:`config_path`.

    Returns
    -------
    Config

    Raises
    ------
    InvalidInputError
        If the file is not valid TOML or holds an unknown or invalid setting.
    """
    p = Path(path) if path is not None else config_path()
    if not p.exists():
        if path is not None:
            raise InvalidInputError("configuration file not found", path=p)
        return Config()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"not valid TOML: {exc}", path=p) from None
    unknown = set(data) - {"export", "network", "archive", "reslice", "serve", "dask"}
    if unknown:
        raise InvalidInputError(f"unknown section(s): {', '.join(sorted(unknown))}", path=p)
    try:
        export = _section(ExportConfig, data.get("export", {}), p, "export")
        network = _network(data.get("network", {}), p)
        archive = _section(ArchiveConfig, data.get("archive", {}), p, "archive")
        reslice = _section(ResliceConfig, data.get("reslice", {}), p, "reslice")
        serve = _section(ServeConfig, data.get("serve", {}), p, "serve")
        dask = _section(DaskConfig, data.get("dask", {}), p, "dask")
    except TypeError as exc:
        raise InvalidInputError(str(exc), path=p) from None
    except InvalidInputError as exc:
        if exc.path is None:
            raise InvalidInputError(exc.reason, path=p) from None
        raise
    return Config(export=export, network=network, archive=archive,  # type: ignore[arg-type]
                  reslice=reslice, serve=serve, dask=dask)  # type: ignore[arg-type]
