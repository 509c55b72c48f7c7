"""The deployment files, validated as far as a machine without Docker or Kubernetes allows: they parse,
hold the keys that matter, and agree with each other and with Warden (image, ports, paths, metric names).
The alert rules and their unit tests run through promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Metric

from models.config import ServerConfig, parse_config
from streams import metrics

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROMETHEUS_BUILTINS = frozenset({"up"})
"""Series Prometheus makes itself for every target; the rules and panels may use them."""

ALERTS = {
    "WardenPipelineDown", "WardenNoEventsArriving", "WardenConsumerLagGrowing",
    "WardenDeadLetterRate", "WardenTransactionAborts", "WardenTerminateSurge",
}
PROMQL_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                             "and", "or", "unless", "offset", "inf", "nan"})


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _yaml_documents(directory: Path) -> dict[str, dict[str, Any]]:
    """Every Kubernetes object under ``directory``, keyed ``Kind/name``."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document and document.get("kind") != "Kustomization":
                objects[f"{document['kind']}/{document['metadata']['name']}"] = document
    return objects


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords, labels or variables)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\w+", "", expr)
    names = re.findall(r"(?<![\w.:$])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", expr)
    return {name for name in names if name.lower() not in PROMQL_KEYWORDS}


def _series_names(family: Metric) -> set[str]:
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    return {family.name + suffix for suffix in suffixes.get(family.type, ("",))}


def exporter_names() -> set[str]:
    """Every series name Warden's registry can expose, with the suffixes Prometheus adds."""
    return {name for family in metrics.REGISTRY.collect() for name in _series_names(family)}


def test_metric_names_are_read_out_of_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, output) (rate(warden_event_lag_seconds_bucket{job="x"}[5m])))'
        ' / on (instance) group_left sum(up{job="warden"}) or absent(foo_total) unless time() - bar offset 5m'
        ' and topk(10, baz[$__range])'
    )
    assert metric_names(expr) == {"warden_event_lag_seconds_bucket", "up", "foo_total", "bar", "baz"}


def test_exporter_names_include_the_suffixed_series() -> None:
    names = exporter_names()
    assert {"warden_findings_total", "warden_batch_processing_seconds_bucket", "warden_consumer_lag_records"} <= names
    assert "warden_findings" not in names


# --- Prometheus ------------------------------------------------------------------------------------

def _alert_rules() -> dict[str, dict[str, Any]]:
    groups = _yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_every_alert_has_severity_summary_and_runbook() -> None:
    rules = _alert_rules()
    assert set(rules) == ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert len(rule["annotations"]["summary"]) > 20, name
        assert len(rule["annotations"]["runbook"]) > 100, f"{name}: the runbook should say what to check and do"


