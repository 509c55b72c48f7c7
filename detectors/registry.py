"""The detector registry: detector name → class. A new detector family registers here."""

from __future__ import annotations

from detectors.base import Detector
from detectors.crawler import CrawlerDetector
from detectors.key_sharing import KeySharingDetector
from detectors.minor_safety import MinorSafetyDetector
from detectors.traffic import TrafficAnomalyDetector
from models.config import WardenConfig

REGISTRY: dict[str, type[Detector]] = {
    cls.name: cls for cls in (TrafficAnomalyDetector, KeySharingDetector, CrawlerDetector, MinorSafetyDetector)
}


def build_detectors(config: WardenConfig) -> list[Detector]:
    """Fresh detector instances for every enabled detector, in registry order (stable output order)."""
    detectors: list[Detector] = []
    for name, section in config.detectors.by_name().items():
        if section.enabled:
            detectors.append(REGISTRY[name](section, config.state))  # type: ignore[call-arg]
    return detectors
