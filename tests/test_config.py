"""The YAML config: defaults load, the shipped file loads, a bad config names the field and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.config import ConfigError, WardenConfig, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]


def test_shipped_default_config_is_valid_and_equals_the_built_in_defaults() -> None:
    assert load_config(REPO / "warden.yaml") == WardenConfig()


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ({"detectors": {"traffic_anomaly": {"surge_ratio": 0.5}}}, "detectors.traffic_anomaly.surge_ratio", "greater"),
        ({"detectors": {"crawler": {"window_s": "soon"}}}, "detectors.crawler.window_s", "integer"),
        ({"detectors": {"crawlr": {}}}, "detectors.crawlr", "Extra inputs"),
        ({"state": {"max_subjects": 0}}, "state.max_subjects", "greater than or equal"),
        ({"enforcement": {"ladders": {"crawler": {"steps": [{"action": "terminate", "duration_s": 60}],
                                                  "start_at": {}}}}},
         "enforcement.ladders.crawler.steps.0", "terminate is permanent"),
        ({"detectors": {"crawler": {"signal_weights": {"telepathy": 1}}}}, "detectors.crawler", "unknown signals"),
    ],
)
def test_bad_config_names_field_and_reason(data: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.yaml")
    message = str(info.value)
    assert field in message and reason in message


def test_unreadable_and_non_yaml_configs_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("detectors: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(scalar)
