"""/admin/blocks: list, block and unblock through the admin chain, audited, applied to WAF."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from functions.shared import names
from tests.integration.identity.conftest import ADMIN_IP
from tests.support.api import call_api
from tests.support.waf import create_resources, ip_set_updates_always_conflict


@pytest.fixture
def admin(world, monkeypatch):
    create_resources(monkeypatch)
    admin_id = world.create_user("root@example.com", role="admin")
    return {
        "id": admin_id,
        "headers": world.admin_headers(admin_id),
    }


def ip_set_addresses(version: int = 4) -> list[str]:
    name = names.AUTO_BLOCK_IPSET_V4 if version == 4 else names.AUTO_BLOCK_IPSET_V6
    wafv2 = boto3.client("wafv2")
    summary = next(s for s in wafv2.list_ip_sets(Scope="REGIONAL")["IPSets"] if s["Name"] == name)
    found = wafv2.get_ip_set(Name=name, Scope="REGIONAL", Id=summary["Id"])
    return list(found["IPSet"]["Addresses"])


def block_by_hand(admin, *targets: str, reason: str = "scanner") -> None:
    created = call_api(
        "POST",
        "/admin/blocks",
        headers=admin["headers"],
        source_ip=ADMIN_IP,
        json_body={"targets": list(targets), "reason": reason},
    )
    assert created.status == 201, created.body


def test_block_list_unblock_round_trip(world, admin):
    # Given an admin with every lock
    headers = admin["headers"]
    # When they block an address by hand
    created = call_api(
        "POST",
        "/admin/blocks",
        headers=headers,
        source_ip=ADMIN_IP,
        json_body={"targets": ["203.0.113.7"], "reason": "credential stuffing"},
    )
    # Then it is in the WAF IP set at once and in the list, with its expiry
    assert created.status == 201
    assert created.json()["changed"][0]["ip"] == "203.0.113.7/32"
    assert ip_set_addresses() == ["203.0.113.7/32"]
    listed = call_api("GET", "/admin/blocks", headers=headers, source_ip=ADMIN_IP).json()
    assert [b["ip"] for b in listed["blocks"]] == ["203.0.113.7/32"]
    assert listed["blocks"][0]["blocked_until"] > 0
    # When they unblock it
    removed = call_api("DELETE", "/admin/blocks/203.0.113.7", headers=headers, source_ip=ADMIN_IP)
    # Then it leaves the IP set at once, and both changes are in the audit log
    assert removed.status == 204
    assert ip_set_addresses() == []
    actions = [row[1] for row in world.audit_rows()]
    assert "waf_block" in actions
    assert "waf_unblock" in actions


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"targets": ["not-an-ip"], "reason": "x"}, 400),
        ({"targets": ["10.0.0.0/1"], "reason": "x"}, 400),
        ({"targets": [], "reason": "x"}, 422),
        ({"targets": ["203.0.113.9"], "reason": ""}, 422),
        ({"targets": ["203.0.113.9"], "reason": "x", "duration_seconds": 5}, 422),
        ({"targets": [ADMIN_IP], "reason": "oops"}, 409),
        ({"targets": ["fe80::1%eth0"], "reason": "x"}, 400),
        ({"targets": ["203.0.113.9"], "reason": "   "}, 422),
        ({"targets": ["203.0.113.9"], "reason": "scan\nADDRESS fake"}, 422),
        ({"targets": ["203.0.113.9"], "reason": "scan \x1b[2J"}, 422),
        ({"targets": ["203.0.113.9"], "reason": "x" * 501}, 422),
    ],
    ids=[
        "not-an-ip",
        "too-wide",
        "no-targets",
        "no-reason",
        "too-short",
        "allowlisted",
        "ipv6-zone-id",
        "blank-reason",
        "newline-in-reason",
        "escape-in-reason",
        "reason-too-long",
    ],
)
def test_bad_block_requests_are_refused_and_change_nothing(world, admin, body, status):
    response = call_api(
        "POST", "/admin/blocks", headers=admin["headers"], source_ip=ADMIN_IP, json_body=body
    )
    assert response.status == status
    assert "not-an-ip" not in response.body
    assert ip_set_addresses() == []


def test_an_address_named_twice_is_one_block(world, admin):
    # Given a request that names one address three ways
    body = {"targets": ["203.0.113.7", "203.0.113.7/32", " 203.0.113.7 "], "reason": "dup"}

    # When it is sent (DynamoDB refuses a batch that writes one key twice)
    response = call_api(
        "POST", "/admin/blocks", headers=admin["headers"], source_ip=ADMIN_IP, json_body=body
    )

    # Then it is one block, counted as one offence, once in the IP set
    assert response.status == 201, response.body
    (change,) = response.json()["changed"]
    assert (change["ip"], change["offences"]) == ("203.0.113.7/32", 1)
    assert ip_set_addresses() == ["203.0.113.7/32"]


def test_unblocking_an_unknown_address_is_404(world, admin):
    response = call_api(
        "DELETE", "/admin/blocks/198.51.100.1", headers=admin["headers"], source_ip=ADMIN_IP
    )
    assert response.status == 404


def test_blocks_need_the_admin_chain(world, admin):
    # A user's JWT alone, from an allowlisted address, is not enough
    user_id = world.create_user("parent@example.com")
    response = call_api(
        "GET",
        "/admin/blocks",
        headers={"Authorization": f"Bearer {world.token(user_id)}"},
        source_ip=ADMIN_IP,
    )
    assert response.status in (401, 403)


def test_a_reason_of_the_longest_allowed_length_is_kept(world, admin):
    body = {"targets": ["203.0.113.9"], "reason": "x" * 500}
    response = call_api(
        "POST", "/admin/blocks", headers=admin["headers"], source_ip=ADMIN_IP, json_body=body
    )
    assert response.status == 201, response.body
    assert response.json()["changed"][0]["reason"] == "x" * 500


@pytest.mark.parametrize(
    ("blocked", "unblocked", "named", "kept"),
    [
        # An address inside a blocked /24: the answer says which network holds it.
        ("198.51.100.0/24", "198.51.100.5", "inside the blocked network 198.51.100.0/24",
         "198.51.100.0/24"),
        # The /24 around one blocked address: it names the block inside that stays.
        ("198.51.100.7", "198.51.100.0/24", "blocked inside it: 198.51.100.7",
         "198.51.100.7/32"),
    ],
    ids=["address-inside-a-network", "network-around-an-address"],
)  # fmt: skip
def test_unblocking_what_is_no_block_of_its_own_names_the_block_that_stays(
    world, admin, blocked, unblocked, named, kept
):
    block_by_hand(admin, blocked, reason="scanner farm")
    response = call_api(
        "DELETE", f"/admin/blocks/{unblocked}", headers=admin["headers"], source_ip=ADMIN_IP
    )
    assert response.status == 404
    assert named in response.json()["error"]["message"]
    assert ip_set_addresses() == [kept]


@pytest.mark.parametrize(
    "path",
    [
        "/admin/blocks/198.51.100.0/24",  # a CIDR as written: two path segments
        "/admin/blocks/198.51.100.0%2F24",  # or as one, percent-encoded
    ],
)
def test_an_admin_unblocks_a_network(world, admin, path):
    block_by_hand(admin, "198.51.100.0/24", reason="scanner farm")
    response = call_api("DELETE", path, headers=admin["headers"], source_ip=ADMIN_IP)
    assert response.status == 204, response.body
    assert ip_set_addresses() == []


def test_an_encoded_ipv6_address_is_unblocked(world, admin):
    block_by_hand(admin, "2001:db8::7")
    response = call_api(
        "DELETE", "/admin/blocks/2001%3Adb8%3A%3A7", headers=admin["headers"], source_ip=ADMIN_IP
    )
    assert response.status == 204, response.body


@pytest.mark.parametrize("duration", ["3600", 3600.5, True, 1e300])
def test_a_duration_is_a_json_whole_number(world, admin, duration):
    response = call_api(
        "POST",
        "/admin/blocks",
        headers=admin["headers"],
        source_ip=ADMIN_IP,
        json_body={"targets": ["203.0.113.7"], "reason": "x", "duration_seconds": duration},
    )
    assert response.status == 422
    assert response.json()["error"]["fields"] == ["body.duration_seconds"]


def test_a_whole_number_written_with_a_fraction_is_that_number(world, admin):
    # JSON Schema's integer, as the OpenAPI document states it, admits 7200.0.
    response = call_api(
        "POST",
        "/admin/blocks",
        headers=admin["headers"],
        source_ip=ADMIN_IP,
        json_body={"targets": ["203.0.113.7"], "reason": "x", "duration_seconds": 7200.0},
    )

    assert response.status == 201, response.body
    (change,) = response.json()["changed"]
    assert change["blocked_until"] - time.time() == pytest.approx(7200, abs=60)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/admin/blocks", None),
        ("POST", "/admin/blocks", {"targets": ["203.0.113.7"], "reason": "scanner"}),
        ("DELETE", "/admin/blocks/203.0.113.7", None),
    ],
)
def test_an_unreachable_block_registry_is_a_503_not_a_500(world, admin, method, path, body):
    # Given the registry table is gone (DynamoDB refuses every call on it)
    boto3.client("dynamodb").delete_table(TableName=names.BLOCK_REGISTRY_TABLE)
    response = call_api(method, path, headers=admin["headers"], source_ip=ADMIN_IP, json_body=body)
    assert response.status == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert "dynamodb" not in response.body.lower()


def test_block_calls_on_a_request_have_a_requests_time_budget(world, admin, monkeypatch):
    """A stalled WAF or DynamoDB must be the API's 503, not API Gateway's 504: the
    responder's budget (10 s reads, five attempts: up to 100 s a call) is not for it."""
    from functions.shared import blocks
    from functions.shared.aws_clients import REQUEST
    from tests.support.aws import record_client_budgets

    blocks.clear_caches()
    budgets = record_client_budgets(monkeypatch, blocks)
    created = call_api(
        "POST",
        "/admin/blocks",
        headers=admin["headers"],
        source_ip=ADMIN_IP,
        json_body={"targets": ["203.0.113.9"], "reason": "scanner"},
    )

    assert created.status == 201, created.body
    assert {service for service, _ in budgets} >= {"dynamodb", "wafv2"}
    assert {timeouts for _, timeouts in budgets} == {REQUEST}
    # And outside a request the responder's budget is back
    budgets.clear()
    blocks.aws_client("dynamodb")
    assert budgets[0][1] != REQUEST


