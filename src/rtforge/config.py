"""One typed configuration object, read from TOML.

The file is found at ``$RTFORGE_CONFIG`` or, when that is unset, at
``$XDG_CONFIG_HOME/rtforge/config.toml`` (``~/.config/rtforge/config.toml``).
A missing file means the defaults.  Example::

    [export]
    uid_root = "1.2.826.0.1.3680043.8.498."
    platform_name = "RTFORGE-01"
    station_name = "planning-1"

Importing rtforge changes no other library's global state.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from rtforge.errors import InvalidInputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ExportConfig", "Config", "config_path", "load_config"]

#: pydicom's registered UID root, usable by anyone; organisations set their own.
DEFAULT_UID_ROOT = "1.2.826.0.1.3680043.8.498."
_UID_ROOT_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*\.$")


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
    """

    uid_root: str = DEFAULT_UID_ROOT
    platform_name: str = "rtforge"
    private_creator: str = "RTFORGE_Conversion"
    station_name: str = field(default_factory=lambda: socket.gethostname()[:16] or "rtforge")

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


@dataclass(frozen=True)
class Config:
    """All of rtforge's settings.

    Parameters
    ----------
    export : ExportConfig
        Identity written into created objects.
    """

    export: ExportConfig = field(default_factory=ExportConfig)


def config_path() -> Path:
    """Where the configuration file is looked for."""
    env = os.environ.get("RTFORGE_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "rtforge" / "config.toml"


def _section(cls: type, data: dict, path: Path, name: str) -> object:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise InvalidInputError(f"unknown setting(s) in [{name}]: {', '.join(sorted(unknown))}",
                                path=path)
    return cls(**data)


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
    unknown = set(data) - {"export"}
    if unknown:
        raise InvalidInputError(f"unknown section(s): {', '.join(sorted(unknown))}", path=p)
    try:
        export = _section(ExportConfig, data.get("export", {}), p, "export")
    except TypeError as exc:
        raise InvalidInputError(str(exc), path=p) from None
    except InvalidInputError as exc:
        if exc.path is None:
            raise InvalidInputError(exc.reason, path=p) from None
        raise
    return Config(export=export)  # type: ignore[arg-type]
