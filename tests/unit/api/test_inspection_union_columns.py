"""UNION-based extraction that concatenates or casts its columns is refused.

`' UNION SELECT username || '~' || password FROM users--` is the textbook way to
read two columns through one (PortSwigger's SQL injection cheat sheet, "String
concatenation"); PostgreSQL's `::` cast does the same for a column of another
type. The column list after `union select` allowed only plain names, so both got
through while `' UNION SELECT username, password FROM users--` was refused.
"""

from __future__ import annotations

import pytest

from functions.api.inspection import Threat, detect


@pytest.mark.parametrize(
    "payload",
    [
        "' UNION SELECT username || '~' || password FROM users--",
        "' UNION SELECT username||':'||password FROM users--",
        "' UNION ALL SELECT username||':'||password FROM users--",
        "1 UNION SELECT username||password FROM users",
        "' UNION SELECT username::text FROM users--",
        "' UNION SELECT id, password::text FROM users--",
        # The same inside a sub-select, which the columns rule serves too
        "' || (select username||password from users) || '",
        "'||(select password::text from users)||'",
    ],
)
def test_concatenated_or_cast_columns_after_union_select_are_refused(payload: str):
    detection = detect(payload)
    assert detection is not None
    assert detection.threat is Threat.SQL_INJECTION


@pytest.mark.parametrize(
    "text",
    ["Union Select Comfort, firm", "Union Select Comfort | Sleep Number", "Union Baby::Select"],
)
def test_the_brand_union_select_still_passes(text: str):
    assert detect(text) is None
