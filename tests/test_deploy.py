"""The deployment files, read the way a cluster, an image build and Grafana read them.

The Kubernetes base and the example overlay (with the opt-in Ingress and ServiceMonitor) are
rendered by ``kubectl kustomize``; their probes, ports, drain timing and security settings are
checked against each other and against the gateway's own settings (every variable a known
setting, the ConfigMap's file accepted by ``Settings.load``). The image's lock is checked against
pyproject.toml, and every metric the Grafana dashboard queries against a running gateway's
``/metrics``. Building and running the image itself is ``make image-test`` (deploy/docker-test.sh).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gateway.settings import SETTINGS, Settings, parse_duration
from providers.registry import load_registry

ROOT = Path(__file__).parent.parent
BASE = ROOT / "deploy" / "kubernetes"
EXAMPLE = ROOT / "deploy" / "overlays" / "example"
DASHBOARD = ROOT / "deploy" / "grafana" / "polyrelay.json"

Manifest = dict[str, Any]


def kustomize(path: Path) -> list[Manifest]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the manifests are rendered with `kubectl kustomize`")
    result = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def base() -> list[Manifest]:
    return kustomize(BASE)


@pytest.fixture(scope="module")
def example() -> list[Manifest]:
    return kustomize(EXAMPLE)


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} manifests"
    return found[0]


def container(manifests: list[Manifest]) -> Manifest:
    (gateway,) = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    return gateway  # type: ignore[no-any-return]


def env(manifests: list[Manifest]) -> dict[str, str]:
    return {var["name"]: var["value"] for var in container(manifests)["env"]}


# -- the Deployment ------------------------------------------------------------------------------


def test_the_container_serves_http_and_metrics_on_named_ports(base: list[Manifest]) -> None:
    ports = {port["name"]: port["containerPort"] for port in container(base)["ports"]}
    settings = env(base)
    assert ports == {"http": 8080, "metrics": 9464}
    assert int(settings["SERVER_PORT"]) == ports["http"] and settings["SERVER_HOST"] == "0.0.0.0"
    assert int(settings["TELEMETRY_METRICS_PORT"]) == ports["metrics"] and settings["TELEMETRY_ENABLED"] == "true"
    assert settings["LOG_FORMAT"] == "json" and settings["SERVER_WORKERS"] == "1"


def test_liveness_probes_health_and_readiness_probes_ready_often(base: list[Manifest]) -> None:
    gateway = container(base)
    for probe in ("startupProbe", "livenessProbe"):
        assert gateway[probe]["httpGet"] == {"path": "/health", "port": "http"}
    readiness = gateway["readinessProbe"]
    assert readiness["httpGet"] == {"path": "/ready", "port": "http"}
    # A draining pod answers 503 at once; it must leave the endpoints well within the drain delay.
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= parse_duration(env(base)["SERVER_DRAIN_DELAY"])
    assert readiness["failureThreshold"] <= 2


def test_the_grace_period_outlasts_the_drain_delay_and_timeout(base: list[Manifest]) -> None:
    pod = one(base, "Deployment")["spec"]["template"]["spec"]
    settings = env(base)
    drain = parse_duration(settings["SERVER_DRAIN_DELAY"]) + parse_duration(settings["SERVER_DRAIN_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > drain + 5  # room for the process to exit after the drain
    assert "lifecycle" not in container(base)  # the gateway's own drain delay stands in for a preStop sleep


def test_the_pod_runs_non_root_read_only_with_no_fixed_uid(base: list[Manifest]) -> None:
    pod = one(base, "Deployment")["spec"]["template"]["spec"]
    gateway = container(base)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = gateway["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]} and security["runAsNonRoot"] is True
    # OpenShift assigns its own uid: a fixed one anywhere would be refused there.
    assert "runAsUser" not in json.dumps(pod)
    mounts = {mount["mountPath"]: mount["name"] for mount in gateway["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert set(gateway["resources"]) == {"requests", "limits"}


def known_variables() -> set[str]:
    names = {name for var in SETTINGS for name in (var.name, *var.aliases)}
    for spec in load_registry().values():
        names |= {f"{spec.env_prefix}_API_KEY", f"{spec.env_prefix}_API_URL"}
    return names | {"GATEWAY_CONFIG", "PROVIDERS_REGISTRY"}


def test_every_variable_set_is_a_setting_of_the_gateway(base: list[Manifest]) -> None:
    secret = yaml.safe_load((BASE / "secret.example.yaml").read_text())
    (source,) = container(base)["envFrom"]
    assert source["secretRef"]["name"] == secret["metadata"]["name"]
    names = set(env(base)) | set(secret["stringData"])
    assert names - known_variables() == set()
    assert {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"} <= set(secret["stringData"])


def test_the_base_leaves_out_the_secret_and_the_opt_in_parts(base: list[Manifest]) -> None:
    # Applying the base again must never overwrite real keys, nor need the Prometheus operator's CRD.
    assert {m["kind"] for m in base} == {
        "ConfigMap",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    assert "replicas" not in one(base, "Deployment")["spec"]  # the autoscaler owns the count


def test_the_config_map_holds_a_settings_file_the_gateway_accepts(base: list[Manifest], tmp_path: Path) -> None:
    config_map = one(base, "ConfigMap")
    pod = one(base, "Deployment")["spec"]["template"]["spec"]
    (mount,) = [m for m in container(base)["volumeMounts"] if m["name"] == "config"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]  # kustomize's hashed name
    (file_name,) = config_map["data"]
    settings = env(base)
    assert settings["GATEWAY_CONFIG"] == f"{mount['mountPath']}/{file_name}"

    config = tmp_path / file_name
    config.write_text(config_map["data"][file_name])
    loaded = Settings.load({**settings, "GATEWAY_CONFIG": str(config), "OPENAI_API_KEY": "sk-placeholder"})
    assert loaded.config_file == str(config)
    assert loaded.client_timeout == 120.0 and loaded.server_idle_timeout == 120.0  # from the file
    assert loaded.server_host == "0.0.0.0" and loaded.telemetry_enabled and loaded.log_format == "json"
    assert loaded.server_drain_delay == 5.0 and loaded.forwarded_allow_ips == ("10.0.0.0/8",)


# -- Service, autoscaler, disruption budget -------------------------------------------------------


def test_the_service_exposes_http_and_metrics_by_name(base: list[Manifest]) -> None:
    service = one(base, "Service")
    pod_labels = one(base, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {port["name"]: (port["port"], port["targetPort"]) for port in service["spec"]["ports"]}
    assert ports == {"http": (8080, "http"), "metrics": (9464, "metrics")}


def test_the_autoscaler_and_disruption_budget_cover_the_deployment(base: list[Manifest]) -> None:
    deployment = one(base, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = one(base, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "polyrelay"}
    assert deployment["metadata"]["name"] == "polyrelay"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and hpa["spec"]["minReplicas"] >= 2
    pdb = one(base, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


# -- the opt-in components, through the example overlay -------------------------------------------


def test_the_service_monitor_scrapes_the_services_metrics_port(example: list[Manifest]) -> None:
    monitor = one(example, "ServiceMonitor")
    service = one(example, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert "metrics" in {port["name"] for port in service["spec"]["ports"]}


def nginx_size(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", text).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower()]


def test_the_ingress_is_set_for_server_sent_events(example: list[Manifest]) -> None:
    ingress = one(example, "Ingress")
    notes = {k.removeprefix("nginx.ingress.kubernetes.io/"): v for k, v in ingress["metadata"]["annotations"].items()}
    assert notes["proxy-buffering"] == "off"
    settings = Settings.load({"GATEWAY_CONFIG": str(BASE / "gateway.yaml")})
    # The gateway's own limits must be the ones that end a slow answer, not the controller's.
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[timeout]) > max(settings.client_timeout, settings.server_write_timeout)
    assert nginx_size(notes["proxy-body-size"]) == settings.server_max_request_body_size
    (rule,) = ingress["spec"]["rules"]
    backends = [path["backend"]["service"] for path in rule["http"]["paths"]]
    assert backends == [{"name": "polyrelay", "port": {"name": "http"}}]  # never the metrics port
    assert rule["host"] == "llm.example.com" == ingress["spec"]["tls"][0]["hosts"][0]  # the overlay's patch


def test_the_example_overlay_sets_namespace_and_image(example: list[Manifest]) -> None:
    assert {m["metadata"].get("namespace") for m in example} == {"polyrelay"}
    assert container(example)["image"] == "registry.example.com/platform/polyrelay:0.1.0"


# -- the image -------------------------------------------------------------------------------------


def test_the_default_base_image_is_pinned_by_digest() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (base_image,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"[\w.:/-]+@sha256:[0-9a-f]{64}", base_image), base_image
    assert "--require-hashes" in dockerfile and "requirements.lock" in dockerfile
    assert re.search(r"^\s+LOG_FORMAT=json$", dockerfile, re.MULTILINE)


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """``{name: (version, number of hashes)}`` of a lock written by ``make lock``."""
    pins: dict[str, tuple[str, int]] = {}
    for entry in re.split(r"\n(?=\S)", path.read_text()):
        if match := re.match(r"([A-Za-z0-9._-]+)==(\S+)", entry):
            pins[canonicalize_name(match[1])] = (match[2], entry.count("--hash=sha256:"))
    return pins


@pytest.mark.parametrize(
    ("lock", "section"), [("requirements.lock", "project"), ("requirements-build.lock", "build-system")]
)
def test_the_locks_pin_every_requirement_of_pyproject_with_hashes(lock: str, section: str) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = pyproject[section]["dependencies" if section == "project" else "requires"]
    pins = locked(ROOT / lock)
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in {lock}: run `make lock`"
        version, hashes = pins[name]
        assert requirement.specifier.contains(version), f"{lock} pins {name}=={version}, not {requirement}"
        assert hashes >= 1
    assert all(hashes for _, hashes in pins.values())


# -- the Grafana dashboard ------------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_GRAFANA_VARIABLES = re.compile(r"\$(?:\{[^}]*\}|\w+)")
_LABEL_VALUES = re.compile(r"\blabel_values\(\s*([^,()]+?)\s*,\s*\w+\s*\)")
# A name not glued to a number (1e3, 5m) or to a variable; a name followed by "(" is a function.
_NAMES = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS |= {"inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression (or a Grafana ``label_values`` query) selects, as written:
    ``foo_bucket`` stays ``foo_bucket``; label names, functions and variables are left out."""
    text = _LABEL_VALUES.sub(r"\1", expr)
    for pattern in (_STRINGS, _MATCHERS, _RANGES, _LABEL_LISTS, _GRAFANA_VARIABLES):
        text = pattern.sub(" ", text)
    return {name for name in _NAMES.findall(text) if name.lower() not in _KEYWORDS}


