"""Validator: detection and false-positive rates, throughput, and linear time.

What it measures, all on `functions.api.inspection.scan`: the detector every
inspected path segment, query parameter and JSON string goes through, without
the cache of short verdicts that `detect` keeps in front of it (a benchmark
repeating one value would time the cache):

- detection rate over the corpus attacks and false-positive rate over the
  corpus benign strings (tests/security/corpus/), per category too;
- time per value for short values (a search term, an attack payload): the cost
  a normal request pays;
- throughput in MB/s on a long benign text (the benign corpus joined) and on
  adversarial runs that make backtracking regexes blow up (quotes, spaces, `<`,
  `%25`, parentheses, `' or `, `..`, `/*`...);
- linearity: for each adversarial run, the time of a 10x longer input over the
  time of the 1x input. Linear is ~10, quadratic ~100.

Throughput is an absolute figure of this shared machine; the rates and the 10x
ratios are the result.
"""

from __future__ import annotations

import statistics

from benchmarks.common import Result, time_per_call
from functions.api.inspection import scan
from tests.security.corpus import attacks, benign

# Inputs a backtracking matcher would choke on: long runs of what its rules
# start with, with nothing that completes an attack.
ADVERSARIAL_UNITS: dict[str, str] = {
    "single_quotes": "'",
    "double_quotes": '"',
    "spaces": " ",
    "less_than": "<",
    "percent_25": "%25",
    "open_parens": "(",
    "nested_parens": "(()",
    "letter_a": "a",
    "digits": "7",
    "quote_or": "' or ",
    "number_or": "1 or ",
    "quote_paren": "')",
    "dot_dot": "..",
    "comment_open": "/*",
    "entity_start": "&#",
    "tag_start": "<a",
    "semicolons": ";",
    "backslashes": "\\",
    "union_select": "union select ",
    "tabs": "\t",
    "fullwidth_lt": "\uff1c",
}
SMALL_BYTES = 50_000
SCALE = 10
ROUND_SECONDS = 0.3
PAIRS = 3


def _run_of(unit: str, size: int) -> str:
    return unit * max(1, size // len(unit.encode("utf-8")))


def _megabytes_per_second(text: str) -> float:
    seconds = time_per_call(lambda: scan(text), min_seconds=ROUND_SECONDS)
    return len(text.encode("utf-8")) / seconds / 1e6


def corpus_rates() -> tuple[dict[str, float], dict[str, object]]:
    attack_samples = attacks()
    benign_samples = benign()
    missed = [s for s in attack_samples if scan(s.text) is None]
    miscategorised = [
        s
        for s in attack_samples
        if (found := scan(s.text)) is not None and found.threat.value != s.group
    ]
    flagged = [s for s in benign_samples if scan(s.text) is not None]
    per_category = {}
    for group in sorted({s.group for s in attack_samples}):
        samples = [s for s in attack_samples if s.group == group]
        caught = sum(scan(s.text) is not None for s in samples)
        per_category[group] = {"attacks": len(samples), "detected": caught}
    rates = {
        "detection_rate": 1 - len(missed) / len(attack_samples),
        "false_positive_rate": len(flagged) / len(benign_samples),
    }
    figures: dict[str, object] = {
        "attacks": len(attack_samples),
        "benign": len(benign_samples),
        "missed": [s.text for s in missed],
        "false_positives": [s.text for s in flagged],
        "miscategorised": [s.text for s in miscategorised],
        "per_category": per_category,
    }
    return rates, figures


def per_value_microseconds() -> dict[str, float]:
    """Mean time to inspect one short value, the common case of every request."""
    result = {}
    for name, samples in (("benign", benign()), ("attack", attacks())):
        texts = [s.text for s in samples]

        def inspect_all(texts: list[str] = texts) -> None:
            for text in texts:
                scan(text)

        result[name] = time_per_call(inspect_all, min_seconds=ROUND_SECONDS) / len(texts) * 1e6
    return result


def run() -> Result:
    rates, corpus = corpus_rates()

    benign_text = " ".join(s.text for s in benign())
    benign_long = _run_of(benign_text + " ", 1_000_000)
    if scan(benign_long) is not None:
        raise RuntimeError("the joined benign corpus must stay benign to measure a full scan")
    benign_mb_s = _megabytes_per_second(benign_long)

    adversarial: dict[str, dict[str, float]] = {}
    for name, unit in ADVERSARIAL_UNITS.items():
        small = _run_of(unit, SMALL_BYTES)
        large = small * SCALE

        # Alternate the two sizes and keep the fastest of each: other work on
        # this machine only ever adds time, and must not land on one size only.
        def scan_small(text: str = small) -> None:
            scan(text)

        def scan_large(text: str = large) -> None:
            scan(text)

        small_s = large_s = float("inf")
        for _ in range(PAIRS):
            small_s = min(small_s, time_per_call(scan_small, min_seconds=0.1))
            large_s = min(large_s, time_per_call(scan_large, min_seconds=0.2))
        adversarial[name] = {
            "mb_per_s": len(large.encode("utf-8")) / large_s / 1e6,
            "ratio_10x": large_s / small_s,
        }
    ratios_10x = [entry["ratio_10x"] for entry in adversarial.values()]
    worst_mb_s = min(entry["mb_per_s"] for entry in adversarial.values())

    return Result(
        name="validator",
        ratios={
            **rates,
            "adversarial_10x_time_ratio_median": statistics.median(ratios_10x),
            "adversarial_10x_time_ratio_max": max(ratios_10x),
            "worst_adversarial_vs_benign_throughput": worst_mb_s / benign_mb_s,
        },
        targets={
            "every corpus attack detected": rates["detection_rate"] == 1.0,
            "no corpus false positive": rates["false_positive_rate"] == 0.0,
            "linear time (every 10x input <= 15x time)": max(ratios_10x) <= 15,
            "worst adversarial throughput >= 2 MB/s": worst_mb_s >= 2,
        },
        figures={
            "corpus": corpus,
            "per_value_us": per_value_microseconds(),
            "throughput_mb_s": {
                "benign_text": benign_mb_s,
                "adversarial_worst": worst_mb_s,
                "adversarial_median": statistics.median(
                    entry["mb_per_s"] for entry in adversarial.values()
                ),
            },
            "adversarial": adversarial,
            "input_bytes": {"1x": SMALL_BYTES, "10x": SMALL_BYTES * SCALE},
        },
        notes=[
            "ratio_10x is time(10x input) / time(1x input): ~10 is linear, ~100 quadratic",
            "throughput is of this shared machine; compare the ratios across runs",
        ],
    )