def test_alert_expressions_query_only_warden_metrics() -> None:
    known = exporter_names() | PROMETHEUS_BUILTINS
    for name, rule in _alert_rules().items():
        used = metric_names(rule["expr"])
        assert used, name
        assert used <= known, f"{name} queries {sorted(used - known)}, which Warden does not export"


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    tests = _yaml(DEPLOY / "prometheus" / "alerts_test.yml")["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    stays_quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert fires == ALERTS
    assert stays_quiet == ALERTS


def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus (scripts/test.sh installs it)")
    result = subprocess.run(
        ["bash", str(DEPLOY / "prometheus" / "check.sh")], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


# --- Grafana ---------------------------------------------------------------------------------------

def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads((DEPLOY / "grafana" / "warden.json").read_text(encoding="utf-8"))
    return dashboard


def _panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def test_every_dashboard_query_uses_metrics_warden_exports() -> None:
    known = exporter_names() | PROMETHEUS_BUILTINS
    queried: set[str] = set()
    for panel in _panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = metric_names(target["expr"])
            assert used, f"{panel['title']}: {target['expr']}"
            assert used <= known, f"panel {panel['title']!r} queries {sorted(used - known)}"
            queried |= used
    # Every metric Warden exports has a panel (restored state records included).
    exported = {family.name for family in metrics.REGISTRY.collect()}
    assert {name for name in exported if not any(q.startswith(name) for q in queried)} == set()


def test_dashboard_covers_trust_and_safety_and_operators() -> None:
    titles = {panel["title"] for panel in _panels()}
    for wanted in ("Findings by detector", "Top clauses", "Shadow versus enforce", "Throughput",
                   "Consumer lag by partition", "Batch processing latency", "Dead letters"):
        assert wanted in titles
    assert len({panel["id"] for panel in _dashboard()["panels"]}) == len(_dashboard()["panels"])


def test_dashboard_datasource_is_the_provisioned_one() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    (datasource,) = _yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    uids = {panel["datasource"]["uid"] for panel in _panels()}
    assert uids == {datasource["uid"]}
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = _yaml(provisioning / "dashboards" / "warden.yaml")["providers"]
    grafana = _yaml(DEPLOY / "compose.yaml")["services"]["grafana"]
    mounted = dict(volume.removesuffix(":ro").split(":", 1)[::-1] for volume in grafana["volumes"])
    assert mounted[provider["options"]["path"] + "/warden.json"] == "./grafana/warden.json"
    assert mounted["/etc/grafana/provisioning"] == "./grafana/provisioning"


# --- compose, Kubernetes, Dockerfile ---------------------------------------------------------------

def _version() -> str:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return str(project["version"])


def _statefulset() -> dict[str, Any]:
    return _yaml_documents(DEPLOY / "k8s")["StatefulSet/warden"]


def _k8s_config() -> str:
    config: str = _yaml_documents(DEPLOY / "k8s")["ConfigMap/warden-config"]["data"]["warden.yaml"]
    return config


def test_compose_runs_kafka_warden_prometheus_and_grafana() -> None:
    services = _yaml(DEPLOY / "compose.yaml")["services"]
    assert set(services) == {"kafka", "warden", "prometheus", "grafana"}
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    warden = services["warden"]
    assert warden["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert "kafka:9092" in warden["command"] and "--instance-id" in warden["command"]
    for service in services.values():
        for volume in service.get("volumes", []):
            host = volume.split(":", 1)[0]
            if host.startswith("."):
                assert (DEPLOY / host).exists(), f"compose mounts {host}, which does not exist"


def test_image_and_port_agree_across_dockerfile_compose_k8s_and_prometheus() -> None:
    port = ServerConfig().port
    image = f"abuse-warden:{_version()}"
    compose = _yaml(DEPLOY / "compose.yaml")["services"]
    assert compose["warden"]["image"] == image
    assert compose["warden"]["ports"] == [f"{port}:{port}"]
    assert f"EXPOSE {port}" in (DEPLOY / "Dockerfile").read_text(encoding="utf-8")

    pod = _statefulset()["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == image
    assert container["ports"] == [{"name": "metrics", "containerPort": port}]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert parse_config(yaml.safe_load(_k8s_config())).server.port == port
    service = _yaml_documents(DEPLOY / "k8s")["Service/warden"]
    assert service["spec"]["ports"][0]["port"] == port
    podmonitor = _yaml_documents(DEPLOY / "k8s")["PodMonitor/warden"]
    assert podmonitor["spec"]["podMetricsEndpoints"][0]["port"] == container["ports"][0]["name"]

    (job,) = _yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]
    assert job["job_name"] == "warden", "the alert rules select job=\"warden\""
    assert job["static_configs"][0]["targets"] == [f"warden:{port}"]


def test_prometheus_in_compose_loads_the_rules_it_is_configured_with() -> None:
    rule_files = _yaml(DEPLOY / "prometheus" / "prometheus.yml")["rule_files"]
    volumes = _yaml(DEPLOY / "compose.yaml")["services"]["prometheus"]["volumes"]
    mounted = {volume.split(":")[1]: volume.split(":")[0] for volume in volumes}
    assert [mounted[path] for path in rule_files] == ["./prometheus/alerts.yml"]


def test_k8s_workers_probe_healthz_and_take_a_stable_instance_id_from_the_pod_name() -> None:
    statefulset = _statefulset()
    spec = statefulset["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    args = container["args"]
    assert args[args.index("--instance-id") + 1] == "$(POD_NAME)"
    (pod_name,) = [env for env in container["env"] if env["name"] == "POD_NAME"]
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert spec["serviceName"] == "warden"


def test_k8s_config_is_valid_and_replicas_stay_within_the_partitions() -> None:
    config = parse_config(yaml.safe_load(_k8s_config()), "configmap warden.yaml")
    replicas = _statefulset()["spec"]["replicas"]
    assert 1 <= replicas <= config.kafka.partitions
    (container,) = _statefulset()["spec"]["template"]["spec"]["containers"]
    (mount,) = container["volumeMounts"]
    assert f"{mount['mountPath']}/warden.yaml" == container["args"][container["args"].index("--config") + 1]


def test_kustomization_lists_every_manifest_but_the_operator_one() -> None:
    kustomization = _yaml(DEPLOY / "k8s" / "kustomization.yaml")
    manifests = {path.name for path in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml", "podmonitor.yaml"}
    assert set(kustomization["resources"]) == manifests


def test_dockerfile_builds_every_package_and_the_compiled_module() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    packages = [pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]]
    rust = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools-rust"]
    crates = [str(Path(module["path"]).parent) for module in rust["ext-modules"]]
    for folder in packages + crates:
        assert f"COPY {folder} {folder}" in dockerfile
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    assert all(f"!{folder}/" in ignore for folder in packages + crates)
    assert "**/*.so" in ignore, "a module compiled on the host must not stand in for the image's own build"
