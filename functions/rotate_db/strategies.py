"""The two rotation strategies for PostgreSQL logins.

Alternating users (read-only and app tiers): each tier has two login roles,
both members of the tier's NOLOGIN group role. A rotation gives the login that
AWSCURRENT does *not* use a new password (logged in as the admin secret's
user) and switches the secret to it. The login in use is never touched, so the
secret's AWSCURRENT value and the database agree at every moment, and
connections opened with the previous value keep working until the next rotation.

Single user (admin): the admin secret's own login changes its own password.
PostgreSQL keeps one password per role, so between setSecret and finishSecret
the database already holds the AWSPENDING password; a retried finishSecret
closes that window, and setSecret also accepts AWSPREVIOUS to recover from it.

Value (Secrets Manager's database secret format): {"engine": "postgres",
"host", "port", "dbname", "username", "password"} plus, for the tiers,
"masterarn": the admin secret's ARN.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from functions.rotate_db import database
from functions.shared.db.credentials import CredentialError
from functions.shared.observability import logger
from functions.shared.rotation.generate import generate_password
from functions.shared.rotation.protocol import (
    DispatchingRotator,
    RotationError,
    Rotator,
    StepContext,
)
from functions.shared.rotation.store import (
    CURRENT,
    PENDING,
    PREVIOUS,
    SecretValueError,
    SecretVersion,
)
from functions.shared.settings import get_settings

# The tier whose logins each alternating-users secret holds; the tier's group role is
# `<prefix>_<tier>` (functions/shared/db/roles.py), whatever the deployment's prefix.
TIER_OF_SECRET = {"db-readonly": "readonly", "db-app": "app"}


def _username(version: SecretVersion) -> str:
    return str(version.value.get("username", ""))


class NoValueToRotateFrom(RotationError):
    # Only a person can put a parseable value back: retrying the step cannot help.
    retry_helps = False


def _base(ctx: StepContext) -> SecretVersion:
    """The value a rotation works from: AWSCURRENT, or AWSPREVIOUS when AWSCURRENT does
    not parse (plain text saved over it in the console).

    Rotation is how a malformed value gets replaced (docs/ROTATION.md), so it must not
    stop one, an emergency least of all: AWSPREVIOUS still names the login in use
    before the edit and the admin secret that can arm the other one.
    """
    try:
        return ctx.current()
    except SecretValueError as exc:
        unreadable = exc.version_id
    previous, _ = ctx.previous()
    if previous is None:
        names = (
            f"a login of the {_tier(ctx)} tier and the admin secret as masterarn"
            if ctx.spec.name in TIER_OF_SECRET
            else "the admin login and the password the database holds"
        )
        raise NoValueToRotateFrom(
            f"{ctx.spec.name}: neither {CURRENT} nor {PREVIOUS} parses as the secret's JSON; "
            f"make the last version that does (naming {names}) {CURRENT} again and rotate "
            "again"
        )
    logger.warning(
        "current version does not parse; rotating from the previous one",
        extra={
            "secret": ctx.metadata.name,
            "current_version_id": unreadable,
            "previous_version_id": previous.version_id,
        },
    )
    return previous


def _tier(ctx: StepContext) -> str:
    return TIER_OF_SECRET.get(ctx.spec.name, ctx.spec.name)


def _secret_tier_group(ctx: StepContext, conn: Any, login: str) -> str | None:
    """`login`'s tier group if that is the secret's own tier, else None.

    The tier comes from the secret's inventory name, never from its value: a value
    pasted from the other tier's secret would otherwise have this secret alternate
    over that tier's logins, and the other secret's next rotation re-arm the one this
    secret then holds.
    """
    group = database.tier_group(conn, login)
    tier = TIER_OF_SECRET.get(ctx.spec.name)
    if group is None or tier is None or not group.endswith(f"_{tier}"):
        return None
    return group


class AlternatingUsersRotator(Rotator):
    def create_secret(self, ctx: StepContext) -> None:
        if ctx.pending() is not None:
            return
        current = _base(ctx)
        with self._as_admin(ctx, current) as conn:
            _, other = self._other_login(ctx, conn, _username(current))
        value = {**current.value, "username": other, "password": generate_password()}
        ctx.store.put_pending(ctx.secret_id, ctx.token, value)

    def set_secret(self, ctx: StepContext) -> None:
        pending = ctx.require_pending()
        current = _base(ctx)
        _refuse_stored_password(ctx, pending, current)
        with self._as_admin(ctx, current) as conn:
            # The pending value names the login whose password is about to change:
            # check it is the tier's other login, never some other role. Also on a
            # retry whose password works already: that alone says nothing of the login.
            _, expected = self._other_login(ctx, conn, _username(current))
            if _username(pending) != expected:
                raise RotationError(
                    f"{ctx.spec.name}: version {ctx.token} names a login outside the tier"
                )
            # A login an emergency left fenced off (NOLOGIN: its step failed halfway) is
            # armed the emergency's way too, whatever this rotation is: a session that
            # outlived that fence must not outlive this one.
            fenced = not database.can_login(conn, expected)
            if not ctx.emergency and not fenced:
                if database.holds_password(pending.value):
                    return
                # Settings first: once the password is set, a retried step skips both.
                self._arm(ctx, conn, expected, pending)
                return
            # The login being armed was AWSPREVIOUS, a value that may have leaked with
            # the rest: no session of it may run while its fences and password change
            # (any role may change its own), and none opened with it survives. Every
            # retry does all of it again.
            try:
                with database.fenced_off(conn, expected) as ended:
                    self._arm(ctx, conn, expected, pending)
            except database.SessionsSurvived as exc:
                raise RotationError(f"{ctx.spec.name}: {exc}") from None
            logger.info(
                "sessions of the login being armed ended",
                extra={"secret": ctx.metadata.name, "ended": ended},
            )

    def _arm(self, ctx: StepContext, conn: Any, login: str, pending: SecretVersion) -> None:
        try:
            database.restore_login_settings(conn, login, _tier(ctx))
        except database.TierSettingsError as exc:
            raise RotationError(f"{ctx.spec.name}: {exc}") from None
        database.change_password(conn, login, str(pending.value["password"]))

    def test_secret(self, ctx: StepContext) -> None:
        pending = ctx.require_pending()
        _check_login(ctx, pending)
        # A tier login that could create roles, bypass row-level security or every
        # check is not one of the tier's logins: the API must never be handed it
        # (the migrations refuse such roles too: migrations.check_tier_roles).
        with database.connect(pending.value) as conn:
            row = conn.execute(
                "SELECT rolsuper OR rolcreaterole OR rolbypassrls OR rolreplication "
                "FROM pg_catalog.pg_roles WHERE rolname = current_user"
            ).fetchone()
            in_tier = _secret_tier_group(ctx, conn, _username(pending)) is not None
        if row is None or row[0]:
            raise RotationError(
                f"{ctx.spec.name}: version {ctx.token} logs in with administrative rights"
            )
        if not in_tier:
            raise RotationError(
                f"{ctx.spec.name}: version {ctx.token} names a login outside the {_tier(ctx)} tier"
            )

    def retire(self, ctx: StepContext, previous: SecretVersion | None) -> None:
        # The login to retire is the tier login AWSCURRENT does not name, whatever
        # AWSPREVIOUS's value says: that value may name the group role (the first
        # deploy's), no login at all (a console edit), or another tier's login.
        self._retire_all_but(ctx, ctx.current())

    def _retire_all_but(self, ctx: StepContext, keep: SecretVersion) -> None:
        """Give every login of the tier but `keep`'s a password nobody stores: the
        leaked one stops working and so does every other guess, until a later rotation
        gives it a fresh one. Set with no session of the login running, so none can
        choose its own after."""
        ended = 0
        with self._as_admin(ctx, keep) as conn:
            group = _secret_tier_group(ctx, conn, _username(keep))
            if group is None:
                raise RotationError(
                    f"{ctx.spec.name}: version {keep.version_id} names a login outside the "
                    f"{_tier(ctx)} tier"
                )
            # Never the group role itself (it never logs in, and fencing it would end
            # by giving it LOGIN): group_logins lists the tier's logins only.
            for login in database.group_logins(conn, group):
                if login == _username(keep):
                    continue
                try:
                    with database.fenced_off(conn, login) as count:
                        database.change_password(conn, login, generate_password())
                except database.SessionsSurvived as exc:
                    raise RotationError(f"{ctx.spec.name}: {exc}") from None
                ended += count
        logger.info(
            "previous database login retired",
            extra={"secret": ctx.metadata.name, "version_id": ctx.token, "ended": ended},
        )

    @contextmanager
    def _as_admin(self, ctx: StepContext, current: SecretVersion) -> Iterator[Any]:
        """A connection as the admin secret's user.

        The admin's own rotation may run at the same time (the first deploy starts every
        schedule at once; later their windows can meet): from its setSecret to its
        finishSecret the database holds the admin's AWSPENDING password, and after it
        AWSCURRENT is a newer value than the one first read. Those are tried in turn
        before the step gives up; AWSPREVIOUS last, for an AWSCURRENT a console edit
        left unparseable (or naming a password the database never held): the admin's
        own rotation replaces such a value from AWSPREVIOUS, and until it runs the
        tiers still rotate. A value the database refuses is never used, so trying
        more versions grants nothing the database would not.
        """
        admin_id = str(current.value.get("masterarn") or get_settings().db_admin_secret_id)
        tried: set[str] = set()
        with ExitStack() as stack:
            for stage in (CURRENT, PENDING, CURRENT, PREVIOUS):
                try:
                    admin = ctx.store.read(admin_id, stage=stage)
                except SecretValueError as exc:
                    tried.add(exc.version_id or stage)
                    continue
                if admin is None or admin.version_id in tried:
                    continue
                tried.add(admin.version_id)
                try:
                    conn = stack.enter_context(database.connect(admin.value))
                except (database.LoginRefused, CredentialError):
                    continue
                yield conn
                return
        if not tried:
            raise RotationError(f"{ctx.spec.name}: the admin secret has no {CURRENT} value")
        raise RotationError(
            f"{ctx.spec.name}: no stored value of the admin secret logs in; see the "
            "RUNBOOK's 'A rotation failed' for the admin secret first"
        )

    def _other_login(self, ctx: StepContext, conn: Any, current_login: str) -> tuple[str, str]:
        """The tier's group role and the login that AWSCURRENT does not use."""
        group = _secret_tier_group(ctx, conn, current_login)
        if group is None:
            raise RotationError(
                f"{ctx.spec.name}: {CURRENT} names a login outside the {_tier(ctx)} tier; "
                f"make a version that names one of its logins {CURRENT} again"
            )
        others = [login for login in database.group_logins(conn, group) if login != current_login]
        if not others:
            raise RotationError(f"{ctx.spec.name}: no second login to alternate to")
        # The tier's first other login, so a rotation from a group-named bootstrap
        # value and one from either login both land on a well-defined user.
        return group, others[0]


