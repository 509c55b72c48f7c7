"""Scoring findings against truth: matching rules, recall, precision, time to detect, benign FPs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from models import Finding, ScenarioKind, ScenarioTruth, Severity, SubjectType
from streams.evaluation import evaluate, format_report

T0 = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)


def _truth(
    n: int, kind: ScenarioKind, account: str, key: str | None = None, minutes: int = 30
) -> ScenarioTruth:
    return ScenarioTruth(
        scenario_id=f"sc-{kind.value}-{n:02d}",
        scenario=kind,
        subject_type=SubjectType.API_KEY if key else SubjectType.ACCOUNT,
        subject_id=key or account,
        account_id=account,
        api_key_id=key,
        start=T0,
        end=T0 + timedelta(minutes=minutes),
    )


def _finding(
    detector: str, account: str, after_s: float, key: str | None = None, subject: SubjectType | None = None
) -> Finding:
    subject_type = subject or (SubjectType.API_KEY if key else SubjectType.ACCOUNT)
    ts = T0 + timedelta(seconds=after_s)
    return Finding(
        finding_id=f"f-{detector}-{account}-{key}-{after_s}",
        ts=ts,
        detector=detector,
        subject_type=subject_type,
        subject_id=key if subject_type is SubjectType.API_KEY and key else account,
        account_id=account,
        api_key_id=key,
        score=0.9,
        severity=Severity.HIGH,
        clauses=["7.1"],
        summary="test",
        window_start=ts - timedelta(minutes=5),
        window_end=ts,
        model_version="test",
    )


TRUTH = [
    _truth(1, ScenarioKind.TRAFFIC_SURGE, "acct-0001"),
    _truth(2, ScenarioKind.TRAFFIC_SURGE, "acct-0002"),
    _truth(1, ScenarioKind.KEY_SHARING, "acct-0003", key="key-0003-1"),
    _truth(1, ScenarioKind.CRAWLER, "acct-0004", key="key-0004-2"),
]


def test_recall_precision_and_time_to_detect() -> None:
    findings = [
        _finding("traffic_anomaly", "acct-0001", 120),
        _finding("traffic_anomaly", "acct-0001", 60),  # the earlier one sets the time to detect
        _finding("traffic_anomaly", "acct-0002", 30 * 60 + 600),  # within the grace after the end
        _finding("traffic_anomaly", "acct-0003", 100),  # a real account, but no surge there
        _finding("key_sharing", "acct-0003", 300, key="key-0003-1"),
    ]
    report = evaluate(TRUTH, findings)
    kinds = {k.scenario: k for k in report.kinds}
    surge = kinds[ScenarioKind.TRAFFIC_SURGE]
    assert (surge.scenarios, surge.caught, surge.recall) == (2, 2, 1.0)
    assert (surge.findings, surge.matched_findings, surge.precision) == (4, 3, 0.75)
    assert surge.median_time_to_detect_s == (60 + 2400) / 2
    assert surge.max_time_to_detect_s == 2400
    sharing = kinds[ScenarioKind.KEY_SHARING]
    assert (sharing.recall, sharing.precision, sharing.median_time_to_detect_s) == (1.0, 1.0, 300)
    crawler = kinds[ScenarioKind.CRAWLER]
    assert (crawler.caught, crawler.recall, crawler.precision, crawler.max_time_to_detect_s) == (
        0,
        0.0,
        None,
        None,
    )
    minor = kinds[ScenarioKind.MINOR_SAFETY]
    assert (minor.scenarios, minor.recall, minor.precision) == (0, None, None)
    by_id = {r.scenario_id: r for r in report.scenarios}
    assert by_id["sc-traffic_surge-01"].time_to_detect_s == 60
    assert by_id["sc-traffic_surge-01"].first_finding_id == "f-traffic_anomaly-acct-0001-None-60"
    assert not by_id["sc-crawler-01"].caught
    assert report.benign_false_positives.findings == 0


def test_findings_outside_the_window_or_on_the_wrong_subject_do_not_count() -> None:
    findings = [
        _finding("traffic_anomaly", "acct-0001", -1),  # before the first abusive event
        _finding("traffic_anomaly", "acct-0001", 30 * 60 + 901),  # past the grace
        _finding("crawler", "acct-0001", 60),  # wrong detector for a surge
        _finding("key_sharing", "acct-0003", 60, key="key-0003-2"),  # another key of the account
        _finding("crawler", "acct-0005", 60, key="key-0004-2"),  # right key id, wrong account
    ]
    report = evaluate(TRUTH, findings)
    assert not any(r.caught for r in report.scenarios)
    kinds = {k.scenario: k for k in report.kinds}
    assert kinds[ScenarioKind.TRAFFIC_SURGE].precision == 0.0
    assert kinds[ScenarioKind.CRAWLER].precision == 0.0


def test_key_scenarios_accept_account_level_findings_and_subject_id() -> None:
    findings = [
        _finding("crawler", "acct-0004", 90, subject=SubjectType.ACCOUNT),
        Finding.model_validate(
            {
                **_finding("key_sharing", "acct-0003", 45).model_dump(),
                "subject_type": "api_key",
                "subject_id": "key-0003-1",
                "api_key_id": None,
            }
        ),
    ]
    report = evaluate(TRUTH, findings, grace_s=0)
    by_id = {r.scenario_id: r for r in report.scenarios}
    assert by_id["sc-crawler-01"].time_to_detect_s == 90
    assert by_id["sc-key_sharing-01"].time_to_detect_s == 45


def test_benign_false_positives_counted_by_finding_account_and_detector() -> None:
    findings = [
        _finding("crawler", "acct-0100", 10, key="key-0100-1"),
        _finding("crawler", "acct-0100", 20, key="key-0100-1"),
        _finding("minor_safety", "acct-0101", 30),
        _finding("traffic_anomaly", "acct-0001", -3600),  # a scenario account: imprecise, not benign
    ]
    report = evaluate(TRUTH, findings)
    fp = report.benign_false_positives
    assert (fp.findings, fp.accounts, fp.by_detector) == (3, 2, {"crawler": 2, "minor_safety": 1})
    kinds = {k.scenario: k for k in report.kinds}
    assert kinds[ScenarioKind.CRAWLER].precision == 0.0
    assert kinds[ScenarioKind.MINOR_SAFETY].precision == 0.0


def test_report_serialises_and_formats() -> None:
    report = evaluate(
        TRUTH, [_finding("traffic_anomaly", "acct-0001", 75), _finding("crawler", "acct-0200", 5)]
    )
    data = json.loads(json.dumps(report.to_dict()))
    assert data["grace_s"] == 900
    assert data["kinds"][0]["scenario"] == "traffic_surge"
    assert data["scenarios"][0] == {
        "scenario_id": "sc-traffic_surge-01",
        "scenario": "traffic_surge",
        "variant": "basic",
        "account_id": "acct-0001",
        "subject_id": "acct-0001",
        "caught": True,
        "time_to_detect_s": 75.0,
        "first_finding_id": "f-traffic_anomaly-acct-0001-None-75",
    }
    text = format_report(report)
    assert "traffic_surge" in text and "n/a" in text
    assert "sc-crawler-01" in text and "75s" in text
    assert "1 findings on 1 accounts (crawler 1)" in text


def test_variants_get_their_own_rows() -> None:
    basic = _truth(1, ScenarioKind.CRAWLER, "acct-0001", key="key-0001-1")
    slow = _truth(2, ScenarioKind.CRAWLER, "acct-0002", key="key-0002-1").model_copy(
        update={"variant": "slow_rotating"}
    )
    report = evaluate([basic, slow], [_finding("crawler", "acct-0002", 300, key="key-0002-1")])
    rows = {(v.scenario, v.variant): v for v in report.variants}
    assert rows[(ScenarioKind.CRAWLER, "basic")].recall == 0.0
    assert rows[(ScenarioKind.CRAWLER, "slow_rotating")].recall == 1.0
    assert rows[(ScenarioKind.CRAWLER, "slow_rotating")].median_time_to_detect_s == 300
    assert "Detection by variant" in format_report(report)
