"""The whole platform on this machine: what `babyshield local` (`make run`) starts.

- a moto server on a free loopback port, with the resources the CDK stack
  declares, under the same names (functions/shared/names.py): every inventory
  secret, the DynamoDB tables, the WAF IP sets and log groups, the on-call topic
  and the SSM parameters;
- PostgreSQL: DATABASE_URL, else the server on 127.0.0.1:5432, else an embedded
  one; a `babyshield_local` database, migrated and seeded with demo recalls, a
  demo user and admin and their API keys. The API's read-only and app logins
  read their passwords from the local Secrets Manager, so `babyshield rotate`
  changes what live requests use;
- the API behind the local edge (auto-block IP sets, per-IP rate rule, WAF
  logs), on http://127.0.0.1:$PORT;
- a subscriber that prints every on-call message to this console;
- the responder's expiry sweep every 5 minutes (BABYSHIELD_LOCAL_SWEEP_SECONDS
  changes the period), as the EventBridge schedule runs it in AWS: expired blocks
  and addresses added to the never-block list leave the IP sets.

Each start reuses the database (migrations and seeding are idempotent, and the
logins get fresh passwords matching fresh secrets) and starts AWS empty: blocks,
rate counters and secrets do not survive a restart, by design.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from functions.shared import names
from ops.console import CommandError

if TYPE_CHECKING:
    from functions.shared.db.roles import RoleNames

LOCAL_DATABASE = "babyshield_local"
ONCALL_CONSOLE_QUEUE = f"{names.PREFIX}-oncall-console"
WAF_LOG_STREAM = "local-edge"
API_LOG_STREAM = "local-api"
# The WebACL's rate-based rule: requests per 5 minutes per address (cdk/waf.py).
DEFAULT_RATE_LIMIT = 2000
DEFAULT_ADMIN_CIDRS = "127.0.0.1/32,::1/128"
# The expiry sweep's period in seconds, for a session that wants it sooner (the tests).
SWEEP_SECONDS_VARIABLE = "BABYSHIELD_LOCAL_SWEEP_SECONDS"
MAX_SWEEP_SECONDS = 24 * 60 * 60


class PortUnavailable(Exception):
    def __init__(self, port: int, reason: str):
        super().__init__(f"cannot listen on 127.0.0.1:{port}: {reason}")
        self.port = port


@dataclass(frozen=True)
class LocalStackOptions:
    port: int
    rate_limit: int = DEFAULT_RATE_LIMIT
    quiet: bool = False
    oncall_printer: bool = True
    # A database prepared elsewhere (tests: a private database with prefixed roles).
    admin_conninfo: str | None = None
    roles: RoleNames | None = None
    # None: $BABYSHIELD_LOCAL_SWEEP_SECONDS, else the schedule's SWEEP_PERIOD_MINUTES.
    sweep_seconds: int | None = None


def sweep_seconds_from_environment() -> int:
    """The expiry sweep's period: BABYSHIELD_LOCAL_SWEEP_SECONDS, else as in AWS."""
    from functions.shared.blocks import SWEEP_PERIOD_MINUTES

    default = SWEEP_PERIOD_MINUTES * 60
    raw = os.environ.get(SWEEP_SECONDS_VARIABLE, "").strip()
    if not raw:
        return default
    hint = f"use whole seconds from 1 to {MAX_SWEEP_SECONDS}, or unset it ({default})"
    if not (raw.isascii() and raw.isdigit()):
        raise CommandError(f"{SWEEP_SECONDS_VARIABLE} must be a number of seconds", hint=hint)
    value = int(raw)
    if not 1 <= value <= MAX_SWEEP_SECONDS:
        raise CommandError(f"{SWEEP_SECONDS_VARIABLE} out of range: {value}", hint=hint)
    return value


def _aws_client(service: str) -> Any:
    from functions.shared.blocks import aws_client

    return aws_client(service)


