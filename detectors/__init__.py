"""Detectors find: each observes telemetry events and returns findings; none decides actions."""

from detectors.base import Detector
from detectors.registry import REGISTRY, build_detectors

__all__ = ["REGISTRY", "Detector", "build_detectors"]
