"""/admin/blocks in audit_log: a change that may have taken effect, and a refused one.

The registry is where a block takes effect (the next sweep applies whatever it
holds), so audit_log must name every change the registry may hold, also one whose
answers were lost; and an admin session asking to block the admin allowlist or the
never-block list leaves a row, as a refused API-key change does.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from functions.shared import names
from tests.integration.identity.conftest import ADMIN_IP
from tests.support.api import call_api
from tests.support.waf import create_resources


@pytest.fixture
def admin(world, monkeypatch):
    create_resources(monkeypatch)
    admin_id = world.create_user("root@example.com", role="admin")
    return {"id": admin_id, "headers": world.admin_headers(admin_id)}


def _waf_rows(world) -> list[tuple[str, str, str | None, str | None, dict[str, Any]]]:
    """(action, outcome, actor, source ip, detail) of every waf_* audit row."""
    return [
        (row[1], row[2], row[0], row[3], row[4])
        for row in world.audit_rows()
        if row[1].startswith("waf_")
    ]


def _registry_ips() -> list[str]:
    from functions.shared import blocks

    items = blocks._dynamodb().scan(TableName=names.BLOCK_REGISTRY_TABLE)["Items"]
    return sorted(item["ip"]["S"] for item in items)


def _answers_lost_and_not_readable(monkeypatch, lost: set[str]) -> None:
    """DynamoDB writes the rows of `lost` but its answers never arrive, and after the
    first read (the decision's) the registry cannot be read back."""
    from functions.shared import blocks

    scans: list[int] = []

    class LostAnswers:
        def __init__(self, client):
            self._client = client

        def __getattr__(self, name):
            return getattr(self._client, name)

        def put_item(self, **kwargs):
            answer = self._client.put_item(**kwargs)
            if kwargs["Item"]["ip"]["S"] in lost:
                raise ReadTimeoutError(endpoint_url="http://dynamodb")
            return answer

        def scan(self, **kwargs):
            scans.append(1)
            if len(scans) > 1:
                raise ReadTimeoutError(endpoint_url="http://dynamodb")
            return self._client.scan(**kwargs)

    monkeypatch.setattr(
        blocks.BlockRegistry, "client", property(lambda reg: LostAnswers(blocks._dynamodb()))
    )


def test_a_block_whose_answers_were_lost_is_audited_as_possibly_made(world, admin, monkeypatch):
    # Given DynamoDB writes the block but its answer is lost, and it cannot be read back
    with monkeypatch.context() as faults:
        _answers_lost_and_not_readable(faults, {"203.0.113.7/32"})
        # When an admin blocks the address
        response = call_api(
            "POST",
            "/admin/blocks",
            headers=admin["headers"],
            source_ip=ADMIN_IP,
            json_body={"targets": ["203.0.113.7"], "reason": "scanner"},
        )
    # Then the answer says the change may have taken effect
    assert response.status == 503
    assert "may have taken effect" in response.json()["error"]["message"]
    # And it did: the registry holds the block, which the next sweep applies
    assert _registry_ips() == ["203.0.113.7/32"]
    # So audit_log names it, by whom and from where, as a change of unknown outcome
    ((action, _outcome, actor, source_ip, detail),) = _waf_rows(world)
    assert (action, actor, source_ip) == ("waf_block", str(admin["id"]), ADMIN_IP)
    assert detail["targets"] == "203.0.113.7/32"
    assert detail["waf_ip_sets"] == "registry outcome unknown: may have taken effect"


def test_an_unblock_whose_answers_were_lost_is_audited_as_possibly_made(world, admin, monkeypatch):
    blocked = call_api(
        "POST",
        "/admin/blocks",
        headers=admin["headers"],
        source_ip=ADMIN_IP,
        json_body={"targets": ["203.0.113.8"], "reason": "scanner"},
    )
    assert blocked.status == 201, blocked.body
    with monkeypatch.context() as faults:
        _answers_lost_and_not_readable(faults, {"203.0.113.8/32"})
        response = call_api(
            "DELETE", "/admin/blocks/203.0.113.8", headers=admin["headers"], source_ip=ADMIN_IP
        )

    assert response.status == 503
    rows = _waf_rows(world)
    assert [(r[0], r[4].get("waf_ip_sets")) for r in rows] == [
        ("waf_block", None),
        ("waf_unblock", "registry outcome unknown: may have taken effect"),
    ]
    assert rows[1][4]["targets"] == "203.0.113.8/32"


def test_a_block_partly_known_partly_unknown_is_audited_as_both(world, admin, monkeypatch):
    with monkeypatch.context() as faults:
        _answers_lost_and_not_readable(faults, {"203.0.113.9/32"})
        response = call_api(
            "POST",
            "/admin/blocks",
            headers=admin["headers"],
            source_ip=ADMIN_IP,
            json_body={"targets": ["203.0.113.1", "203.0.113.9"], "reason": "scanner"},
        )

    assert response.status == 503
    assert _registry_ips() == ["203.0.113.1/32", "203.0.113.9/32"]
    by_outcome = {r[4]["waf_ip_sets"]: r[4]["targets"] for r in _waf_rows(world)}
    assert by_outcome == {
        "registry write failed partway": "203.0.113.1/32",
        "registry outcome unknown: may have taken effect": "203.0.113.9/32",
    }


@pytest.mark.parametrize(
    ("targets", "recorded"),
    [
        (["192.0.2.0/24"], "192.0.2.0/24"),
        # The caller's own address, in its IPv4-mapped spelling, beside one that may be
        (["203.0.113.7", f"::ffff:{ADMIN_IP}"], f"203.0.113.7/32,{ADMIN_IP}/32"),
        (["192.0.0.0/16"], "192.0.0.0/16"),
    ],
    ids=["the-allowlist", "own-address-mapped", "a-range-around-it"],
)
def test_an_attempt_to_block_the_admin_allowlist_is_refused_and_audited(
    world, admin, targets, recorded
):
    """A stolen admin session trying to lock every admin out is refused, and shows in
    audit_log as an API-key change refused does: who, what, from where, why refused."""
    response = call_api(
        "POST",
        "/admin/blocks",
        headers=admin["headers"],
        source_ip=ADMIN_IP,
        json_body={"targets": targets, "reason": "lock them out", "duration_seconds": 3600},
    )

    assert response.status == 409
    assert _registry_ips() == []
    ((action, outcome, actor, source_ip, detail),) = _waf_rows(world)
    assert (action, outcome, actor, source_ip) == (
        "waf_block",
        "failure",
        str(admin["id"]),
        ADMIN_IP,
    )
    assert detail == {"targets": recorded, "duration_seconds": 3600, "reason": "conflict"}
    # No credential of the request in any row
    for row in world.audit_rows():
        shown = str(row)
        assert admin["headers"]["X-API-Key"] not in shown
        assert admin["headers"]["Authorization"].split()[1] not in shown


def test_an_unblock_of_an_address_not_blocked_is_audited_as_refused(world, admin):
    response = call_api(
        "DELETE", "/admin/blocks/198.51.100.0%2F24", headers=admin["headers"], source_ip=ADMIN_IP
    )

    assert response.status == 404
    ((action, outcome, actor, source_ip, detail),) = _waf_rows(world)
    assert (action, outcome, actor, source_ip) == (
        "waf_unblock",
        "failure",
        str(admin["id"]),
        ADMIN_IP,
    )
    assert detail == {"targets": "198.51.100.0/24", "reason": "not_found"}


def test_a_malformed_target_is_refused_without_a_row_or_an_echo(world, admin):
    """Only a well-formed request's refusal is a row (as for API keys): what cannot be
    read as an address is not written anywhere."""
    response = call_api(
        "POST",
        "/admin/blocks",
        headers=admin["headers"],
        source_ip=ADMIN_IP,
        json_body={"targets": ["<script>"], "reason": "x"},
    )

    assert response.status == 400
    assert _waf_rows(world) == []
