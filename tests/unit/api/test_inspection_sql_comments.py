"""SQL comments are read as the whitespace they are, however long, and in linear time.

A database reads `UNION/*anything*/SELECT` as `UNION SELECT`. The detector used to
drop a comment of up to 128 characters (`UNION/*x*/SELECT` became `UNIONSELECT`,
no word boundary left) and to leave a longer one, or a `--`/`#` line comment past
64 characters, in place: a payload padded with a comment got through.
"""

from __future__ import annotations

import pytest

from functions.api.inspection import Threat, detect
from tests.support.timing import best_of

PAD = "x" * 200

# Each of these is caught without its comment, and must be with it.
COMMENTED = [
    "' UNION/*x*/SELECT 1,2--",
    "1 UNION/*a comment*/SELECT 1,2",
    f"' UNION/*{PAD}*/SELECT 1,2--",
    f"1;/*{PAD}*/DROP TABLE users",
    f"1/*{PAD}*/OR/*{PAD}*/1=1",
    # MySQL ends a comment at its first `*/`, whatever opened inside it
    "' UNION/* a /* b */SELECT 1,2--",
    f"' UNION-- {PAD}\nSELECT 1,2--",
    f"' or#{PAD}\n1=1--",
    # The same, URL-encoded as a query string carries it
    f"%27%20UNION%2F%2A{PAD}%2A%2FSELECT%201%2C2--",
]


@pytest.mark.parametrize("payload", COMMENTED, ids=lambda p: p[:40])
def test_a_comment_between_sql_tokens_does_not_hide_them(payload: str):
    detection = detect(payload)
    assert detection is not None
    assert detection.threat is Threat.SQL_INJECTION


@pytest.mark.parametrize(
    "text",
    [
        "Graco /* travel */ system",
        "Crib -- see label\nSelect Comfort mattress",
        "Recall #2023-05\nUnion Baby Co.",
        "Size 2/*3 months*/",
    ],
)
def test_comment_like_prose_still_passes(text: str):
    assert detect(text) is None


@pytest.mark.parametrize(
    "unit",
    ["/*", "/*/", "*/", "/**/", "*//*", "/*x", "--\n", "\n--", "\n#", "#", "-- x"],
    ids=repr,
)
def test_comment_stripping_time_grows_linearly(unit: str):
    # Given a run of comment openings, closings and line comments, and a newline so
    # the line-comment form is built too
    small = "\n" + unit * (10_000 // len(unit))
    large = "\n" + unit * (100_000 // len(unit))
    # When the detector scans 10x more of it
    ratio = best_of(lambda: detect(large)) / best_of(lambda: detect(small))
    # Then it takes about 10x as long (quadratic would be ~100x); loose, the
    # machine is shared
    assert ratio < 30, f"10x input took {ratio:.1f}x the time"
