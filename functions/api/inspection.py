"""Attack detection for request values (first cut; see tests/security for the corpus)."""

from __future__ import annotations

import re
from enum import StrEnum


class Threat(StrEnum):
    SQL_INJECTION = "sql_injection"
    XSS = "xss"
    PATH_TRAVERSAL = "path_traversal"


_TRAVERSAL = re.compile(r"(?:^|[\\/])\.\.(?:[\\/]|$)|%2e%2e|\x00")
_XSS = re.compile(r"<\s*/?\s*(?:script|iframe|svg|img|object|embed)\b|javascript:|\bon\w{2,20}\s*=", re.I)
_SQLI = re.compile(
    r"\bunion\s+(?:all\s+)?select\b|'\s*(?:or|and)\s+'?\w{1,20}'?\s*=|;\s*(?:drop|delete|insert|update)\s"
    r"|\b(?:pg_sleep|sleep|benchmark)\s*\(|'\s*--|\bwaitfor\s+delay\b",
    re.I,
)


def find_threat(value: str) -> Threat | None:
    if _TRAVERSAL.search(value):
        return Threat.PATH_TRAVERSAL
    if _XSS.search(value):
        return Threat.XSS
    if _SQLI.search(value):
        return Threat.SQL_INJECTION
    return None


def find_threat_in_path(path: str) -> Threat | None:
    return find_threat(path)