def _registry_ips() -> list[str]:
    items = boto3.client("dynamodb").scan(TableName=names.BLOCK_REGISTRY_TABLE)["Items"]
    return sorted(item["ip"]["S"] for item in items)


def _waf_audit(world) -> list[tuple[str, dict[str, Any]]]:
    return [(row[1], row[4]) for row in world.audit_rows() if row[1].startswith("waf_")]


def test_a_block_the_ip_sets_cannot_take_now_is_accepted_audited_and_applied_by_the_sweep(
    world, admin, monkeypatch
):
    """The registry holds the block, so it takes effect at the next sweep: the answer
    says accepted and pending (not failed), and the audit log has it."""
    from functions.waf_responder.sweep import sweep

    body = {"targets": ["203.0.113.7"], "reason": "scanner"}
    # Given the IP sets refuse every update
    with monkeypatch.context() as conflicts:
        ip_set_updates_always_conflict(conflicts)
        # When an admin blocks an address
        response = call_api(
            "POST", "/admin/blocks", headers=admin["headers"], source_ip=ADMIN_IP, json_body=body
        )
    # Then it is accepted and pending, with the usual body
    assert response.status == 202, response.body
    answer = response.json()
    assert (answer["pending"], answer["changed"][0]["ip"]) == (True, "203.0.113.7/32")
    assert "within 5 minutes" in answer["message"]
    # And it is audited, as pending
    ((action, detail),) = _waf_audit(world)
    assert action == "waf_block"
    assert (detail["targets"], detail["waf_ip_sets"]) == ("203.0.113.7/32", "pending")
    # And the sweep applies it
    assert sweep()["restored"] == ["203.0.113.7/32"]
    assert ip_set_addresses() == ["203.0.113.7/32"]

    # When the admin sends the request again anyway
    again = call_api(
        "POST", "/admin/blocks", headers=admin["headers"], source_ip=ADMIN_IP, json_body=body
    )
    # Then it is one offence still, not a repeat offender
    assert again.status == 201, again.body
    assert (again.json()["pending"], again.json()["changed"][0]["offences"]) == (False, 1)


