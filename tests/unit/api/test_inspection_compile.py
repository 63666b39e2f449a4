"""The detector compiles a rule group only when a request can reach it (cold start)."""

from __future__ import annotations

from functions.api import inspection


def test_a_group_is_compiled_on_first_use_only():
    # Given a group as the detector builds it
    group = inspection._compile(
        inspection.Threat.PATH_TRAVERSAL, inspection._Anchor(("..",), r"\.\."), {"dots": r"/"}
    )
    assert group._compiled is None

    # When its pattern is first asked for, then it is compiled once and kept
    pattern = group.pattern
    assert pattern.search("../")
    assert group.pattern is pattern


def test_a_plain_request_compiles_only_the_groups_its_text_can_reach():
    # Given the detector's groups, none compiled for this test
    for group in inspection._GROUPS:
        group._compiled = None

    # When a plain path and search word are scanned (scan: detect's cache would
    # answer for values an earlier test already inspected)
    assert inspection.scan("/recalls") is None
    assert inspection.scan("crib") is None

    # Then only the groups their triggers select were compiled
    reachable = inspection._groups_for("/recalls") | inspection._groups_for("crib")
    compiled = {i for i, group in enumerate(inspection._GROUPS) if group._compiled is not None}
    assert compiled == reachable
    assert len(compiled) < len(inspection._GROUPS) // 4
