"""Score detector findings against the simulator's ground truth: recall, precision, time to detect.

A scenario is caught by a finding of its kind's detector on the scenario's account (for key
scenarios: on the same key, or about the whole account) whose event time falls between the
scenario's first abusive event and ``grace_s`` after its last. Findings on accounts that carry no
scenario at all are false positives on benign accounts.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from models.finding import Finding, SubjectType
from models.truth import ScenarioKind, ScenarioTruth


@dataclass(frozen=True)
class ScenarioResult:
    scenario_id: str
    scenario: ScenarioKind
    variant: str
    account_id: str
    subject_id: str
    caught: bool
    time_to_detect_s: float | None
    first_finding_id: str | None


@dataclass(frozen=True)
class KindSummary:
    scenario: ScenarioKind
    detector: str
    scenarios: int
    caught: int
    findings: int
    matched_findings: int
    recall: float | None
    precision: float | None
    median_time_to_detect_s: float | None
    max_time_to_detect_s: float | None


@dataclass(frozen=True)
class VariantSummary:
    """Recall and time to detect of one variant of a kind (precision belongs to the detector, per kind)."""

    scenario: ScenarioKind
    variant: str
    scenarios: int
    caught: int
    recall: float | None
    median_time_to_detect_s: float | None
    max_time_to_detect_s: float | None


@dataclass(frozen=True)
class BenignFalsePositives:
    findings: int
    accounts: int
    by_detector: dict[str, int]


@dataclass(frozen=True)
class EvaluationReport:
    grace_s: int
    kinds: tuple[KindSummary, ...]
    variants: tuple[VariantSummary, ...]
    scenarios: tuple[ScenarioResult, ...]
    benign_false_positives: BenignFalsePositives

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: enums as their values, everything else as numbers, strings or null."""
        data = asdict(self)
        for item in (*data["kinds"], *data["variants"], *data["scenarios"]):
            item["scenario"] = item["scenario"].value
        return data


def _matches(truth: ScenarioTruth, finding: Finding, grace: timedelta) -> bool:
    if finding.detector != truth.scenario.detector or finding.account_id != truth.account_id:
        return False
    if not truth.start <= finding.ts <= truth.end + grace:
        return False
    if truth.subject_type is not SubjectType.API_KEY:
        return True
    return (
        finding.subject_type is SubjectType.ACCOUNT
        or finding.api_key_id == truth.api_key_id
        or finding.subject_id == truth.subject_id
    )


