"""Crawlers and scrapers (clause 8.2.1): the detector, its window features, and its learned session model."""

from detectors.crawler.detector import CrawlerDetector, agent_class, rule_signals, window_features

__all__ = ["CrawlerDetector", "agent_class", "rule_signals", "window_features"]
