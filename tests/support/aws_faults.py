"""A proxy in front of the moto server that disturbs chosen AWS calls: lets them
through, applies them and drops the answer (botocore then retries the call, as it
would after a lost connection in AWS), answers a 500 without forwarding them, or
refuses them with an AWS error code (`refuse("AccessDeniedException")`: a denied
permission, a throttled call) as AWS answers."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

PASS, DROP_ANSWER, FAIL = "pass", "drop-answer", "fail"
_REFUSE = "refuse:"


def refuse(code: str) -> str:
    """The action that answers a call with the AWS error `code` (HTTP 400)."""
    return _REFUSE + code


@dataclass
class AwsFaults:
    """Which AWS calls to disturb: `rule(target, body)` -> PASS, DROP_ANSWER or FAIL."""

    rule: Callable[[str, bytes], str] = lambda target, body: PASS
    seen: list[tuple[str, str]] = field(default_factory=list)

    def disturbed(self, action: str) -> list[str]:
        return [target for target, done in self.seen if done == action]


class _FaultyAws(BaseHTTPRequestHandler):
    upstream: tuple[str, int]
    faults: AwsFaults

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")
        action = self.faults.rule(target, body)
        if action != PASS:
            self.faults.seen.append((target, action))
        if action == FAIL:
            payload = json.dumps(
                {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError"}
            ).encode()
            self.send_response(500)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if action.startswith(_REFUSE):
            code = action.removeprefix(_REFUSE)
            payload = json.dumps({"__type": code, "message": f"refused ({code})"}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("x-amzn-ErrorType", code)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection(*self.upstream, timeout=10)
        upstream.request("POST", self.path, body=body, headers=dict(self.headers.items()))
        answer = upstream.getresponse()
        payload = answer.read()
        upstream.close()
        if action == DROP_ANSWER:
            self.close_connection = True
            return  # moto applied the call; the caller never hears so
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST  # noqa: N815 - the name http.server looks up

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def faulty_aws_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsFaults]:
    """Point AWS_ENDPOINT_URL at a proxy in front of the current moto server."""
    from functions.shared.identity import reset_caches
    from functions.shared.settings import get_settings

    moto = urlsplit(get_settings().aws_endpoint_url or "")
    faults = AwsFaults()
    handler = type(
        "Handler", (_FaultyAws,), {"upstream": (moto.hostname, moto.port), "faults": faults}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    get_settings.cache_clear()
    reset_caches()
    try:
        yield faults
    finally:
        server.shutdown()
        server.server_close()


def first_only(predicate: Callable[[str, bytes], bool], action: str) -> Callable[[str, bytes], str]:
    """A rule that disturbs the first call `predicate` matches, and no other."""
    done: list[bool] = []

    def rule(target: str, body: bytes) -> str:
        if not done and predicate(target, body):
            done.append(True)
            return action
        return PASS

    return rule