def _variant_order(item: tuple[ScenarioKind, str]) -> tuple[int, bool, str]:
    kind, variant = item
    return list(ScenarioKind).index(kind), variant != "basic", variant


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def evaluate(
    truth: Sequence[ScenarioTruth], findings: Iterable[Finding], grace_s: int = 900
) -> EvaluationReport:
    grace = timedelta(seconds=grace_s)
    by_account: dict[str, list[ScenarioTruth]] = defaultdict(list)
    for scenario in truth:
        by_account[scenario.account_id].append(scenario)
    first_hit: dict[str, Finding] = {}
    detector_findings: Counter[str] = Counter()
    matched_findings: Counter[str] = Counter()
    benign_by_detector: Counter[str] = Counter()
    benign_accounts: set[str] = set()
    for finding in findings:
        detector_findings[finding.detector] += 1
        scenarios = by_account.get(finding.account_id)
        if not scenarios:
            benign_by_detector[finding.detector] += 1
            benign_accounts.add(finding.account_id)
            continue
        hits = [s for s in scenarios if _matches(s, finding, grace)]
        if hits:
            matched_findings[finding.detector] += 1
        for scenario in hits:
            earliest = first_hit.get(scenario.scenario_id)
            if earliest is None or finding.ts < earliest.ts:
                first_hit[scenario.scenario_id] = finding

    results = []
    for scenario in truth:
        hit = first_hit.get(scenario.scenario_id)
        results.append(
            ScenarioResult(
                scenario_id=scenario.scenario_id,
                scenario=scenario.scenario,
                variant=scenario.variant,
                account_id=scenario.account_id,
                subject_id=scenario.subject_id,
                caught=hit is not None,
                time_to_detect_s=(hit.ts - scenario.start).total_seconds() if hit else None,
                first_finding_id=hit.finding_id if hit else None,
            )
        )

    kinds = []
    for kind in ScenarioKind:
        mine = [r for r in results if r.scenario is kind]
        delays = [r.time_to_detect_s for r in mine if r.time_to_detect_s is not None]
        kinds.append(
            KindSummary(
                scenario=kind,
                detector=kind.detector,
                scenarios=len(mine),
                caught=len(delays),
                findings=detector_findings[kind.detector],
                matched_findings=matched_findings[kind.detector],
                recall=_ratio(len(delays), len(mine)),
                precision=_ratio(matched_findings[kind.detector], detector_findings[kind.detector]),
                median_time_to_detect_s=statistics.median(delays) if delays else None,
                max_time_to_detect_s=max(delays) if delays else None,
            )
        )

    variants = []
    for kind, variant in sorted({(r.scenario, r.variant) for r in results}, key=_variant_order):
        mine = [r for r in results if r.scenario is kind and r.variant == variant]
        delays = [r.time_to_detect_s for r in mine if r.time_to_detect_s is not None]
        variants.append(
            VariantSummary(
                scenario=kind,
                variant=variant,
                scenarios=len(mine),
                caught=len(delays),
                recall=_ratio(len(delays), len(mine)),
                median_time_to_detect_s=statistics.median(delays) if delays else None,
                max_time_to_detect_s=max(delays) if delays else None,
            )
        )

    return EvaluationReport(
        grace_s=grace_s,
        kinds=tuple(kinds),
        variants=tuple(variants),
        scenarios=tuple(results),
        benign_false_positives=BenignFalsePositives(
            findings=sum(benign_by_detector.values()),
            accounts=len(benign_accounts),
            by_detector=dict(sorted(benign_by_detector.items())),
        ),
    )


def _fraction(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (header, *rows)
    ]


def format_report(report: EvaluationReport) -> str:
    """A plain-text report: per-kind detection, false positives on benign accounts, then each scenario."""
    lines = [f"Detection by scenario kind (grace {report.grace_s}s after the last abusive event)"]
    lines += _table(
        (
            "kind",
            "detector",
            "scenarios",
            "caught",
            "recall",
            "findings",
            "precision",
            "median TTD",
            "max TTD",
        ),
        [
            (
                k.scenario.value,
                k.detector,
                str(k.scenarios),
                str(k.caught),
                _fraction(k.recall),
                str(k.findings),
                _fraction(k.precision),
                _seconds(k.median_time_to_detect_s),
                _seconds(k.max_time_to_detect_s),
            )
            for k in report.kinds
        ],
    )
    if any(v.variant != "basic" for v in report.variants):
        lines += ["", "Detection by variant"]
        lines += _table(
            ("kind", "variant", "scenarios", "caught", "recall", "median TTD", "max TTD"),
            [
                (
                    v.scenario.value,
                    v.variant,
                    str(v.scenarios),
                    str(v.caught),
                    _fraction(v.recall),
                    _seconds(v.median_time_to_detect_s),
                    _seconds(v.max_time_to_detect_s),
                )
                for v in report.variants
            ],
        )
    fp = report.benign_false_positives
    detail = ", ".join(f"{name} {count}" for name, count in fp.by_detector.items())
    lines += [
        "",
        f"False positives on benign accounts: {fp.findings} findings on {fp.accounts} accounts"
        + (f" ({detail})" if detail else ""),
        "",
        "Scenarios",
    ]
    lines += _table(
        ("scenario", "kind", "variant", "account", "subject", "caught", "TTD"),
        [
            (
                r.scenario_id,
                r.scenario.value,
                r.variant,
                r.account_id,
                r.subject_id,
                "yes" if r.caught else "no",
                _seconds(r.time_to_detect_s),
            )
            for r in report.scenarios
        ],
    )
    return "\n".join(lines) + "\n"
