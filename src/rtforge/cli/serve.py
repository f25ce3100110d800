"""``rtforge serve``: the DRR/DVH service over HTTP (extra ``rtforge[serve]``).

Every path a request names is confined to the data roots (``--data-root``,
default the current folder); a DRR request is held to a pixel budget
(``--max-mpixel``), the study cache to a memory bound (``--max-cache-mb``; a
study whose files alone exceed it is refused unread),
with ``--token-file`` every request needs the bearer token, and a request
whose Host header is not an IP address, localhost or one of the service's
names (``--allowed-host``; by default the machine's own names when listening
beyond loopback) answers 400, against DNS rebinding.  Connections are bounded
in all and per client, and a request must arrive whole within a time
(``--max-connections``, ``--max-connections-per-address``, ``--request-timeout``;
:mod:`rtforge.workflows._http_admission`).  A start-up
line on stderr gives the address; then one access line per request
(client, method, path, status, milliseconds) unless ``-q``.  The request
and response schemas are served at ``/openapi.json`` (see :mod:`rtforge.workflows.asgi`).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
from pathlib import Path

from rtforge.config import ServeConfig, load_config
from rtforge.errors import InvalidInputError, RtforgeError

__all__ = ["register"]

_EXAMPLE = """example:
  rtforge serve --port 8000 --data-root /data --token-file ~/.rtforge-token
  curl -s localhost:8000/dvh -H 'Content-Type: application/json' \\
       -H "Authorization: Bearer $(cat ~/.rtforge-token)" \\
       -d '{"dose": "/data/rtdose.dcm", "structure_set": "/data/rtss.dcm",
            "rois": ["PTV"], "dose_at_volume": [95]}'
  (endpoints: GET /health, GET /openapi.json, POST /studies, POST /drr, POST /dvh;
   bodies must be application/json; errors answer {"error": message})
