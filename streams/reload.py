"""Hot reload of the config in ``warden run`` (SIGHUP): thresholds, ladders, allowlists, shadow and
policy_version change between batches; the state of every partition is kept."""

from __future__ import annotations

import logging
from pathlib import Path

from models.config import load_config
from streams.runner import Runner

log = logging.getLogger(__name__)


def reload_config(runner: Runner, path: str | Path | None) -> bool:
    """Re-read the config and put it in force for the next batch. A bad config raises nothing: it is refused
    with a logged error and the running one kept. The Kafka and server sections are bound to open
    connections and a listening port, so they keep their running values until a restart."""
    running = runner.config
    try:
        loaded = load_config(path)
    except ValueError as error:  # ConfigError, or a config the pipeline cannot build
        log.error("config reload refused, policy %s stays in force: %s", running.policy_version, error)
        return False
    fresh = loaded.model_copy(update={"kafka": running.kafka, "server": running.server})
    if fresh != loaded:
        log.warning("config reload: kafka and server settings change only on restart; the running ones are kept")
    runner.reconfigure(fresh)
    log.info("config reloaded: policy %s → %s", running.policy_version, fresh.policy_version)
    return True
