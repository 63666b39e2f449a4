"""detect-secrets reports what is in the tree, whatever the line looks like or the network says.

Three ways the gate passed a committed credential:
- the `is_indirect_reference` heuristic dropped every secret on a line shaped
  `x = call(...)`, which is how a key pair or a database URL is usually written;
- detect-secrets "verified" candidates by sending them to their issuer (an AWS
  key pair to STS, ...) and dropped the ones refused, so the verdict depended on
  the network. Here the scanner gets a network on which STS answers 403, as it
  does for a key it does not accept: a local HTTPS proxy with its own CA;
- `scan --baseline` ran only the detectors the baseline's header listed.
"""

from __future__ import annotations

import datetime
import json
import random
import re
import socket
import ssl
import string
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ops.security import GateResult, ScanContext, Verdict, run_gates
from tests.security.test_gates import AUDITED_MODULE, fake_aws_key_pair, minimal_project

STS_HOST = "sts.amazonaws.com"
STS_REFUSAL = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/xml\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


class StsThatRefuses:
    """An HTTP proxy that answers every CONNECT to STS with a TLS server saying 403."""

    def __init__(self, directory: Path):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
        ca = _certificate("test CA", ca_key, ca_name, ca_key, ca=True)
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _certificate(STS_HOST, key, ca_name, ca_key, ca=False)
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        chain = directory / "sts.pem"
        chain.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            + leaf.public_bytes(serialization.Encoding.PEM)
        )
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(chain)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.tunnels: list[str] = []
        self.refused = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = connection.recv(4096)
                if not chunk:
                    return
                request += chunk
            target = request.split(b" ", 2)[1].decode()
            self.tunnels.append(target)
            if target != f"{STS_HOST}:443":
                connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with self._tls.wrap_socket(connection, server_side=True) as tls:
                received = b""
                while b"\r\n\r\n" not in received:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    received += chunk
                head, _, body = received.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                # Read the whole body first: closing with unread bytes resets the
                # connection and the client would see no answer at all.
                while length and len(body) < int(length.group(1)):
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    body += chunk
                tls.sendall(STS_REFUSAL)
                self.refused += 1

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def refusing_sts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StsThatRefuses]:
    proxy = StsThatRefuses(tmp_path)
    for variable in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(proxy.ca_file))
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return minimal_project(tmp_path / "tree")


def test_the_proxy_answers_as_sts_does_for_a_refused_key(refusing_sts: StsThatRefuses):
    # The harness itself: a client trusting the test CA gets STS's 403 through the proxy.
    import requests

    response = requests.post(
        f"https://{STS_HOST}", data={"Action": "GetCallerIdentity"}, timeout=10
    )

    assert response.status_code == 403
    assert refusing_sts.tunnels == [f"{STS_HOST}:443"]


def plant(tree: Path, relative: str, text: str) -> None:
    path = tree / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def reported_lines(result: GateResult, relative: str) -> set[tuple[str, int]]:
    return {(f.rule, f.line) for f in result.findings if f.path == relative}


def test_a_key_id_sts_refuses_is_reported_and_nothing_leaves(
    tree: Path, refusing_sts: StsThatRefuses
):
    # Given an AWS key pair committed by mistake, on a network where STS refuses it
    key_id, secret = fake_aws_key_pair()
    plant(
        tree,
        "functions/shared/leak.py",
        f'AWS_ACCESS_KEY_ID = "{key_id}"\naws_secret_access_key = "{secret}"\n',
    )

    # When detect-secrets runs
    [result] = run_gates(ScanContext(root=tree), ["detect-secrets"])

    # Then the key id is reported with the rest, and no candidate left the machine
    assert result.verdict is Verdict.FAIL
    assert ("AWS Access Key", 1) in reported_lines(result, "functions/shared/leak.py")
    assert refusing_sts.tunnels == []


def test_a_key_pair_passed_to_a_call_fails_the_gate(tree: Path):
    # Given a key pair written the usual way: arguments of a client call
    key_id, secret = fake_aws_key_pair()
    plant(
        tree,
        "ops/export.py",
        "import boto3\n\n"
        f'client = boto3.client("s3", aws_access_key_id="{key_id}", '
        f'aws_secret_access_key="{secret}")\n',
    )

    [result] = run_gates(ScanContext(root=tree), ["detect-secrets"])

    assert result.verdict is Verdict.FAIL
    assert ("AWS Access Key", 3) in reported_lines(result, "ops/export.py")


def test_a_database_password_in_a_connect_call_fails_the_gate(tree: Path):
    # Built at run time so the repository holds no URL with a password in it
    password = "".join(random.Random(3).choices(string.ascii_letters + string.digits, k=14))
    plant(
        tree,
        "functions/shared/db/direct.py",
        f'conn = psycopg.connect("postgresql://admin:{password}@db.internal:5432/app")\n',
    )

    [result] = run_gates(ScanContext(root=tree), ["detect-secrets"])

    assert result.verdict is Verdict.FAIL
    assert ("Basic Auth Credentials", 1) in reported_lines(result, "functions/shared/db/direct.py")


def test_every_detector_runs_whatever_the_baseline_header_lists(tree: Path):
    """`detect-secrets scan --baseline` runs only the detectors the baseline's header
    (`plugins_used`) lists, unless told --force-use-all-plugins. A baseline written with
    `--disable-plugin KeywordDetector` (its noisiest detector), or by an older
    detect-secrets before a detector existed, would switch those detectors off for
    every later run; reviewers audit a baseline's entries, not its header."""
    # Given a baseline whose header leaves KeywordDetector out
    baseline_path = tree / ".secrets.baseline"
    baseline = json.loads(baseline_path.read_text(encoding="utf-8"))
    baseline["plugins_used"] = [
        plugin for plugin in baseline["plugins_used"] if plugin["name"] != "KeywordDetector"
    ]
    baseline_path.write_text(json.dumps(baseline, indent=2), encoding="utf-8")
    # and a database password committed in a migration (found by KeywordDetector alone)
    password = "".join(random.Random(4).choices(string.ascii_letters + string.digits, k=20))
    plant(tree, "sql/099_planted.sql", f"ALTER ROLE babyshield_app WITH PASSWORD '{password}';\n")

    # When detect-secrets runs
    [result] = run_gates(ScanContext(root=tree), ["detect-secrets"])

    # Then the password is reported, and the audited entries still count as audited
    assert result.verdict is Verdict.FAIL
    assert ("Secret Keyword", 1) in reported_lines(result, "sql/099_planted.sql")
    assert not any(f.path == AUDITED_MODULE for f in result.findings)
    assert result.note != "0 audited false positives"
