"""``rtforge serve``: the DRR/DVH service over HTTP (extra ``rtforge[serve]``)."""

from __future__ import annotations

import argparse
import sys

from rtforge.errors import RtforgeError

__all__ = ["register"]

_EXAMPLE = """example:
  rtforge serve --port 8000 --max-studies 8
  curl -s localhost:8000/dvh -d '{"dose": "/data/rtdose.dcm", "structure_set":
       "/data/rtss.dcm", "rois": ["PTV"], "dose_at_volume": [95]}'
  (endpoints: GET /health, POST /studies, POST /drr, POST /dvh; see rtforge.asgi)
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
    p.add_argument("--max-studies", type=int, default=4,
                   help="studies kept loaded, least recently used dropped first (default 4)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    if args.max_studies < 1:
        sys.stderr.write("rtforge serve: error: --max-studies must be at least 1\n")
        return 2
    try:
        import uvicorn

        from rtforge.asgi import create_app
    except ImportError as exc:
        raise RtforgeError(f"rtforge serve needs its extra: pip install 'rtforge[serve]' "
                           f"({exc.name} is missing)") from exc
    log_level = "warning" if args.verbose == 0 else "info" if args.verbose == 1 else "debug"
    uvicorn.run(create_app(max_studies=args.max_studies), host=args.host, port=args.port,
                log_level=log_level)
    return 0