def local_database(stack: ExitStack) -> tuple[str, str]:
    """The admin conninfo of the local database, and where it lives (for the banner)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from ops.postgres import embedded_cluster, shared_server

    explicit = os.environ.get("DATABASE_URL")
    if explicit:
        return explicit, "DATABASE_URL"
    server = shared_server()
    where = "127.0.0.1:5432"
    if server is None:
        server = stack.enter_context(embedded_cluster())
        where = "an embedded PostgreSQL (scram-sha-256)"
    with psycopg.connect(server, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (LOCAL_DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(LOCAL_DATABASE)))
    return make_conninfo(server, dbname=LOCAL_DATABASE), where


class RefusalLogShipper(logging.Handler):
    """Sends the API's refused-authentication lines to its log group on moto.

    In AWS, Lambda sends every line the API logs to CloudWatch, and the
    failed-sign-ins alarm's responder reads them back with Logs Insights. Here
    the API runs in this process and logs to stdout; this handler puts the
    lines that alarm is about (authentication decisions that refused) where the
    responder looks, so `babyshield local alarm failed-sign-ins` blocks as in
    AWS. Only refusals: one moto call per accepted request would slow every
    local request for lines no alarm reads.
    """

    def __init__(self, logs: Any, group: str, stream: str, formatter: logging.Formatter):
        super().__init__()
        self._logs = logs
        self._group = group
        self._stream = stream
        self._lock = threading.Lock()
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(record, "auth_event", "").endswith("_failed"):
            return
        try:
            message = self.format(record)
            with self._lock:
                self._logs.put_log_events(
                    logGroupName=self._group,
                    logStreamName=self._stream,
                    logEvents=[{"timestamp": int(record.created * 1000), "message": message}],
                )
        except Exception:  # noqa: BLE001 - a lost log line must not fail the request
            self.handleError(record)


def ship_refusals(stack: ExitStack) -> None:
    """Attach a RefusalLogShipper to the functions' logger until the stack stops."""
    from functions.shared.observability import logger
    from functions.shared.settings import get_settings
    from ops.provision import ensure_log_stream

    logs = _aws_client("logs")
    group = get_settings().api_log_group
    ensure_log_stream(logs, group, API_LOG_STREAM)
    shipper = RefusalLogShipper(logs, group, API_LOG_STREAM, logger.registered_formatter)
    # Powertools' Logger writes through the standard logger of its name.
    functions_logger = logging.getLogger(logger.name)
    functions_logger.addHandler(shipper)
    stack.callback(functions_logger.removeHandler, shipper)


