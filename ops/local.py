"""`babyshield local`: the platform on this machine (what `make run` runs)."""

from __future__ import annotations

import argparse
import os

from ops.console import CommandError
from ops.local_server import LocalApiServer, api_handler

DEFAULT_PORT = 8080


def _port_from_environment() -> int:
    raw = os.environ.get("PORT", str(DEFAULT_PORT))
    try:
        port = int(raw)
    except ValueError as exc:
        raise CommandError(f"PORT must be a number, got {raw!r}", hint="export PORT=8080") from exc
    if not 0 <= port <= 65535:
        raise CommandError(f"PORT out of range: {port}", hint="use a port from 1024 to 65535")
    return port


def _run(args: argparse.Namespace) -> int:
    os.environ.setdefault("BABYSHIELD_ENV", "local")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    port = args.port if args.port is not None else _port_from_environment()
    try:
        server = LocalApiServer(("127.0.0.1", port), api_handler(), quiet=args.quiet)
    except OSError as exc:
        raise CommandError(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror}",
            hint="stop whatever uses that port, or set PORT to another one",
        ) from exc
    print(f"BabyShield API on {server.url}")
    print(f"  curl -i {server.url}/health")
    print("Ctrl-C stops it.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        server.server_close()
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("local", help="run the platform on this machine")
    parser.add_argument("--port", type=int, default=None, help="default: $PORT or 8080")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    parser.set_defaults(func=_run)
