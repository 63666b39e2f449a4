"""`babyshield audit`'s tls_legacy_refused check against real TLS servers on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ops import audit
from ops.audit import Target, check_legacy_tls_refused, check_tls
from ops.audit_checks import FAIL, PASS, SKIP

TIMEOUT = 5.0


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: the probe does not verify it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def server_context(
    certificate: tuple[Path, Path],
    minimum: ssl.TLSVersion,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with warnings.catch_warnings():
        # Serving the deprecated versions is what makes a server the audit must fail.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = minimum
        context.maximum_version = maximum
    # Every server here has the legacy cipher suites, so only its minimum version decides.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


@dataclass
class LoopbackServer:
    port: int
    connections: int = 0


@contextmanager
def serving(context: ssl.SSLContext | None) -> Iterator[LoopbackServer]:
    """A server on 127.0.0.1 that completes or refuses a TLS handshake per connection.

    With no context it reads the ClientHello and closes the connection, as an edge that
    drops a handshake it will not serve.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # how often the loop looks at `stop`
    server = LoopbackServer(port=listener.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            server.connections += 1
            with connection:
                connection.settimeout(TIMEOUT)
                try:
                    if context is None:
                        connection.recv(16384)
                    else:
                        with context.wrap_socket(connection, server_side=True):
                            pass
                except OSError:
                    pass  # a refused or abandoned handshake is an outcome under test

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join()
        listener.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    # Bound but not listening: the port stays ours and every connection is refused.
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        yield reserved.getsockname()[1]


@pytest.mark.parametrize(
    ("maximum", "accepted"),
    [(ssl.TLSVersion.TLSv1, "TLSv1"), (ssl.TLSVersion.MAXIMUM_SUPPORTED, "TLSv1.1")],
    ids=["tls1.0-only", "tls1.0-and-up"],
)
def test_a_server_that_accepts_legacy_tls_fails_naming_the_version(certificate, maximum, accepted):
    # Given a server with the legacy TLS_1_0 policy's minimum version
    with serving(server_context(certificate, ssl.TLSVersion.TLSv1, maximum)) as server:
        # When the probe offers only TLS 1.0 and 1.1
        check = check_legacy_tls_refused("127.0.0.1", server.port, TIMEOUT)
    # Then it fails and names the version the server accepted
    assert check.status == FAIL, check
    assert check.name == "tls_legacy_refused"
    assert f"the server accepted {accepted};" in check.detail
    assert "refuse TLS below 1.2" in check.detail


def test_a_server_with_a_tls12_minimum_passes(certificate):
    # Given a server that refuses anything below TLS 1.2
    with serving(server_context(certificate, ssl.TLSVersion.TLSv1_2)) as server:
        # When the probe offers only TLS 1.0 and 1.1
        check = check_legacy_tls_refused("127.0.0.1", server.port, TIMEOUT)
    # Then the refusal is a pass, and the probe did reach the server
    assert check.status == PASS, check
    assert check.detail == "TLS 1.0 and 1.1 refused"
    assert server.connections == 1


def test_a_server_that_closes_the_connection_during_the_handshake_passes():
    # Given a server that drops the ClientHello without answering it
    with serving(None) as server:
        # When the probe offers only TLS 1.0 and 1.1
        check = check_legacy_tls_refused("127.0.0.1", server.port, TIMEOUT)
    # Then that is a refusal too
    assert check.status == PASS, check


def test_a_closed_port_fails_with_the_reason(closed_port):
    # When the probe cannot connect at all
    check = check_legacy_tls_refused("127.0.0.1", closed_port, TIMEOUT)
    # Then it fails and says why, instead of counting it as a refusal
    assert check.status == FAIL, check
    assert "the TLS 1.0/1.1 probe failed" in check.detail
    assert "refused" in check.detail.lower()


def test_an_openssl_built_without_legacy_tls_skips_without_connecting(certificate, monkeypatch):
    # Given an OpenSSL built without TLS 1.0 and 1.1: simulated by clearing the two flags
    # the audit reads (ssl.HAS_TLSv1, ssl.HAS_TLSv1_1), since this machine's has them
    monkeypatch.setattr(ssl, "HAS_TLSv1", False)
    monkeypatch.setattr(ssl, "HAS_TLSv1_1", False)
    # And a server that would accept them
    with serving(server_context(certificate, ssl.TLSVersion.TLSv1)) as server:
        # When the probe runs
        check = check_legacy_tls_refused("127.0.0.1", server.port, TIMEOUT)
    # Then it is skipped with the reason, neither a pass nor a fail, and nothing was sent
    assert check.status == SKIP, check
    assert check.detail.startswith("not performed:")
    assert "without TLS 1.0 and 1.1" in check.detail
    assert server.connections == 0


def test_an_openssl_that_cannot_build_the_client_hello_skips_without_connecting(
    certificate, monkeypatch
):
    # Given a local OpenSSL that has the flags but offers no protocol in the range at
    # handshake time (as a system policy can make it): simulated with a context whose
    # minimum (TLS 1.2) is above its maximum (TLS 1.1), a real "no protocols available"
    def unusable_context() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    monkeypatch.setattr(audit, "_legacy_tls_context", unusable_context)
    # And a server that would accept TLS 1.0
    with serving(server_context(certificate, ssl.TLSVersion.TLSv1)) as server:
        # When the probe runs
        check = check_legacy_tls_refused("127.0.0.1", server.port, TIMEOUT)
    # Then the local failure is a skip, not the server's refusal, and nothing was sent
    assert check.status == SKIP, check
    assert "NO_PROTOCOLS_AVAILABLE" in check.detail
    assert server.connections == 0


def test_check_tls_runs_the_legacy_probe_after_the_tls_check(certificate):
    # Given an https server with a TLS 1.2 minimum (and a certificate nobody trusts)
    with serving(server_context(certificate, ssl.TLSVersion.TLSv1_2)) as server:
        target = Target(url=f"https://127.0.0.1:{server.port}", timeout=TIMEOUT)
        # When check_tls runs up to its HSTS request (which this server cannot answer)
        tls, legacy = islice(check_tls(target), 2)
    # Then the legacy probe follows the tls check and judges only the protocol version
    assert (tls.name, tls.status) == ("tls", FAIL)
    assert (legacy.name, legacy.status) == ("tls_legacy_refused", PASS)


def test_plain_http_skips_the_legacy_probe_like_the_other_tls_checks():
    checks = list(check_tls(Target(url="http://127.0.0.1:9")))
    assert [(c.name, c.status) for c in checks] == [
        ("tls", SKIP),
        ("tls_legacy_refused", SKIP),
        ("hsts_over_tls", SKIP),
    ]