def exported_series(exposition: str) -> set[str]:
    """The series names a Prometheus text exposition offers, from its ``# TYPE`` lines: a histogram
    ``foo`` offers ``foo_bucket``, ``foo_sum`` and ``foo_count`` (never ``foo``); a counter is typed
    under its ``_total`` name."""
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
    series = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            series |= {name + suffix for suffix in suffixes.get(kind, ("",))}
    return series


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[str]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield query["query"] if isinstance(query, dict) else query


def test_metric_names_are_read_out_of_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(polyrelay_overhead_seconds_bucket{job=~"$job",'
        'route!="a{b}"}[$__rate_interval]))) / ignoring(route) group_left sum(up offset 5m) * 1e3 '
        "and on(instance) process_open_fds > bool 0"
    )
    assert promql_metric_names(expr) == {"polyrelay_overhead_seconds_bucket", "up", "process_open_fds"}
    assert promql_metric_names("label_values(polyrelay_http_requests_total, job)") == {"polyrelay_http_requests_total"}
    exposition = (
        "# HELP a_total x\n# TYPE a_total counter\n# TYPE h_seconds histogram\n"
        'h_seconds_bucket{le="+Inf"} 0.0\n# TYPE g gauge\n'
    )
    assert exported_series(exposition) == {"a_total", "h_seconds_bucket", "h_seconds_sum", "h_seconds_count", "g"}


def test_the_dashboard_queries_prometheus_through_its_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        sources = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        assert all(s == {"type": "prometheus", "uid": "${datasource}"} for s in sources), panel["title"]
    queried = set().union(*(promql_metric_names(q) for q in dashboard_queries(dashboard)))
    # What the dashboard is for: traffic, errors, latency, first tokens, tokens, overhead, streams,
    # provider errors, MCP tools and authentication failures.
    for family in (
        "polyrelay_http_requests_total",
        "polyrelay_http_request_duration_seconds_bucket",
        "gen_ai_server_time_to_first_token_seconds_bucket",
        "gen_ai_client_token_usage_sum",
        "polyrelay_overhead_seconds_bucket",
        "polyrelay_streams_in_flight",
        "polyrelay_upstream_errors_total",
        "polyrelay_mcp_tool_calls_total",
        "polyrelay_auth_failures_total",
    ):
        assert family in queried


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_metric_of_the_dashboard_is_exported_by_the_gateway() -> None:
    port, metrics_port = free_port(), free_port()
    clean = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_URL"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"],
        cwd=ROOT,
        env={
            **clean,
            "PYTHONPATH": os.pathsep.join(sys.path),
            "SERVER_PORT": str(port),
            "TELEMETRY_ENABLED": "true",
            "TELEMETRY_METRICS_PORT": str(metrics_port),
            "SERVER_ACCESS_LOG": "false",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        exposition = scrape(process, f"http://127.0.0.1:{port}/health", f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        process.terminate()
        process.wait(timeout=15)
    exported = exported_series(exposition)
    dashboard = json.loads(DASHBOARD.read_text())
    queried = set().union(*(promql_metric_names(q) for q in dashboard_queries(dashboard)))
    assert queried - exported == set(), (
        f"the dashboard queries series the gateway does not export: {queried - exported}"
    )


def scrape(process: subprocess.Popen[bytes], health: str, metrics: str) -> str:
    """The metrics page, once the gateway answers /health (a few seconds more for the metrics port)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(health).raise_for_status()
            break
        except httpx.TransportError:
            assert process.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.05)
    deadline = time.monotonic() + 3
    while True:
        try:
            answer = httpx.get(metrics)
            answer.raise_for_status()
            return answer.text
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