class OncallPrinter:
    """Prints every message of the on-call topic, through an SQS subscription."""

    POLL_SECONDS = 1.0

    def __init__(self, topic_arn: str):
        self._sqs = _aws_client("sqs")
        self._queue_url = self._sqs.create_queue(QueueName=ONCALL_CONSOLE_QUEUE)["QueueUrl"]
        queue_arn = self._sqs.get_queue_attributes(
            QueueUrl=self._queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        _aws_client("sns").subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="oncall-printer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # A short poll, and the wait here: the moto server serves one call at a
                # time (ops/moto.py), so a long poll would hold every other AWS call of
                # the stack, each API request's included, for up to its wait.
                answer = self._sqs.receive_message(
                    QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
                )
            except Exception:  # noqa: BLE001 - the server is going away at shutdown
                if self._stop.wait(self.POLL_SECONDS):
                    return
                continue
            messages = answer.get("Messages", [])
            for message in messages:
                print(f"\n===== ON-CALL =====\n{message['Body']}\n===================", flush=True)
                self._sqs.delete_message(
                    QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
            if not messages and self._stop.wait(self.POLL_SECONDS):
                return


class ExpirySweeper:
    """Invokes the responder with the scheduled sweep event every period, as the
    EventBridge schedule does in AWS (cdk/detection.py, ExpirySweep): expired blocks
    and addresses on a protected list leave the IP sets, and alarms still in ALARM
    are looked at again.

    `alone`: held around each sweep, so no API request is served meanwhile. The
    responder runs in this process beside the API and shares its Powertools logger
    and metrics, which two Lambdas in AWS never do. A failed sweep is reported and
    the next one runs a period later (AWS would retry the same event; every sweep
    syncs the whole registry, so the next one makes up for it).
    """

    def __init__(
        self,
        period_seconds: float,
        alone: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ):
        self.period_seconds = period_seconds
        self._alone = alone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="expiry-sweep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the sweep in progress, if any: it finishes against the moto
        server, which stops after this."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.period_seconds):
            self.sweep_once()

    def sweep_once(self) -> dict[str, Any] | None:
        """One scheduled invocation; its answer, or None when it failed."""
        from functions.waf_responder.events import scheduled_sweep_event
        from functions.waf_responder.handler import lambda_handler
        from ops.apigw import LocalLambdaContext

        function = names.function_name("waf_responder")
        context = LocalLambdaContext(
            function_name=function, log_group_name=f"/aws/lambda/{function}", timeout_seconds=60
        )
        try:
            with self._alone():
                answer: dict[str, Any] = lambda_handler(scheduled_sweep_event(), context)
                return answer
        except Exception as exc:  # noqa: BLE001 - the next sweep comes a period later
            # The type only: an exception's text may quote a connection string. The
            # responder logged what failed, as it would in CloudWatch.
            with contextlib.suppress(OSError):
                print(
                    f"the expiry sweep failed ({type(exc).__name__}); the next one runs in "
                    f"{self.period_seconds:g} s",
                    file=sys.stderr,
                    flush=True,
                )
            return None


def _webhook_secret() -> str:
    import json

    from functions.shared.settings import get_settings

    secret = _aws_client("secretsmanager").get_secret_value(
        SecretId=get_settings().webhook_secret_id
    )
    return str(json.loads(secret["SecretString"])["secret"])


class RolesInUse(CommandError):
    """Another local stack runs on these database roles."""


def _claim_roles(stack: ExitStack, admin_conninfo: str, roles: RoleNames) -> None:
    """Refuse to start beside another local stack on the same roles.

    Roles belong to the whole PostgreSQL server, and provisioning gives the tiers'
    logins fresh passwords: a second stack on the same server (any database, any
    folder) would leave the first one's secrets naming passwords that no longer
    work. Each stack keeps a session named after its role prefix for as long as it
    runs; the server's own activity view shows the other's. An advisory lock
    around the check and the naming makes two stacks starting at once on one
    database take turns.
    """
    import psycopg

    name = f"babyshield-local-stack:{roles.prefix}"
    conn = psycopg.connect(admin_conninfo, autocommit=True)
    stack.callback(conn.close)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
        # A stack that just stopped closed its session; the server ends it a moment later.
        for _ in range(20):
            # The activity view is read once per transaction unless told to read again.
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchone()
            if not (row and row[0]):
                break
            time.sleep(0.1)
        else:
            raise RolesInUse(
                f"another local stack is running on this PostgreSQL server's "
                f"{roles.prefix}_* roles; starting would change their passwords under it",
                hint="stop it first (Ctrl-C in its terminal), or set DATABASE_URL to "
                "another server",
            )
        conn.execute("SELECT set_config('application_name', %s, false)", (name,))


def _provision(admin_conninfo: str, admin_cidrs: str, roles: RoleNames) -> dict[str, str]:
    """Every resource and every row the local stack needs; returns the discovered env."""
    from functions.shared.db.migrations import apply_migrations
    from ops.demo_identity import ensure_identity_tables, seed_demo_identity
    from ops.provision import ensure_log_stream, ensure_parameter
    from ops.rotate import ensure_local_secrets
    from ops.seed import seed_demo_data
    from ops.waf import ensure_local_resources

    apply_migrations(admin_conninfo, roles=roles)
    seed_demo_data(admin_conninfo)
    ensure_local_secrets(admin_conninfo, roles)
    ensure_identity_tables()
    seed_demo_identity(admin_conninfo)
    environment = ensure_local_resources(admin_cidrs)
    ensure_log_stream(_aws_client("logs"), names.WAF_LOG_GROUP, WAF_LOG_STREAM)
    ssm = _aws_client("ssm")
    ensure_parameter(ssm, names.ADMIN_ALLOWLIST_PARAMETER, admin_cidrs)
    # As the CDK stack seeds it: empty (the admin ranges are protected as the allowlist).
    ensure_parameter(ssm, names.NEVER_BLOCK_PARAMETER, names.NEVER_BLOCK_INITIAL)
    return environment


def _database_url(parts: dict[str, Any]) -> str:
    """A postgresql:// URL of conninfo `parts` that names the same server, whatever
    the password holds (`@`, `/`, `#` are percent-encoded), an IPv6 host (bracketed)
    or a socket directory (as the `host` query parameter)."""
    from urllib.parse import quote, urlencode

    user = quote(str(parts.get("user", "postgres")), safe="")
    password = parts.get("password")
    credentials = f"{user}:{quote(str(password), safe='')}" if password else user
    host = str(parts.get("host", "127.0.0.1"))
    port = parts.get("port", 5432)
    dbname = quote(str(parts.get("dbname", LOCAL_DATABASE)), safe="")
    if host.startswith("/"):
        return f"postgresql://{credentials}@:{port}/{dbname}?{urlencode({'host': host})}"
    if ":" in host:
        host = f"[{host}]"
    return f"postgresql://{credentials}@{host}:{port}/{dbname}"


def _demo_state(api_url: str, endpoint: str, admin_conninfo: str) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    from ops.demo_identity import DEMO_ACCOUNTS

    database_url = _database_url(conninfo_to_dict(admin_conninfo))
    return {
        "api_url": api_url,
        "aws_endpoint_url": endpoint,
        "region": os.environ["AWS_REGION"],
        "database_url": database_url,
        "users": [
            {"email": a.email, "password": a.password, "role": a.role} for a in DEMO_ACCOUNTS
        ],
        "api_keys": [
            {
                "key": key.api_key,
                "scopes": list(key.scopes),
                "owner": account.email,
                "rate_limit_per_minute": key.rate_limit_per_minute,
                "purpose": key.purpose,
            }
            for account in DEMO_ACCOUNTS
            for key in account.keys
        ],
        "webhook_secret": _webhook_secret(),
    }


@contextmanager
def local_stack(options: LocalStackOptions) -> Iterator[dict[str, Any]]:
    """Start everything, yield the state written to .babyshield/local.json, stop cleanly."""
    from functions.shared.settings import get_settings
    from ops.local_edge import EdgeIpSets, LocalEdge
    from ops.local_server import LocalApiServer, api_handler
    from ops.local_state import remove_state, write_state
    from ops.moto import reset_moto, running_moto_server, use_fake_credentials

    # Before anything starts: a mistyped period should cost a second, not a start-up.
    sweep_seconds = options.sweep_seconds or sweep_seconds_from_environment()
    saved_environment = dict(os.environ)
    with ExitStack() as stack:
        # The port first: a busy port should fail in a second, not after provisioning.
        try:
            server = LocalApiServer(("127.0.0.1", options.port), api_handler(), quiet=options.quiet)
        except OSError as exc:
            raise PortUnavailable(options.port, exc.strerror or str(exc)) from exc
        stack.callback(server.server_close)
        stack.callback(_restore_environment, saved_environment)
        from functions.shared.db.roles import PRODUCTION_ROLES

        if options.admin_conninfo:
            admin_conninfo, where = options.admin_conninfo, "as given"
        else:
            admin_conninfo, where = local_database(stack)
        roles = options.roles or PRODUCTION_ROLES
        # Before anything else changes: a refusal must leave the other stack untouched.
        _claim_roles(stack, admin_conninfo, roles)
        endpoint = stack.enter_context(running_moto_server())
        reset_moto(endpoint)
        use_fake_credentials()
        admin_cidrs = os.environ.get("ADMIN_ALLOWED_CIDRS") or DEFAULT_ADMIN_CIDRS
        environment = {
            "AWS_ENDPOINT_URL": endpoint,
            "BABYSHIELD_ENV": "local",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "ADMIN_ALLOWED_CIDRS": admin_cidrs,
            # As in AWS: on-call edits the never-block list in SSM (RUNBOOK), and the
            # responder, the API and `babyshield waf` read it there.
            "NEVER_BLOCK_CIDRS_PARAMETER": names.NEVER_BLOCK_PARAMETER,
        }
        os.environ.update(environment)
        for override in ("DATABASE_READONLY_URL", "DATABASE_APP_URL"):
            # The tiers read their secrets, so a rotation reaches live requests.
            os.environ.pop(override, None)
        get_settings.cache_clear()
        environment.update(_provision(admin_conninfo, admin_cidrs, roles))
        os.environ.update(environment)
        get_settings.cache_clear()

        edge = LocalEdge(
            api_handler(),
            rate_limit=options.rate_limit,
            ip_sets=EdgeIpSets.from_environment(environment),
            aws_client=_aws_client,
            log_stream=WAF_LOG_STREAM,
        )
        server.set_handler(edge)
        ship_refusals(stack)
        thread = threading.Thread(target=server.serve_forever, name="local-api", daemon=True)
        thread.start()
        stack.callback(server.shutdown)
        if options.oncall_printer:
            printer = OncallPrinter(environment["ONCALL_TOPIC_ARN"])
            printer.start()
            stack.callback(printer.stop)
        sweeper = ExpirySweeper(sweep_seconds, alone=server.serving_alone)
        sweeper.start()
        stack.callback(sweeper.stop)

        state = _demo_state(server.url, endpoint, admin_conninfo)
        state["database"] = where
        state["environment"] = {
            **environment,
            "AWS_REGION": os.environ["AWS_REGION"],
            "DATABASE_URL": admin_conninfo,
        }
        write_state(state)
        stack.callback(remove_state)
        # What exists now (imported modules, moto's backends, the provisioned
        # resources) lives as long as the stack. The collector's full passes walked
        # all of it, 17-276 ms each in the HTTP benchmark, while every AWS call and
        # local request in flight waited; frozen, they walk only what came after.
        gc.collect()
        gc.freeze()
        stack.callback(gc.unfreeze)
        yield state


def _restore_environment(saved: dict[str, str]) -> None:
    """Put the process back as it was: environment, settings and every cached client,
    pool and secret that pointed at this stack's moto server and database."""
    from functions.shared.blocks import clear_caches as clear_block_caches
    from functions.shared.db.pools import close_pools
    from functions.shared.identity import reset_caches as reset_identity_caches
    from functions.shared.settings import get_settings
    from functions.waf_responder.respond import clear_caches as clear_responder_caches

    close_pools()
    reset_identity_caches()
    clear_block_caches()
    clear_responder_caches()
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()