def test_an_unblock_the_ip_sets_cannot_take_now_is_accepted_audited_and_applied_by_the_sweep(
    world, admin, monkeypatch
):
    from functions.waf_responder.sweep import sweep

    block_by_hand(admin, "203.0.113.8")
    with monkeypatch.context() as conflicts:
        ip_set_updates_always_conflict(conflicts)
        response = call_api(
            "DELETE", "/admin/blocks/203.0.113.8", headers=admin["headers"], source_ip=ADMIN_IP
        )

    assert response.status == 202, response.body
    assert response.json()["pending"] is True
    assert [(a, d.get("waf_ip_sets")) for a, d in _waf_audit(world)] == [
        ("waf_block", None),
        ("waf_unblock", "pending"),
    ]
    assert ip_set_addresses() == ["203.0.113.8/32"]
    assert sweep()["removed"] == ["203.0.113.8/32"]
    assert ip_set_addresses() == []


def test_a_registry_failing_partway_is_a_503_and_audits_what_was_written(world, admin, monkeypatch):
    """Nothing written stays a plain 503; part written is still a 503 (repeat it), and
    the part that took effect is in the audit log."""
    from functions.shared import blocks

    failing = "203.0.113.26"

    class OneRowFails:
        def __init__(self, client):
            self._client = client

        def __getattr__(self, name):
            return getattr(self._client, name)

        def put_item(self, **kwargs):
            if kwargs["Item"]["ip"]["S"] == f"{failing}/32":
                raise ConnectionError("DynamoDB went away")
            return self._client.put_item(**kwargs)

    monkeypatch.setattr(
        blocks.BlockRegistry, "client", property(lambda reg: OneRowFails(blocks._dynamodb()))
    )
    targets = [f"203.0.113.{i}" for i in range(1, 31)]

    response = call_api(
        "POST",
        "/admin/blocks",
        headers=admin["headers"],
        source_ip=ADMIN_IP,
        json_body={"targets": targets, "reason": "scanner"},
    )

    assert response.status == 503
    written = _registry_ips()
    # The rows written while the claim ran (some, not the failing one), and only those
    assert written
    assert f"{failing}/32" not in written
    ((action, detail),) = _waf_audit(world)
    assert action == "waf_block"
    assert sorted(detail["targets"].split(",")) == written
    assert detail["waf_ip_sets"] == "registry write failed partway"


