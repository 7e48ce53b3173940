"""Command line of the sample app: parse the address, serve until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from services.sampleapp.server import SampleServer

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"


def parse_args(argv: Sequence[str] | None, env: dict[str, str]) -> argparse.Namespace:
    """`--port` wins over `PORT` (set by NGPU's process runtime), then 8080; `--host` wins
    over `NGPU_BIND_HOST`, then 127.0.0.1."""
    parser = argparse.ArgumentParser(prog="python -m services.sampleapp", description=__doc__)
    parser.add_argument("--host", default=env.get("NGPU_BIND_HOST") or DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=int(env.get("PORT") or DEFAULT_PORT))
    parser.add_argument("--quiet", action="store_true", help="no access log on stderr")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM (exit 0) or Ctrl-C; prints one line once it accepts requests."""
    args = parse_args(argv, dict(os.environ))
    server = SampleServer((args.host, args.port), quiet=args.quiet)

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _terminate)
    host, port = server.server_address[:2]
    print(f"sampleapp listening on http://{host!s}:{port!s}", flush=True)
    with server, contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
