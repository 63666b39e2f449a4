"""docs/CLAIMS.md proves each claim by naming a test or a file: every name must exist.

A test renamed or deleted would otherwise leave the document citing nothing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "CLAIMS.md"
TEST_CITATION = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
FILE_CITATION = re.compile(r"`((?:tests|functions|cdk|ops|benchmarks|sql|docs)/[\w/.-]+)`")


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_cited_test_exists() -> None:
    text = DOCUMENT.read_text(encoding="utf-8")
    citations = TEST_CITATION.findall(text)
    assert len(citations) > 50, "the document should cite tests; did the citation format change?"
    missing = []
    found: dict[str, set[str]] = {}
    for file, name in citations:
        path = ROOT / file
        if not path.is_file():
            missing.append(f"{file} (no such file)")
            continue
        names = found.setdefault(file, defined_tests(path))
        if name not in names:
            missing.append(f"{file}::{name}")
    assert not missing, "docs/CLAIMS.md cites tests that do not exist: " + ", ".join(missing)


def test_every_cited_file_exists() -> None:
    text = DOCUMENT.read_text(encoding="utf-8")
    cited = set(FILE_CITATION.findall(text))
    assert cited
    missing = sorted(
        path
        for path in cited
        if not (ROOT / path).exists() and not (ROOT / path.rstrip("/")).exists()
    )
    assert not missing, "docs/CLAIMS.md cites files that do not exist: " + ", ".join(missing)
