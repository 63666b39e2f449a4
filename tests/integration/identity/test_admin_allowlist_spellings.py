"""The admin allowlist in any spelling of its networks: the API and the WAF
responder read one list the same way."""

from __future__ import annotations

import ipaddress

import pytest

from tests.support.api import call_api


@pytest.mark.parametrize("client_ip", ["192.0.2.10", "::ffff:192.0.2.10"])
def test_an_allowlist_written_in_ipv4_mapped_form_admits_its_admins(world, monkeypatch, client_ip):
    """An operator who writes the admin allowlist as `::ffff:192.0.2.0/120` (the
    spelling a dual-stack host prints for 192.0.2.0/24) locked every admin out: their
    fully authenticated request from 192.0.2.10, or from ::ffff:192.0.2.10, was a 403.

    admin_allowlist.address_allowed folds an IPv4-mapped *client* to IPv4 but
    compares it with the allowlist's networks as parsed (settings.parse_cidrs kept
    `::ffff:192.0.2.0/120` as an IPv6 network), so version 4 never equals version 6
    and nothing matches. The rest of the platform reads the same list in canonical
    form (blocks.ProtectedNetworks.why_protected maps each entry through
    canonical_network), so the WAF responder treats these addresses as the admin
    allowlist while the API refuses them as outsiders; ARCHITECTURE.md promises
    "every writer and reader uses one spelling per network"."""
    from functions.shared.blocks import ProtectedNetworks
    from functions.shared.settings import get_settings

    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS", "::ffff:192.0.2.0/120")
    get_settings.cache_clear()
    admin_id = world.create_user("root@example.com", role="admin")
    headers = world.admin_headers(admin_id)
    # The responder's reading of the same list: 192.0.2.10 is on the admin allowlist.
    protected = ProtectedNetworks(admin=get_settings().admin_allowed_cidrs, never_block=())
    assert protected.why_protected(ipaddress.ip_network("192.0.2.10/32")) == "admin allowlist"

    response = call_api("GET", "/admin/users", headers=headers, source_ip=client_ip)

    assert response.status == 200, (response.status, response.body)
