"""The migration files and how the runner renders them (no database needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.shared.db.migrations import Migration, MigrationError, load_migrations
from functions.shared.db.roles import PRODUCTION_ROLES, RoleNames


def test_migrations_are_ordered_and_the_readonly_user_has_its_own_file():
    names = [m.name for m in load_migrations()]
    assert names == sorted(names)
    assert any("readonly_user" in name for name in names)


def test_every_placeholder_in_the_shipped_files_is_a_known_role():
    # Rendering raises on an unknown placeholder; no braces may survive it
    for migration in load_migrations():
        rendered = migration.render(PRODUCTION_ROLES)
        assert "{{" not in rendered, migration.name


def test_roles_render_as_quoted_identifiers_with_the_prefix():
    migration = Migration("001", "001_x.sql", "GRANT {{readonly}} TO {{readonly_a}};")
    rendered = migration.render(RoleNames.with_prefix("bst1"))
    assert rendered == 'GRANT "bst1_readonly" TO "bst1_readonly_a";'


def test_an_unknown_placeholder_is_an_error():
    with pytest.raises(MigrationError, match="unknown placeholder"):
        Migration("001", "001_x.sql", "GRANT {{superuser}} TO x;").render(PRODUCTION_ROLES)


def test_the_checksum_covers_the_file_not_the_prefix():
    migration = Migration("001", "001_x.sql", "SELECT {{app}};")
    assert migration.checksum == Migration("001", "001_x.sql", "SELECT {{app}};").checksum
    assert migration.checksum != Migration("001", "001_x.sql", "SELECT {{app}} ;").checksum


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"1_a.sql": ""}, "named NNN_name.sql"),
        ({"001_a.sql": "", "001_b.sql": ""}, "used twice"),
        ({}, "no migrations"),
    ],
)
def test_badly_named_or_missing_files_are_refused(
    tmp_path: Path, files: dict[str, str], message: str
):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)


@pytest.mark.parametrize("prefix", ["", "Upper", "has-dash", "x" * 42, 'a"; DROP', "1abc"])
def test_a_role_prefix_must_be_a_plain_identifier(prefix: str):
    with pytest.raises(ValueError, match="role prefix"):
        RoleNames.with_prefix(prefix)


def test_production_roles_are_the_babyshield_tiers():
    assert PRODUCTION_ROLES.login_roles("readonly") == (
        "babyshield_readonly_a",
        "babyshield_readonly_b",
    )
    assert PRODUCTION_ROLES.login_roles("app") == ("babyshield_app_a", "babyshield_app_b")
    assert PRODUCTION_ROLES.readonly == "babyshield_readonly"
    with pytest.raises(ValueError, match="unknown tier"):
        PRODUCTION_ROLES.login_roles("root")
