"""The attack and benign corpus of the request validator.

Layout: `attacks/<threat>.txt` (the file name is a `Threat` value) and
`benign/<topic>.txt`, one string per line, exactly as a caller would send it as
one query value or JSON string: nothing is stripped but the line break, blank
lines are skipped, and there are no comment lines (a real value may start with
`#`). The attacks are written out from the public payload shapes of the OWASP
testing guide and cheat sheets and of sqlmap's techniques; the benign strings
are product names, brands, hazards, remedies, searches and everyday text of a
recall API, chosen for the characters and words that trip naive filters.

Used by tests/security/test_inspection.py, tests/unit/api/test_attack_inspection.py
and benchmarks/validator.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

CORPUS = Path(__file__).resolve().parent


# The strings the validator's issue names: every one must pass, whatever the files
# say (test_inspection.py checks each is also in a benign file).
NAMED_BENIGN = (
    "O'Brien crib",
    "Drop-side crib",
    "Rock 'n Play",
    "Union Baby Co.",
    "Select Comfort",
    "Drop & Go stroller",
    'Kids II "Bright Starts"',
    "AT&T baby monitor",
    "Graco 4Ever DLX 4-in-1",
    "50% off -- limited",
    # Decided: `<3` is not markup (a tag name cannot start with a digit).
    "Fisher-Price <3 toys",
    "Please select a crib or update the list and delete old entries",
    "jane.o'neil@example.com",
    "https://example.com/recalls?brand=Graco&since=2020-01-01",
    "2023-01-15",
    "$1,299.99",
)


class Sample(NamedTuple):
    group: str  # for attacks the expected Threat value, for benign strings the topic
    text: str


def _read(folder: str) -> list[Sample]:
    samples = []
    for path in sorted((CORPUS / folder).glob("*.txt")):
        for line in path.read_text(encoding="utf-8").split("\n"):
            if line.strip():
                samples.append(Sample(path.stem, line))
    return samples


def attacks() -> list[Sample]:
    return _read("attacks")


def benign() -> list[Sample]:
    return _read("benign")
