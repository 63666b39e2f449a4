"""The attack detector against its corpus: every attack caught, every benign string passes.

Test ids show the string, so a failure names the payload or the product that broke.
The request-level behaviour (status codes, no echo, headers) is tested through the
handler in tests/unit/api/test_attack_inspection.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.api import inspection
from functions.api.inspection import Threat, detect, find_threat, find_threat_in_path
from tests.security.corpus import NAMED_BENIGN, Sample, attacks, benign
from tests.support.timing import best_of

ATTACKS = attacks()
BENIGN = benign()


def _id(sample: Sample) -> str:
    return f"{sample.group}:{sample.text}"


def test_the_corpus_is_large_enough_and_has_no_overlap():
    # Given the corpus files
    # Then there are enough attacks of each kind and enough benign strings
    assert len(ATTACKS) >= 150
    assert len(BENIGN) >= 300
    kinds = {sample.group for sample in ATTACKS}
    assert kinds == {threat.value for threat in Threat}
    for threat in Threat:
        assert sum(sample.group == threat.value for sample in ATTACKS) >= 40
    # And no string is filed as both an attack and benign
    assert not {s.text for s in ATTACKS} & {s.text for s in BENIGN}


@pytest.mark.parametrize("sample", ATTACKS, ids=_id)
def test_every_corpus_attack_is_detected_as_its_kind(sample: Sample):
    # Given an attack payload from the corpus
    # When the detector looks at it
    detection = detect(sample.text)
    # Then it is caught, and filed under the kind of attack it is
    assert detection is not None
    assert detection.threat.value == sample.group
    assert find_threat(sample.text) == detection.threat


def test_every_rule_has_an_attack_in_the_corpus():
    # Given each compiled rule group (one anchor, one or more named rules)
    forms = [form for sample in ATTACKS for form in inspection._forms(sample.text)]
    for group in inspection._GROUPS:
        # Then some corpus attack matches it, so no rule goes untested
        matched = {m.lastgroup for form in forms for m in group.pattern.finditer(form)}
        assert matched, f"no corpus attack matches {group.pattern.pattern[:60]!r}"
    # And every named rule is the one that matched for some attack
    named = {name for group in inspection._GROUPS for name in group.pattern.groupindex} - {
        "taut_word"
    }
    hit = {
        m.lastgroup
        for group in inspection._GROUPS
        for form in forms
        for m in group.pattern.finditer(form)
    }
    assert named <= hit, sorted(named - hit)


@pytest.mark.parametrize("sample", BENIGN, ids=_id)
def test_every_corpus_benign_string_passes(sample: Sample):
    # Given a product name, brand, hazard, remedy or search from the corpus
    # When the detector looks at it
    # Then nothing is found
    assert detect(sample.text) is None


@pytest.mark.parametrize("text", NAMED_BENIGN)
def test_named_product_names_and_everyday_text_pass(text: str):
    assert find_threat(text) is None
    assert text in {sample.text for sample in BENIGN}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/recalls/..%2f..%2fetc%2fpasswd", Threat.PATH_TRAVERSAL),
        ("/recalls/%2e%2e/admin", Threat.PATH_TRAVERSAL),
        ("/recalls/%252e%252e%252fadmin", Threat.PATH_TRAVERSAL),
        ("/recalls/..", Threat.PATH_TRAVERSAL),
        ("/static/..;/admin", Threat.PATH_TRAVERSAL),
        ("/recalls/%3Cscript%3E", Threat.XSS),
        ("/recalls/1%27%20or%20%271%27%3D%271", Threat.SQL_INJECTION),
        ("/recalls/O'Brien%20crib", None),
        ("/recalls/24-123", None),
        ("/recalls/drop-side%20crib", None),
        ("/me/subscriptions", None),
    ],
)
def test_paths(path: str, expected: Threat | None):
    assert find_threat_in_path(path) == expected


@pytest.mark.parametrize(
    "payload",
    [
        # One layer of each encoding around the same tautology.
        "' or 1=1--",
        "%27%20or%201%3D1--",
        "%2527%2520or%25201%253D1--",
        "&#39; or 1=1--",
        "&#x27; or 1=1--",
        "\\u0027 or 1=1--",
        "\\x27 or 1=1--",
        "%u0027 or 1=1--",
        "\uff07 or 1=1--",
        "'/**/or/**/1=1--",
        "'\tor\t1=1--",
        "'\nor\n1=1--",
        "'+or+1=1--",
    ],
)
def test_encodings_are_undone_before_matching(payload: str):
    assert find_threat(payload) == Threat.SQL_INJECTION


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        (" ", None),
        ("a", None),
        ("%", None),
        ("&", None),
        ("\\", None),
        ("<", None),
        ("'", None),
        ("\ud800", None),
        ("\\ud800", None),
        ("%ud800", None),
        ("&#xd800;", None),
        ("&#1114112;", None),
        ("\x00", Threat.PATH_TRAVERSAL),
        ("%00", Threat.PATH_TRAVERSAL),
        ("%u0000", Threat.PATH_TRAVERSAL),
        ("\\x00", Threat.PATH_TRAVERSAL),
    ],
    ids=repr,
)
def test_edge_values(value: str, expected: Threat | None):
    # Given the smallest and oddest values: lone surrogates, escapes out of range
    # When the detector looks at them
    # Then it answers without raising; a NUL byte, in any encoding, is a threat
    assert find_threat(value) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_never_raises_on_any_text(value: str):
    result = detect(value)
    assert result is None or isinstance(result.threat, Threat)


@pytest.mark.parametrize(
    "unit",
    ["'", '"', " ", "<", "%25", "(", "' or ", "1 or ", "..", "/*", "&#", "<a", "')", "\t"],
    ids=repr,
)
def test_time_grows_linearly_with_adversarial_input(unit: str):
    # Given a run of a character sequence that makes backtracking regexes blow up
    small = unit * (20_000 // len(unit))
    large = small * 10
    # When the detector scans 10x more of it
    ratio = best_of(lambda: detect(large)) / best_of(lambda: detect(small))
    # Then it takes about 10x as long (quadratic would be ~100x); the bound is
    # loose because the machine is shared, the benchmark reports the real ratio
    assert ratio < 30, f"10x input took {ratio:.1f}x the time"