class SingleUserRotator(Rotator):
    def create_secret(self, ctx: StepContext) -> None:
        if ctx.pending() is not None:
            return
        current = _base(ctx)
        value = {**current.value, "password": generate_password()}
        ctx.store.put_pending(ctx.secret_id, ctx.token, value)

    def set_secret(self, ctx: StepContext) -> None:
        pending = ctx.require_pending()
        current = _base(ctx)
        # Before the retry shortcut below: a value whose password works says nothing
        # about whether it names this secret's login.
        if _username(pending) != _username(current):
            raise RotationError(
                f"{ctx.spec.name}: version {ctx.token} names another login than the admin's"
            )
        _refuse_stored_password(ctx, pending, current)
        if database.holds_password(pending.value):
            if ctx.emergency:
                # A retry: the password changed already, but the sessions opened with
                # the leaked one may not have been ended yet.
                with database.connect(pending.value) as conn:
                    self._end_leaked_sessions(ctx, conn, pending)
            return
        # AWSPREVIOUS too: a crash between an earlier set and finish leaves the password
        # the database holds in whichever version that rotation stored.
        previous = ctx.previous()[0]
        for candidate in (current, None if previous == current else previous):
            if candidate is None or _username(candidate) != _username(pending):
                continue
            try:
                with database.connect(candidate.value) as conn:
                    database.change_password(
                        conn, _username(pending), str(pending.value["password"])
                    )
                    if ctx.emergency:
                        self._end_leaked_sessions(ctx, conn, pending)
                return
            except database.LoginRefused:
                continue
        raise RotationError(f"{ctx.spec.name}: no stored password logs in as the admin user")

    def _end_leaked_sessions(self, ctx: StepContext, conn: Any, pending: SecretVersion) -> None:
        # Not left to finishSecret's retire, two invocations later: a session opened
        # with the leaked password could set a password of its own meanwhile, and
        # neither the stored values nor the retirement would log in again.
        ended = _end_other_sessions(ctx, conn, pending)
        logger.info(
            "sessions of the leaked admin password ended",
            extra={"secret": ctx.metadata.name, "version_id": ctx.token, "ended": ended},
        )

    def test_secret(self, ctx: StepContext) -> None:
        pending = ctx.require_pending()
        if _username(pending) != _username(_base(ctx)):
            raise RotationError(
                f"{ctx.spec.name}: version {ctx.token} names another login than the admin's"
            )
        _check_login(ctx, pending)

    def retire(self, ctx: StepContext, previous: SecretVersion | None) -> None:
        # The old password is already gone (one password per role); what remains is the
        # sessions that logged in with it. The login cannot be fenced off (this step
        # logs in as it), and any of those sessions may have set a password of its own
        # before it ended: end them, set the current password again, and end whatever
        # logged in with another password in between.
        current = ctx.current()
        with database.connect(current.value) as conn:
            ended = _end_other_sessions(ctx, conn, current)
        logger.info(
            "sessions of the previous admin password ended",
            extra={
                "secret": ctx.metadata.name,
                "version_id": previous.version_id if previous else None,
                "ended": ended,
            },
        )


