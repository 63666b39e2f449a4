"""`.babyshield/local.json`: what the running local stack tells scripts and the CLI.

The local stack writes it on start (owner-only permissions: it holds demo
credentials) and removes it on a clean stop. `babyshield` commands that talk to
AWS use the local stack's environment from it, and say so, when it is running
and nothing in the shell points at an AWS account or endpoint.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ops.console import CommandError

STATE_FILE = Path(".babyshield") / "local.json"


def find_state_file(start: Path | None = None) -> Path:
    """The state file of the checkout the shell is in: in this folder or the nearest
    parent that has one (as git finds `.git`), so a command run from `docs/` still
    finds the stack `make run` started at the top. STATE_FILE when there is none."""
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / STATE_FILE).is_file():
            return candidate / STATE_FILE
    return STATE_FILE


# Anything here means the shell is aimed at AWS (or another endpoint): never override it.
# Beyond the usual three: botocore's older profile variable, and the credentials an
# AWS-run shell (CloudShell, a container, a CI role) is given; a command an on-call
# engineer runs there must reach the account, whatever runs in the checkout.
AWS_TARGET_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def write_state(state: dict[str, Any], path: Path = STATE_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


def read_state(path: Path | None = None) -> dict[str, Any] | None:
    path = path or find_state_file()
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def remove_state(path: Path = STATE_FILE) -> None:
    path.unlink(missing_ok=True)


def _answers(endpoint: str) -> bool:
    # urlopen also opens file: and custom schemes; a state file naming one is not a stack.
    if urllib.parse.urlsplit(endpoint).scheme not in {"http", "https"}:
        return False
    try:
        url = f"{endpoint}/moto-api/"
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310  # nosec B310 - http(s) checked above
            return int(response.status) < 500
    except OSError:
        return False


def running_state(path: Path | None = None) -> dict[str, Any] | None:
    """The state of a local stack that is running now, or None."""
    state = read_state(path)
    endpoint = (state or {}).get("aws_endpoint_url")
    if not state or not isinstance(endpoint, str) or not endpoint.startswith("http://127."):
        return None
    return state if _answers(endpoint) else None


def apply_local_environment(*, required: bool = False, path: Path | None = None) -> bool:
    """Point this process at the running local stack, unless the shell targets AWS."""
    path = path or find_state_file()
    state = running_state(path)
    if state is not None and os.environ.get("AWS_ENDPOINT_URL") == state["aws_endpoint_url"]:
        return True  # already pointed at it (the stack's own process, or an exported URL)
    targeting = [name for name in AWS_TARGET_VARIABLES if os.environ.get(name)]
    if targeting:
        if required:
            raise CommandError(
                "this command only runs against the local stack, but the shell targets AWS",
                hint="unset " + " / ".join(AWS_TARGET_VARIABLES),
            )
        if state is not None:
            # An exported AWS_ACCESS_KEY_ID=testing (for the aws CLI against moto) would
            # otherwise send the command to AWS with nothing said, and its "cannot reach
            # AWS ... start the local stack" would point at a stack that is running.
            print(
                f"(a local stack runs at {state['aws_endpoint_url']}, but "
                f"{', '.join(targeting)} in the shell sends this command to AWS; "
                f"unset {'it' if len(targeting) == 1 else 'them'} to use the stack)",
                file=sys.stderr,
            )
        return False
    if state is None:
        if required:
            raise CommandError("the local stack is not running", hint="start it with `make run`")
        if read_state(path) is not None:
            # A stack that stopped without cleaning up (killed): say where this goes,
            # since a default profile in ~/.aws would take it to an AWS account.
            print(
                f"(the local stack recorded in {path} does not answer; this command goes "
                "to AWS with whatever credentials the shell finds)",
                file=sys.stderr,
            )
        return False
    from functions.shared.settings import get_settings
    from ops.moto import use_fake_credentials

    use_fake_credentials()
    os.environ.update({k: str(v) for k, v in state.get("environment", {}).items()})
    get_settings.cache_clear()
    print(f"(using the local stack at {state['aws_endpoint_url']}, {path})", file=sys.stderr)
    return True
