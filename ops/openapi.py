"""`babyshield openapi`: write the API's OpenAPI document, generated from the routes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ops.console import CommandError


def openapi_document() -> dict[str, Any]:
    from functions.api.app import API_TITLE, API_VERSION, app

    schema = app.get_openapi_json_schema(title=API_TITLE, version=API_VERSION)
    document: dict[str, Any] = json.loads(schema)
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _run(args: argparse.Namespace) -> int:
    text = render(openapi_document())
    if args.output == "-":
        print(text, end="")
    else:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:  # no such directory, not writable, a directory
            raise CommandError(
                f"cannot write {args.output}: {exc.strerror or exc}",
                hint="pass a file in an existing, writable directory, or --output - for stdout",
            ) from exc
        print(f"wrote {args.output}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("openapi", help="write the OpenAPI document")
    parser.add_argument("--output", default="docs/openapi.json", help="file, or - for stdout")
    parser.set_defaults(func=_run)