def _end_other_sessions(ctx: StepContext, conn: Any, holder: SecretVersion) -> int:
    """End every other session of the admin login, set `holder`'s password again (one of
    them may have set its own before it ended) and end whatever logged in in between;
    returns how many sessions were ended."""
    login = _username(holder)
    try:
        ended = database.terminate_sessions(conn, login)
        database.change_password(conn, login, str(holder.value["password"]))
        ended += database.terminate_sessions(conn, login)
    except database.SessionsSurvived as exc:
        raise RotationError(f"{ctx.spec.name}: {exc}") from None
    return ended


class DatabaseRotator(DispatchingRotator):
    """Single user for the admin secret, alternating users for every other tier."""

    def __init__(self) -> None:
        self.single = SingleUserRotator()
        self.alternating = AlternatingUsersRotator()

    def _for(self, ctx: StepContext) -> Rotator:
        return self.single if ctx.spec.name == "db-admin" else self.alternating


def _refuse_stored_password(
    ctx: StepContext, pending: SecretVersion, current: SecretVersion
) -> None:
    """A rotation gives a login a password no version held: never AWSCURRENT's or
    AWSPREVIOUS's again (a pending value copied from one would pass every check)."""
    import hmac

    offered = str(pending.value.get("password", "")).encode()
    for stored in (current, ctx.previous()[0]):
        if stored is None or stored.version_id == pending.version_id:
            continue
        if hmac.compare_digest(offered, str(stored.value.get("password", "")).encode()):
            raise RotationError(
                f"{ctx.spec.name}: version {ctx.token} reuses the password of version "
                f"{stored.version_id}"
            )


def _check_login(ctx: StepContext, pending: SecretVersion) -> None:
    try:
        with database.connect(pending.value) as conn:
            row = conn.execute("SELECT current_user").fetchone()
            # The tier's privileges come through the group role: one real read proves them.
            conn.execute("SELECT 1 FROM public.recalls LIMIT 1").fetchall()
    except database.LoginRefused:
        raise RotationError(f"{ctx.spec.name}: version {ctx.token} does not log in") from None
    if row is None or row[0] != _username(pending):
        raise RotationError(f"{ctx.spec.name}: version {ctx.token} logged in as another user")