"""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port must be an integer, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be in 1..65535, got {port}")
    return port


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    p = sub.add_parser("serve", help="answer DRR and DVH requests over HTTP",
                       epilog=_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000)")
    p.add_argument("--data-root", action="append", type=Path, metavar="DIR",
                   help="a folder requests may read from (repeatable; default [serve] "
                        "data_roots, else the current folder); any other path answers 403")
    p.add_argument("--token-file", type=Path, metavar="FILE",
                   help="require 'Authorization: Bearer TOKEN' of every request, TOKEN read "
                        "from FILE (default [serve] token_file; none)")
    p.add_argument("--max-mpixel", type=float, metavar="N",
                   help="DRR pixels one request may ask for, in millions: rows x columns "
                        "summed over its geometries (default 64); more answers 413")
    p.add_argument("--max-cache-mb", type=float, metavar="MB",
                   help="memory the loaded studies may hold, least recently used dropped "
                        "first; a study whose files alone hold more answers 413 (default 2048)")
    p.add_argument("--max-studies", type=int,
                   help="studies kept loaded, least recently used dropped first (default 4)")
    p.add_argument("--allowed-host", action="append", metavar="NAME",
                   help="a name clients reach the service by, answered in the Host header "
                        "besides IP addresses and localhost (repeatable; '*.example.org' for "
                        "the names under it, '*' for any: no guard against DNS rebinding; "
                        "default [serve] allowed_hosts, else, listening beyond loopback, this "
                        "machine's names); any other Host answers 400")
    p.add_argument("--max-connections", type=int, metavar="N",
                   help="connections open at once (default 512); more are answered 503")
    p.add_argument("--max-connections-per-address", type=int, metavar="N",
                   help="connections open at once from one client, an IPv4 address or an IPv6 "
                        "/64 (default 128); more are answered 503")
    p.add_argument("--request-timeout", type=float, metavar="S",
                   help="seconds a request may take to arrive whole, headers and body "
                        "(default 10); the connection is closed after")
    p.add_argument("--config", type=Path, help="configuration file (default $RTFORGE_CONFIG)")
    p.add_argument("-q", "--quiet", action="store_true", help="no access log lines")
    p.set_defaults(func=_serve)


def _settings(args: argparse.Namespace) -> ServeConfig:
    """The [serve] configuration with the flags given on top."""
    config = load_config(args.config).serve
    flags = {"data_roots": tuple(str(r) for r in args.data_root or ()) or None,
             "token_file": None if args.token_file is None else str(args.token_file),
             "max_mpixel": args.max_mpixel, "max_cache_mb": args.max_cache_mb,
             "max_studies": args.max_studies,
             "allowed_hosts": tuple(args.allowed_host or ()) or None,
             "max_connections": args.max_connections,
             "max_connections_per_address": args.max_connections_per_address,
             "request_timeout": args.request_timeout}
    values = {name: getattr(config, name) if value is None else value
              for name, value in flags.items()}
    return ServeConfig(**values)


def _token(path: str) -> str | None:
    if not path:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read the token file: {exc}", path=path) from None
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise InvalidInputError("the token file must hold one token: printable characters, "
                                "no spaces", path=path)
    return token


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (so the start-up line is true when printed)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _host_names(configured: tuple[str, ...], listening: str) -> list[str]:
    """The Host names answered: localhost (no web page's origin can be made that) and
    those configured, else, listening beyond loopback, this machine's own names."""
    names = ["localhost"]
    if configured:
        return list(dict.fromkeys(names + list(configured)))
    try:
        loopback = ipaddress.ip_address(listening).is_loopback
    except ValueError:  # a name given to --host: resolved to this address
        loopback = False
    if not loopback:
        names += [n for n in dict.fromkeys((socket.gethostname(), socket.getfqdn())) if n]
    return names


def _access_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _serve(args: argparse.Namespace) -> int:
    for flag, value in (("--max-studies", args.max_studies), ("--max-mpixel", args.max_mpixel),
                        ("--max-cache-mb", args.max_cache_mb),
                        ("--max-connections", args.max_connections),
                        ("--max-connections-per-address", args.max_connections_per_address),
                        ("--request-timeout", args.request_timeout)):
        if value is not None and not value > 0:
            sys.stderr.write(f"rtforge serve: error: {flag} must be positive, got {value:g}\n")
            return 2
    try:
        import uvicorn

        from rtforge.workflows._http_admission import ConnectionLimits, guarded_h11
        from rtforge.workflows.asgi import AllowedHosts, Limits, create_app
        from rtforge.workflows.service import DataRoots, StudyCache
    except ImportError as exc:
        raise RtforgeError(f"rtforge serve needs its extra: pip install 'rtforge[serve]' "
                           f"({exc.name} is missing)") from exc
    settings = _settings(args)
    roots = DataRoots(settings.data_roots or [Path.cwd()])
    token = _token(settings.token_file)
    cache = StudyCache(settings.max_studies, int(settings.max_cache_mb * 1e6), data_roots=roots)
    sock = _listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    names = _host_names(settings.allowed_hosts, host)
    try:
        hosts = AllowedHosts(names)
    except ValueError as exc:
        sock.close()
        raise InvalidInputError(str(exc)) from None
    app = create_app(cache, limits=Limits(max_pixels=int(settings.max_mpixel * 1e6)), token=token,
                     access_log=None if args.quiet else _access_line, allowed_hosts=hosts)
    shown = f"[{host}]" if ":" in host else host
    sys.stderr.write(
        f"rtforge serve: listening on http://{shown}:{port} "
        f"({'bearer token required' if token else 'no token required'}; data roots: "
        f"{', '.join(str(r) for r in roots.roots)}; Host: IP addresses, "
        f"{', '.join(names)}; API at /openapi.json)\n")
    sys.stderr.flush()
    if args.verbose == 0:  # refused loads and defects are logged: the answers name no file
        logging.getLogger("rtforge.workflows.asgi").setLevel(logging.WARNING)
    log_level = "warning" if args.verbose < 2 else "debug"
    admission = ConnectionLimits(settings.max_connections, settings.max_connections_per_address,
                                 settings.request_timeout)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False,
                                           log_config=None, http=guarded_h11(admission)))
    server.run(sockets=[sock])
    return 0