def test_unblocking_an_address_a_wider_block_still_covers_names_the_network(world, admin):
    """An address with a block of its own, later covered by a wider one: its own block
    is lifted (200, not 204), and the answer says the WAF still refuses it."""
    block_by_hand(admin, "198.51.100.5", reason="brute force")
    block_by_hand(admin, "198.51.100.0/24", reason="scanner farm")

    response = call_api(
        "DELETE", "/admin/blocks/198.51.100.5", headers=admin["headers"], source_ip=ADMIN_IP
    )

    assert response.status == 200, response.body
    answer = response.json()
    assert [b["ip"] for b in answer["changed"]] == ["198.51.100.5/32"]
    assert answer["covered_by"] == {"198.51.100.5/32": ["198.51.100.0/24"]}
    assert "198.51.100.5/32 is inside 198.51.100.0/24" in answer["message"]
    assert answer["pending"] is False
    assert ip_set_addresses() == ["198.51.100.0/24"]
    assert [a for a, _ in _waf_audit(world)] == ["waf_block", "waf_block", "waf_unblock"]


def test_a_block_of_a_blocked_address_answers_the_block_it_replaced(world, admin):
    # Given an address blocked for a day
    first = call_api(
        "POST",
        "/admin/blocks",
        headers=admin["headers"],
        source_ip=ADMIN_IP,
        json_body={"targets": ["203.0.113.7"], "reason": "scanner", "duration_seconds": 86400},
    )
    assert first.status == 201
    assert first.json()["replaced"] == []
    # When an admin blocks it again for an hour
    second = call_api(
        "POST",
        "/admin/blocks",
        headers=admin["headers"],
        source_ip=ADMIN_IP,
        json_body={"targets": ["203.0.113.7"], "reason": "again", "duration_seconds": 3600},
    )
    # Then the answer holds the day-long block it replaced, so the shorter expiry is visible
    assert second.status == 201
    replaced = second.json()["replaced"]
    assert [(b["ip"], b["reason"]) for b in replaced] == [("203.0.113.7/32", "scanner")]
    assert replaced[0]["blocked_until"] > second.json()["changed"][0]["blocked_until"]


def test_a_long_block_list_is_cut_and_says_so(world, admin, monkeypatch):
    """A Lambda answer stops at 6 MB and the registry can hold more than the IP sets'
    10,000 blocks in a large attack: the list is cut (the soonest expiring first) and
    says how many there are, instead of failing as a 502."""
    from functions.api.admin import blocks as admin_blocks

    monkeypatch.setattr(admin_blocks, "MAX_LISTED_BLOCKS", 2)
    block_by_hand(admin, "203.0.113.1", "203.0.113.2", "203.0.113.3")
    listed = call_api("GET", "/admin/blocks", headers=admin["headers"], source_ip=ADMIN_IP)
    assert listed.status == 200
    body = listed.json()
    assert (len(body["blocks"]), body["total"], body["truncated"]) == (2, 3, True)


def test_a_refusal_says_what_is_wrong_with_each_field_without_echoing_it(world, admin):
    """`{"ip": ...}` was answered with fields ["body", "body.targets"] alone: not that
    `targets` is required and that the body has a field the route does not take. The
    unexpected field's name and every value sent stay out of the answer."""
    response = call_api(
        "POST",
        "/admin/blocks",
        headers=admin["headers"],
        source_ip=ADMIN_IP,
        json_body={"ip_address_guess": "203.0.113.7", "reason": "x", "duration_seconds": -5},
    )

    assert response.status == 422
    error = response.json()["error"]
    assert error["fields"] == ["body", "body.duration_seconds", "body.targets"]
    assert error["problems"] == [
        {"field": "body", "problem": "has a field this request does not take"},
        {"field": "body.duration_seconds", "problem": "out of range"},
        {"field": "body.targets", "problem": "required"},
    ]
    # The correlation id is a random UUID, which may itself hold "-5".
    shown = json.dumps({k: v for k, v in error.items() if k != "correlation_id"})
    assert "ip_address_guess" not in shown
    assert "203.0.113.7" not in shown
    assert "-5" not in shown
    assert set(error) == {"code", "message", "fields", "problems", "correlation_id"}
