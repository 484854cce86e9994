"""Settings: built once from the environment and an optional YAML file, then passed explicitly.

Names and defaults follow inference-gateway, so a deployment can swap gateways without edits. The
YAML file uses the same names, nested by prefix (``server: {port: 9000}`` is ``SERVER_PORT``) and a
``providers`` section (``providers: {openai: {api_key: ...}}`` is ``OPENAI_API_KEY``). The
environment wins over the file. Every variable inference-gateway reads is then checked against its
inventory (``inference_gateway.py``): those honoured with another meaning leave a notice, those
polyrelay cannot honour stop start-up.

>>> settings = Settings.load({"SERVER_PORT": "9000", "OPENAI_API_KEY": "sk-test"})
>>> settings.server_port, settings.providers["openai"].configured
(9000, True)
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from providers.registry import Provider, ProviderSpec, RegistryError, load_registry

from . import inference_gateway
from .aliases import AliasError, Aliases
from .limits import Rules, parse_limits
from .routing import model_name_problem

__all__ = ["SETTINGS", "Settings", "SettingsError", "Var"]

# inference-gateway's defaults for the OIDC issuer and client: its example Keycloak realm. Named in
# the error that refuses AUTH_ENABLED without them, never used silently.
IG_OIDC_ISSUER = "http://keycloak:8080/realms/inference-gateway-realm"
IG_OIDC_CLIENT_ID = "inference-gateway-client"


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable and what it accepts."""


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "t", "yes", "y", "on"):
        return True
    if value in ("0", "false", "f", "no", "n", "off", ""):
        return False
    raise ValueError("expected a boolean (true/false, 1/0, yes/no, on/off)")


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go-style durations (``30s``, ``1m30s``, ``250ms``) or a bare number of seconds, in seconds."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(value) or not value:
            raise ValueError("expected a duration such as 30s, 1m30s or 500ms") from None
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_int(text: str) -> int:
    value = int(text.strip())
    if value < 0:
        raise ValueError("expected a non-negative integer")
    return value


def parse_positive_int(text: str) -> int:
    value = int(text.strip())
    if value < 1:
        raise ValueError("expected a positive integer")
    return value


def parse_port(text: str) -> int:
    value = int(text.strip())
    if not 0 < value < 65536:
        raise ValueError("expected a port number between 1 and 65535")
    return value


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_proxies(text: str) -> tuple[str, ...]:
    """Trusted proxies: addresses and networks (``10.0.0.0/8``), or ``*`` alone for any."""
    entries = parse_list(text)
    if "*" in entries and len(entries) > 1:
        raise ValueError("'*' trusts every address and cannot be combined with others")
    for entry in entries:
        if entry == "*":
            continue
        try:
            if "/" in entry:
                ipaddress.ip_network(entry)  # strict: 10.0.0.1/8 is a typo for 10.0.0.0/8 or 10.0.0.1
            else:
                ipaddress.ip_address(entry)
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not an IP address, a network such as 10.0.0.0/8, or '*' ({exc})") from None
    return entries


def parse_models(text: str) -> tuple[str, ...]:
    """A comma list of model names, each well-formed (what ``routing.model_name`` accepts)."""
    return _checked_models(parse_list(text))


def _checked_models(models: Iterable[str]) -> tuple[str, ...]:
    models = tuple(models)
    for model in models:
        if (problem := model_name_problem(model)) is not None:
            raise ValueError(f"the model {model!a} is not a valid name: {problem}")
    return models


def parse_tls_version(text: str) -> str:
    """inference-gateway's values: TLS13 raises the floor; TLS10, TLS11 and TLS12 all mean TLS 1.2,
    the least this client speaks (as inference-gateway reads anything but TLS13)."""
    value = text.strip().upper()
    if value not in ("TLS10", "TLS11", "TLS12", "TLS13"):
        raise ValueError("expected TLS12 or TLS13 (TLS10 and TLS11 are read as TLS12)")
    return "TLS13" if value == "TLS13" else "TLS12"


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")


def parse_header_name(text: str) -> str:
    if not _TOKEN.match(text.strip()):
        raise ValueError("expected a header name of 1 to 100 letters, digits or -")
    return text.strip()


def parse_server_headers(text: str) -> dict[str, dict[str, str]]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"expected a JSON object ({exc.msg})") from None
    if not isinstance(value, dict) or not all(
        isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values()) for headers in value.values()
    ):
        raise ValueError('expected {"server name": {"Header": "value"}}')
    return {str(name): {str(k): v for k, v in headers.items()} for name, headers in value.items()}


@dataclass(frozen=True)
class ApiKey:
    """A static credential: its name, the sha256 of the key (hex), the models it may use
    (empty: whatever the gateway's policy allows), and its role on the gateways management API
    (``admin``, ``viewer``, or none: no access there)."""

    name: str
    sha256: str
    models: tuple[str, ...] = ()
    role: str = ""

    def __repr__(self) -> str:
        return f"ApiKey(name={self.name!r}, models={self.models!r}, role={self.role!r})"


_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


ROLES = ("admin", "viewer")  # of the gateways management API; admin may do what viewer may


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """``name:sha256hex[:model|model...][:role]`` entries separated by commas; a last field that
    is exactly ``admin`` or ``viewer`` is the key's role on the gateways management API (model
    names may hold ``:`` themselves, as in ``ollama/llama3:8b``)."""
    keys = []
    for entry in parse_list(text):
        name, _, rest = entry.partition(":")
        digest, _, models = rest.partition(":")
        if not name or not _SHA256_HEX.match(digest.strip().lower()):
            raise ValueError(f"entry '{name or entry[:12]}' must be name:sha256hex[:model|model...][:admin|viewer]")
        role = ""
        head, colon, last = models.rpartition(":")
        if last.strip() in ROLES:
            models, role = (head if colon else ""), last.strip()
        keys.append(
            ApiKey(
                name.strip(),
                digest.strip().lower(),
                _checked_models(m.strip() for m in models.split("|") if m.strip()),
                role,
            )
        )
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise ValueError("key names must be unique")
    return tuple(keys)


def _provider_count(values: Mapping[str, str], name: str) -> int | None:
    """A provider's own count (``<ID>_RETRIES``, ``<ID>_MAX_IN_FLIGHT``), or ``None`` when unset."""
    raw = values.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        count = parse_int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not valid: {exc}.") from None
    if count < 0:
        raise SettingsError(f"{name} must be 0 or more.")
    return count


@dataclass(frozen=True)
class Var:
    """One environment variable: its name, older spellings, parser, default and meaning."""

    name: str
    attr: str
    parse: Callable[[str], Any]
    default: str
    help: str
    aliases: tuple[str, ...] = ()


SETTINGS: tuple[Var, ...] = (
    Var("ENVIRONMENT", "environment", str, "production", "`development` turns on debug logging."),
    Var("SERVER_HOST", "server_host", str, "127.0.0.1", "Address to bind (the Docker image sets 0.0.0.0)."),
    Var("SERVER_PORT", "server_port", parse_port, "8080", "Port to bind."),
    Var(
        "SERVER_WORKERS", "server_workers", parse_int, "1", "Worker processes (uvicorn workers); 0 means one per core."
    ),
    Var(
        "SERVER_ACCESS_LOG",
        "server_access_log",
        parse_bool,
        "true",
        "Log a line per request (uvicorn's access log).",
    ),
    Var(
        "SERVER_READ_TIMEOUT",
        "server_read_timeout",
        parse_duration,
        "30s",
        "Longest time to receive a request body; when set, also a bound of non-streaming upstream calls.",
    ),
    Var(
        "SERVER_WRITE_TIMEOUT",
        "server_write_timeout",
        parse_duration,
        "30s",
        "Longest silence on a stream (reset per chunk); when set, also a bound of non-streaming upstream calls.",
    ),
    Var(
        "SERVER_IDLE_TIMEOUT",
        "server_idle_timeout",
        parse_duration,
        "120s",
        "Keep-alive time of idle client connections.",
    ),
    Var(
        "SERVER_MAX_REQUEST_BODY_SIZE",
        "server_max_request_body_size",
        parse_int,
        "10485760",
        "Largest request body in bytes; larger ones get 413.",
    ),
    Var(
        "SERVER_MAX_HEADER_BYTES",
        "server_max_header_bytes",
        parse_int,
        "65536",
        "Largest request head (request line and headers) in bytes; larger ones get 431.",
    ),
    Var("SERVER_MAX_HEADERS", "server_max_headers", parse_int, "100", "Most request headers; more get 431."),
    Var(
        "SERVER_READ_HEADER_TIMEOUT",
        "server_read_header_timeout",
        parse_duration,
        "10s",
        "Longest time from a connection's first byte (or a request's) to the end of its headers; then 408.",
    ),
    Var(
        "SERVER_MAX_CONNECTIONS",
        "server_max_connections",
        parse_int,
        "0",
        "Most client connections open at once, per worker; more get 503. 0: half the open-file limit, at most 10000.",
    ),
    Var(
        "SERVER_DRAIN_TIMEOUT",
        "server_drain_timeout",
        parse_duration,
        "20s",
        "On SIGTERM, how long requests in flight may finish; streams still open then are ended with an error event.",
    ),
    Var(
        "SERVER_DRAIN_DELAY",
        "server_drain_delay",
        parse_duration,
        "5s",
        (
            "On SIGTERM, /ready answers 503 at once while new requests are still served for this long (the load "
            "balancer's lag in noticing), then the drain starts. SIGINT skips it."
        ),
    ),
    Var(
        "FORWARDED_ALLOW_IPS",
        "forwarded_allow_ips",
        parse_proxies,
        "",
        (
            "Comma list of proxy addresses or networks (or *) whose X-Forwarded-For and X-Forwarded-Proto are "
            "believed: logs and limits then see the client's address. Off when empty."
        ),
    ),
    Var(
        "LOG_FORMAT",
        "log_format",
        parse_choice("text", "json"),
        "text",
        "`json`: one JSON object per line (the Docker image's default); `text`: readable lines.",
    ),
    Var(
        "LOG_LEVEL",
        "log_level",
        parse_choice("debug", "info", "warning", "error"),
        "info",
        "Least severe level logged (ENVIRONMENT=development means debug).",
    ),
    Var(
        "TELEMETRY_ENABLED",
        "telemetry_enabled",
        parse_bool,
        "false",
        "Serve Prometheus metrics at /metrics on TELEMETRY_METRICS_PORT (a port of its own, not the API's).",
        aliases=("TELEMETRY_ENABLE",),
    ),
    Var("TELEMETRY_METRICS_PORT", "telemetry_metrics_port", parse_port, "9464", "Port of the metrics endpoint."),
    Var(
        "TELEMETRY_METRICS_PUSH_ENABLED",
        "telemetry_metrics_push_enabled",
        parse_bool,
        "false",
        "Accept clients' token usage in OTLP at POST /v1/metrics (with TELEMETRY_ENABLED).",
        aliases=("TELEMETRY_METRICS_PUSH_ENABLE",),
    ),
    Var(
        "TELEMETRY_TRACING_ENABLED",
        "telemetry_tracing_enabled",
        parse_bool,
        "false",
        "Export OpenTelemetry traces over OTLP/HTTP (also on when OTEL_EXPORTER_OTLP_ENDPOINT is set).",
        aliases=("TELEMETRY_TRACING_ENABLE",),
    ),
    Var(
        "TELEMETRY_TRACING_OTLP_ENDPOINT",
        "telemetry_tracing_otlp_endpoint",
        str,
        "http://localhost:4318",
        "OTLP/HTTP collector base URL (spans go to its /v1/traces); OTEL_EXPORTER_OTLP_ENDPOINT wins over it.",
    ),
    Var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "otel_exporter_otlp_endpoint",
        str,
        "",
        "The standard OpenTelemetry endpoint variable; setting it turns tracing on. Other OTEL_* variables apply.",
    ),
    Var(
        "STREAM_MAX_EVENT_SIZE",
        "stream_max_event_size",
        parse_int,
        "8388608",
        "Largest stream event in bytes read from a provider; a larger one ends the stream with a 502 error event.",
    ),
    Var("SERVER_TLS_CERT_PATH", "server_tls_cert_path", str, "", "PEM certificate: serve HTTPS when set with the key."),
    Var("SERVER_TLS_KEY_PATH", "server_tls_key_path", str, "", "PEM private key for SERVER_TLS_CERT_PATH."),
    Var(
        "CLIENT_TIMEOUT",
        "client_timeout",
        parse_duration,
        "30s",
        (
            "Longest non-streaming upstream call, end to end; the largest of it and the set SERVER_READ_TIMEOUT, "
            "SERVER_WRITE_TIMEOUT and CLIENT_RESPONSE_HEADER_TIMEOUT applies."
        ),
    ),
    Var(
        "CLIENT_RESPONSE_HEADER_TIMEOUT",
        "client_response_header_timeout",
        parse_duration,
        "10s",
        (
            "Longest wait to connect, for a stream's first answer headers, and for each provider's model list; "
            "when set, also a bound of non-streaming upstream calls."
        ),
    ),
    Var(
        "CLIENT_MAX_IDLE_CONNS",
        "client_max_idle_conns",
        parse_int,
        "20",
        "Cap on idle upstream connections kept in all (beyond it, closed once idle for a second); 0 = no cap.",
    ),
    Var(
        "CLIENT_MAX_IDLE_CONNS_PER_HOST",
        "client_max_idle_conns_per_host",
        parse_int,
        "20",
        "Cap on idle upstream connections kept per provider host; 0 = no cap.",
    ),
    Var(
        "CLIENT_MAX_CONNS",
        "client_max_conns",
        parse_int,
        "0",
        "Cap on upstream connections in use at once; 0 = no cap.",
    ),
    Var(
        "CLIENT_IDLE_CONN_TIMEOUT",
        "client_idle_conn_timeout",
        parse_duration,
        "30s",
        "How long an idle upstream connection stays pooled.",
    ),
    Var(
        "CLIENT_TLS_MIN_VERSION",
        "client_tls_min_version",
        parse_tls_version,
        "TLS12",
        "Least TLS version spoken to providers: TLS12 (and later), or TLS13 to refuse providers that offer less.",
    ),
    Var(
        "DEFAULT_MAX_TOKENS",
        "default_max_tokens",
        parse_positive_int,
        "4096",
        "max_tokens sent to providers that require one (Anthropic) when the request has none.",
    ),
    Var(
        "ENABLE_VISION",
        "enable_vision",
        parse_bool,
        "false",
        "Allow image content parts in chat requests (else 400).",
        aliases=("VISION_ENABLED",),
    ),
    Var(
        "ENABLE_IMAGES",
        "enable_images",
        parse_bool,
        "false",
        "Serve POST /v1/images/generations (else the route does not exist: 404).",
        aliases=("IMAGES_ENABLED",),
    ),
    Var(
        "ALLOWED_MODELS",
        "allowed_models",
        parse_models,
        "",
        (
            "Comma list of models callers may use, any case: provider/model matches that provider only, a bare "
            "name (first segment not a provider id) any provider; wins over the deny list."
        ),
    ),
    Var(
        "DISALLOWED_MODELS",
        "disallowed_models",
        parse_models,
        "",
        "Comma list of models callers may not use (same matching), when ALLOWED_MODELS is empty.",
    ),
    Var(
        "AUTH_ENABLED",
        "auth_enabled",
        parse_bool,
        "false",
        "Require a credential (OIDC token or API key) on every route but /health and /ready.",
        aliases=("AUTH_ENABLE",),
    ),
    Var("AUTH_OIDC_ISSUER", "auth_oidc_issuer", str, "", "OIDC issuer URL; its discovery document names the JWKS."),
    Var("AUTH_OIDC_CLIENT_ID", "auth_oidc_client_id", str, "", "The audience tokens must carry (aud)."),
    Var(
        "AUTH_OIDC_JWKS_REFRESH_INTERVAL",
        "auth_oidc_jwks_refresh_interval",
        parse_duration,
        "1m",
        (
            "How often the JWKS is fetched again in the background (a withdrawn key stops verifying within it), "
            "and the least time between refetches caused by tokens signed with unknown keys; 0: no periodic "
            "refresh, refetch on every unknown key."
        ),
    ),
    Var(
        "AUTH_OIDC_RETRY_INTERVAL",
        "auth_oidc_retry_interval",
        parse_duration,
        "5s",
        "First delay between discovery attempts while the issuer does not answer (doubling up to 1m).",
    ),
    Var(
        "AUTH_API_KEYS",
        "auth_api_keys",
        parse_api_keys,
        "",
        (
            "Static keys: comma list of name:sha256hex[:model|model...][:admin|viewer] (see `polyrelay new-key`); "
            "the role opens the gateways management API."
        ),
    ),
    Var(
        "ROUTING_STRATEGY",
        "routing_strategy",
        parse_choice("body", "path", "header"),
        "body",
        "Where the model is named: the JSON body, the first path segment, or a header.",
    ),
    Var(
        "ROUTING_ENABLED",
        "routing_enabled",
        parse_bool,
        "false",
        "Serve the model aliases of ROUTING_CONFIG_PATH (inference-gateway's routing file).",
    ),
    Var(
        "ROUTING_CONFIG_PATH",
        "routing_config_path",
        str,
        "",
        "The routing file: models: {<alias>: {strategy: round_robin, deployments: [{provider, model}]}}.",
    ),
    Var(
        "ROUTING_MODELS",
        "routing_models",
        str,
        "",
        "The aliases as JSON instead of a routing file: the config file's routing.models block.",
    ),
    Var(
        "ROUTING_HEADER_NAME",
        "routing_header_name",
        parse_header_name,
        "X-Model",
        "The header naming the model when ROUTING_STRATEGY=header.",
    ),
    Var(
        "CORS_ALLOWED_ORIGINS",
        "cors_allowed_origins",
        parse_list,
        "",
        "Browser origins allowed to call the gateway (CORS is off when empty).",
    ),
    Var(
        "MCP_ENABLED",
        "mcp_enabled",
        parse_bool,
        "false",
        "Offer the tools of MCP_SERVERS to the model in every chat request, and run them.",
        aliases=("MCP_ENABLE",),
    ),
    Var("MCP_SERVERS", "mcp_servers", parse_list, "", "Comma list of MCP server URLs, each optionally name=url."),
    Var(
        "MCP_SERVER_HEADERS",
        "mcp_server_headers",
        parse_server_headers,
        "",
        'JSON object of headers per server name, e.g. {"search": {"Authorization": "Bearer ..."}}.',
    ),
    Var("MCP_EXPOSE", "mcp_expose", parse_bool, "false", "Serve GET /v1/mcp/tools (403 otherwise)."),
    Var(
        "MCP_TOOL_MODE",
        "mcp_tool_mode",
        parse_choice("", "direct", "selector"),
        "",
        "direct: every tool offered to the model; selector: two meta-tools that find and run them. Unset: direct.",
    ),
    Var("MCP_INCLUDE_TOOLS", "mcp_include_tools", parse_list, "", "Only these tools (MCP or exposed names); wins."),
    Var("MCP_EXCLUDE_TOOLS", "mcp_exclude_tools", parse_list, "", "Not these tools (MCP or exposed names)."),
    Var("MCP_MAX_ITERATIONS", "mcp_max_iterations", parse_int, "10", "Model calls per request at most."),
    Var("MCP_CLIENT_TIMEOUT", "mcp_client_timeout", parse_duration, "5s", "HTTP timeout of MCP connections."),
    Var("MCP_REQUEST_TIMEOUT", "mcp_request_timeout", parse_duration, "5s", "Per tool call and initialize."),
    Var("MCP_MAX_RESULT_BYTES", "mcp_max_result_bytes", parse_int, "65536", "Tool results longer are cut."),
    Var(
        "MCP_ENABLE_RECONNECT",
        "mcp_enable_reconnect",
        parse_bool,
        "true",
        "Reconnect to servers that are down or dropped, in the background.",
    ),
    Var(
        "MCP_RECONNECT_INTERVAL",
        "mcp_reconnect_interval",
        parse_duration,
        "30s",
        "Ceiling of the first reconnection delay; it doubles per failure, with full jitter.",
    ),
    Var(
        "MCP_RECONNECT_MAX_INTERVAL",
        "mcp_reconnect_max_interval",
        parse_duration,
        "5m",
        "Ceiling of every reconnection delay.",
    ),
    Var(
        "MCP_POLLING_ENABLED",
        "mcp_polling_enabled",
        parse_bool,
        "true",
        "Ping connected servers to notice when they go away.",
        aliases=("MCP_POLLING_ENABLE",),
    ),
    Var("MCP_POLLING_INTERVAL", "mcp_polling_interval", parse_duration, "30s", "Time between pings."),
    Var("MCP_POLLING_TIMEOUT", "mcp_polling_timeout", parse_duration, "5s", "A ping slower than this fails."),
    Var(
        "UPSTREAM_RETRIES",
        "upstream_retries",
        parse_int,
        "2",
        "Retries of a provider call that failed before the client got a byte (connection, 429, 5xx); "
        "0 turns them off. <ID>_RETRIES sets it for one provider.",
    ),
    Var(
        "UPSTREAM_RETRY_AFTER_MAX",
        "upstream_retry_after_max",
        parse_duration,
        "10s",
        "The longest Retry-After waited for before retrying; a longer one is relayed to the caller.",
    ),
    Var(
        "UPSTREAM_MAX_IN_FLIGHT",
        "upstream_max_in_flight",
        parse_int,
        "0",
        "Most calls in flight to each provider, per process; one more gets 503 at once (an alias falls back). "
        "0: no cap. <ID>_MAX_IN_FLIGHT sets it for one provider.",
    ),
    Var(
        "LIMITS",
        "limits",
        parse_limits,
        "",
        "Rate limits and quotas as JSON (the config file's limits: block): default, identities, models, global.",
    ),
    Var(
        "LIMITS_FAIL_MODE",
        "limits_fail_mode",
        parse_choice("open", "closed"),
        "open",
        "When the limits' Redis cannot be reached: open lets requests through unlimited, closed refuses them (503).",
    ),
    Var(
        "LIMITS_IDENTITY_CLAIM",
        "limits_identity_claim",
        str,
        "",
        "A token claim (such as team) whose value callers are counted and matched by, instead of their subject.",
    ),
    Var(
        "REDIS_URL",
        "redis_url",
        str,
        "",
        "Redis holding the limits' counters, shared by every process and replica (in memory when empty).",
    ),
    # -- Gateway resources: the management API of /v1alpha1/inference/gateways (gateway/gateways/).
    Var(
        "GATEWAYS_ENABLED",
        "gateways_enabled",
        parse_bool,
        "false",
        (
            "Serve the gateways management API (create, change and delete gateways at run time) on GATEWAYS_PORT, "
            "and each gateway at /gateways/{id}/v1 and on its hosts; without AUTH_ENABLED, only on a loopback "
            "SERVER_HOST."
        ),
    ),
    Var("GATEWAYS_PORT", "gateways_port", parse_port, "8081", "Port of the gateways management API (on SERVER_HOST)."),
    Var(
        "GATEWAYS_DATABASE_URL",
        "gateways_database_url",
        str,
        "sqlite:///gateways.db",
        (
            "Where gateways are kept: sqlite:///relative/path or sqlite:////absolute/path (created on first start), "
            "or postgresql://user:password@host/db for several replicas."
        ),
    ),
    Var(
        "GATEWAYS_PUBLIC_URL",
        "gateways_public_url",
        str,
        "",
        "Base URL that gateways' status.endpoints are built from (default: the data plane's own address).",
    ),
    Var(
        "GATEWAYS_ROLES_CLAIM",
        "gateways_roles_claim",
        str,
        "roles",
        "Token claim (dotted for nested, e.g. realm_access.roles) listing admin and/or viewer for the management API.",
    ),
    Var(
        "GATEWAYS_ORGANIZATION_CLAIM",
        "gateways_organization_claim",
        str,
        "org_id",
        "Token claim naming the caller's organization; a caller sees and changes its organization's gateways only.",
    ),
    Var(
        "GATEWAYS_DEFAULT_ORGANIZATION",
        "gateways_default_organization",
        str,
        "default",
        "Organization of API keys, of tokens without the claim, and of every caller when AUTH_ENABLED=false.",
    ),
    Var(
        "GUARDRAILS_ENABLED",
        "guardrails_enabled",
        parse_bool,
        "false",
        "Check requests, answers and MCP tool calls against the Rego policies and the external detector.",
    ),
    Var(
        "GUARDRAILS_POLICY_DIR",
        "guardrails_policy_dir",
        str,
        "",
        "Directory of .rego files (package guardrails, rule main), compiled at start-up.",
    ),
    Var(
        "GUARDRAILS_FAIL_MODE",
        "guardrails_fail_mode",
        parse_choice("closed", "open"),
        "closed",
        "When a check fails to run: closed refuses (403), open lets the request through.",
    ),
    Var(
        "GUARDRAILS_EXTERNAL_URL",
        "guardrails_external_url",
        str,
        "",
        "An HTTP detector: POSTed the same input as the policies, answers a decision.",
    ),
    Var(
        "GUARDRAILS_EXTERNAL_TIMEOUT",
        "guardrails_external_timeout",
        parse_duration,
        "5s",
        "Longest wait for the external detector (then GUARDRAILS_FAIL_MODE applies).",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Everything the gateway is configured with; ``providers`` holds every registry entry with the
    URL and key in use (configured or not)."""

    environment: str = "production"
    server_host: str = "127.0.0.1"
    server_port: int = 8080
    server_workers: int = 1
    server_access_log: bool = True
    server_read_timeout: float = 30.0
    server_write_timeout: float = 30.0
    server_idle_timeout: float = 120.0
    server_max_request_body_size: int = 10 * 1024 * 1024
    server_max_header_bytes: int = 65536
    server_max_headers: int = 100
    server_read_header_timeout: float = 10.0
    server_max_connections: int = 0
    server_drain_timeout: float = 20.0
    server_drain_delay: float = 5.0
    forwarded_allow_ips: tuple[str, ...] = ()
    log_format: str = "text"
    log_level: str = "info"
    telemetry_enabled: bool = False
    telemetry_metrics_port: int = 9464
    telemetry_metrics_push_enabled: bool = False
    telemetry_tracing_enabled: bool = False
    telemetry_tracing_otlp_endpoint: str = "http://localhost:4318"
    otel_exporter_otlp_endpoint: str = ""
    stream_max_event_size: int = 8 * 1024 * 1024
    server_tls_cert_path: str = ""
    server_tls_key_path: str = ""
    client_timeout: float = 30.0
    client_tls_min_version: str = "TLS12"
    upstream_timeout: float = 30.0  # what bounds a non-streaming call: see _upstream_timeout
    client_response_header_timeout: float = 10.0
    client_max_idle_conns: int = 20
    client_max_idle_conns_per_host: int = 20
    client_max_conns: int = 0
    client_idle_conn_timeout: float = 30.0
    default_max_tokens: int = 4096
    enable_vision: bool = False
    enable_images: bool = False
    allowed_models: tuple[str, ...] = ()
    disallowed_models: tuple[str, ...] = ()
    auth_enabled: bool = False
    auth_oidc_issuer: str = ""
    auth_oidc_client_id: str = ""
    auth_oidc_jwks_refresh_interval: float = 60.0
    auth_oidc_retry_interval: float = 5.0
    auth_api_keys: tuple[ApiKey, ...] = ()
    routing_strategy: str = "body"
    routing_enabled: bool = False
    routing_config_path: str = ""
    routing_models: str = ""
    routing_header_name: str = "X-Model"
    cors_allowed_origins: tuple[str, ...] = ()
    mcp_enabled: bool = False
    mcp_servers: tuple[str, ...] = ()
    mcp_server_headers: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    mcp_expose: bool = False
    mcp_tool_mode: str = ""
    mcp_include_tools: tuple[str, ...] = ()
    mcp_exclude_tools: tuple[str, ...] = ()
    mcp_max_iterations: int = 10
    mcp_client_timeout: float = 5.0
    mcp_request_timeout: float = 5.0
    mcp_max_result_bytes: int = 65536
    mcp_enable_reconnect: bool = True
    mcp_reconnect_interval: float = 30.0
    mcp_reconnect_max_interval: float = 300.0
    mcp_polling_enabled: bool = True
    mcp_polling_interval: float = 30.0
    mcp_polling_timeout: float = 5.0
    upstream_retries: int = 2
    upstream_retry_after_max: float = 10.0
    upstream_max_in_flight: int = 0
    limits: Rules = field(default_factory=Rules)
    limits_fail_mode: str = "open"
    limits_identity_claim: str = ""
    redis_url: str = ""
    gateways_enabled: bool = False
    gateways_port: int = 8081
    gateways_database_url: str = "sqlite:///gateways.db"
    gateways_public_url: str = ""
    gateways_roles_claim: str = "roles"
    gateways_organization_claim: str = "org_id"
    gateways_default_organization: str = "default"
    guardrails_enabled: bool = False
    guardrails_policy_dir: str = ""
    guardrails_fail_mode: str = "closed"
    guardrails_external_url: str = ""
    guardrails_external_timeout: float = 5.0
    providers: Mapping[str, Provider] = field(default_factory=dict)
    aliases: Aliases = field(default_factory=Aliases)  # from ROUTING_CONFIG_PATH, when ROUTING_ENABLED
    config_file: str = ""
    notices: tuple[str, ...] = ()  # inference-gateway settings honoured with another meaning, logged at start

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str],
        config_file: str | Path | None = None,
        registry: Mapping[str, ProviderSpec] | None = None,
    ) -> Settings:
        """Read the settings; ``config_file`` defaults to ``GATEWAY_CONFIG``. Raises ``SettingsError``."""
        if registry is None:
            try:
                registry = load_registry(environ.get("PROVIDERS_REGISTRY") or None)
            except RegistryError as exc:
                raise SettingsError(f"PROVIDERS_REGISTRY: {exc}") from exc
        path = config_file or environ.get("GATEWAY_CONFIG") or ""
        values = dict(_read_yaml(Path(path), registry)) if path else {}
        values.update(environ)  # the environment wins over the file
        parsed: dict[str, Any] = {"config_file": str(path)}
        for var in SETTINGS:
            name, raw = _lookup(values, var)
            try:
                parsed[var.attr] = var.parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{name}={raw!r} is not valid: {exc}.") from None
        parsed["upstream_timeout"] = _upstream_timeout(values, parsed)
        try:
            parsed["notices"] = inference_gateway.check(values, registry)
        except inference_gateway.Refused as exc:
            raise SettingsError(str(exc)) from None
        parsed["providers"] = {
            pid: Provider(
                spec,
                url=values.get(f"{spec.env_prefix}_API_URL") or spec.url,
                api_key=values.get(f"{spec.env_prefix}_API_KEY") or None,
                retries=_provider_count(values, f"{spec.env_prefix}_RETRIES"),
                max_in_flight=_provider_count(values, f"{spec.env_prefix}_MAX_IN_FLIGHT"),
                zone=(values.get(f"{spec.env_prefix}_ZONE") or spec.zone).strip().lower(),
            )
            for pid, spec in registry.items()
        }
        if parsed.get("routing_enabled"):
            parsed["aliases"] = _aliases(parsed, values)
        settings = cls(**parsed)
        settings._validate()
        return settings

    def _validate(self) -> None:
        if bool(self.server_tls_cert_path) != bool(self.server_tls_key_path):
            raise SettingsError("SERVER_TLS_CERT_PATH and SERVER_TLS_KEY_PATH must be set together.")
        for path_var in ("server_tls_cert_path", "server_tls_key_path"):
            path = getattr(self, path_var)
            if path and not Path(path).is_file():
                raise SettingsError(f"{path_var.upper()}: no file at {path}.")
        if bool(self.auth_oidc_issuer) != bool(self.auth_oidc_client_id):
            raise SettingsError("AUTH_OIDC_ISSUER and AUTH_OIDC_CLIENT_ID must be set together.")
        if self.auth_oidc_issuer and not self.auth_oidc_issuer.startswith(("https://", "http://")):
            raise SettingsError("AUTH_OIDC_ISSUER must be an http(s) URL.")
        if self.auth_enabled and not (self.auth_oidc_issuer or self.auth_api_keys):
            # inference-gateway would fall back to its example Keycloak realm here; trusting tokens
            # from a host that merely answers to that name is no default for a gateway of keys.
            raise SettingsError(
                "AUTH_ENABLED=true needs a way to check callers: set AUTH_OIDC_ISSUER and AUTH_OIDC_CLIENT_ID, "
                "or AUTH_API_KEYS (or auth.api_keys in the config file). polyrelay has no default issuer: "
                f"inference-gateway would have used AUTH_OIDC_ISSUER={IG_OIDC_ISSUER} and "
                f"AUTH_OIDC_CLIENT_ID={IG_OIDC_CLIENT_ID} (its example Keycloak realm); set them to those "
                "values to keep that behaviour."
            )
        if self.telemetry_enabled and self.telemetry_metrics_port == self.server_port:
            raise SettingsError(
                "TELEMETRY_METRICS_PORT must differ from SERVER_PORT: metrics are served on a port of their own."
            )
        if self.guardrails_enabled:
            # inference-gateway allows everything when the directory is missing: a typo would turn
            # the guardrails off without a word.
            if self.guardrails_policy_dir and not Path(self.guardrails_policy_dir).is_dir():
                raise SettingsError(f"GUARDRAILS_POLICY_DIR: no directory at {self.guardrails_policy_dir}.")
            if self.guardrails_external_url and not self.guardrails_external_url.startswith(("https://", "http://")):
                raise SettingsError("GUARDRAILS_EXTERNAL_URL must be an http(s) URL.")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("REDIS_URL must be a redis://, rediss:// or unix:// URL.")
        if self.gateways_enabled:
            self._validate_gateways()
        if self.upstream_retries < 0:
            raise SettingsError("UPSTREAM_RETRIES must be 0 (no retries) or more.")
        if self.stream_max_event_size < 1:
            raise SettingsError("STREAM_MAX_EVENT_SIZE must be at least 1 byte (the default is 8388608, 8 MiB).")
        for provider in self.providers.values():
            if provider.configured and "{" in provider.url:
                raise SettingsError(
                    f"{provider.spec.env_prefix}_API_URL still holds a placeholder ({provider.url}); "
                    "set it to your real URL (for Cloudflare, put your account id in it)."
                )
            if not provider.url.startswith(("http://", "https://")):
                raise SettingsError(f"{provider.spec.env_prefix}_API_URL must start with http:// or https://.")

    def _validate_gateways(self) -> None:
        if not self.auth_enabled and not _is_loopback(self.server_host):
            raise SettingsError(
                f"GATEWAYS_ENABLED=true with AUTH_ENABLED=false serves the gateways management API to anyone who "
                f"reaches SERVER_HOST={self.server_host}: set AUTH_ENABLED=true (admin and viewer roles), or bind "
                "SERVER_HOST to 127.0.0.1 for local development."
            )
        if self.gateways_port in (self.server_port, self.telemetry_metrics_port if self.telemetry_enabled else None):
            raise SettingsError("GATEWAYS_PORT must differ from SERVER_PORT and TELEMETRY_METRICS_PORT.")
        if not self.gateways_database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise SettingsError("GATEWAYS_DATABASE_URL must be a sqlite:///path or postgresql:// URL.")
        if self.gateways_public_url and not self.gateways_public_url.startswith(("https://", "http://")):
            raise SettingsError("GATEWAYS_PUBLIC_URL must be an http(s) URL.")

    @property
    def gateways_public_base(self) -> str:
        """What gateways' endpoints start with: GATEWAYS_PUBLIC_URL, or the data plane's address."""
        if self.gateways_public_url:
            return self.gateways_public_url.rstrip("/")
        scheme = "https" if self.server_tls_cert_path else "http"
        host = "localhost" if self.server_host in ("0.0.0.0", "::", "") else self.server_host
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.server_port}"

    @property
    def configured_providers(self) -> list[Provider]:
        return [p for p in self.providers.values() if p.configured]

    @property
    def upstreams(self) -> list[Provider]:
        """Every upstream an adapter is built for: the configured providers, then the alias
        deployments with a URL or key of their own (``Provider.name`` tells them apart)."""
        return [*self.configured_providers, *self.aliases.upstreams.values()]

    @property
    def debug(self) -> bool:
        return self.environment.lower() == "development"


def _aliases(parsed: Mapping[str, Any], values: Mapping[str, str]) -> Aliases:
    """The model aliases: of the routing file (ROUTING_CONFIG_PATH), or of the config file's
    ``routing.models`` (ROUTING_MODELS, JSON); a deployment's ``api_key_env`` is read from ``values``."""
    path, inline = parsed.get("routing_config_path"), parsed.get("routing_models", "").strip()
    if bool(path) == bool(inline):
        raise SettingsError(
            "ROUTING_ENABLED=true needs the model aliases in one place: ROUTING_CONFIG_PATH (the routing file) "
            "or ROUTING_MODELS (the config file's routing.models), not both."
            if path
            else "ROUTING_ENABLED=true needs ROUTING_CONFIG_PATH, the routing file of model aliases "
            "(or the config file's routing.models)."
        )
    try:
        if path:
            return Aliases.load(path, parsed["providers"], values)
        try:
            models = json.loads(inline)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"ROUTING_MODELS is not valid JSON: {exc}.") from None
        return Aliases.parse(models, parsed["providers"], values, "routing.models (ROUTING_MODELS)")
    except AliasError as exc:
        raise SettingsError(str(exc)) from None


# inference-gateway bounds its upstream calls with its server's timeouts, and a non-streaming answer
# by CLIENT_RESPONSE_HEADER_TIMEOUT (its headers come with the whole answer): a deployment tuned for
# slow models there raised one of them, so the largest of those set bounds a non-streaming call here.
_UPSTREAM_BOUNDS = (
    ("SERVER_READ_TIMEOUT", "server_read_timeout"),
    ("SERVER_WRITE_TIMEOUT", "server_write_timeout"),
    ("CLIENT_RESPONSE_HEADER_TIMEOUT", "client_response_header_timeout"),
)


def _upstream_timeout(values: Mapping[str, str], parsed: Mapping[str, Any]) -> float:
    bounds = [parsed["client_timeout"], *(parsed[attr] for name, attr in _UPSTREAM_BOUNDS if name in values)]
    return 0.0 if 0 in bounds else max(bounds)  # 0 is "no bound", there as here


def _lookup(values: Mapping[str, str], var: Var) -> tuple[str, str]:
    for name in (var.name, *var.aliases):
        if name in values:
            return name, values[name]
    return var.name, var.default


def _read_yaml(path: Path, registry: Mapping[str, ProviderSpec]) -> Iterable[tuple[str, str]]:
    """The file's settings as ``(ENV_NAME, text)`` pairs; unknown keys are errors, not ignored."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"Cannot read the config file {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise SettingsError(f"{path}: the top level must be a mapping of settings.")
    known = {name for var in SETTINGS for name in (var.name, *var.aliases)}
    for key, value in document.items():
        if key == "providers":
            yield from _yaml_providers(path, value, registry)
        elif key == "mcp" and isinstance(value, dict) and isinstance(value.get("servers"), list):
            yield from _yaml_mcp(path, value, known)
        elif key == "limits" and isinstance(value, dict):
            yield from _yaml_limits(path, value, known)
        elif isinstance(value, dict):
            for sub, sub_value in value.items():
                yield _yaml_setting(path, f"{key}.{sub}", f"{key}_{sub}".upper(), sub_value, known)
        else:
            yield _yaml_setting(path, str(key), str(key).upper(), value, known)


def _yaml_setting(path: Path, key: str, name: str, value: Any, known: set[str]) -> tuple[str, str]:
    if name not in known:
        raise SettingsError(f"{path}: unknown setting '{key}' ({name}).")
    if name == "AUTH_API_KEYS" and isinstance(value, list):
        return name, ",".join(_yaml_api_key(path, entry) for entry in value)
    if isinstance(value, dict):
        return name, json.dumps(value)
    if isinstance(value, bool):
        return name, str(value).lower()
    if isinstance(value, list):
        return name, ",".join(str(v) for v in value)
    return name, "" if value is None else str(value)


def _yaml_mcp(path: Path, section: dict[str, Any], known: set[str]) -> Iterable[tuple[str, str]]:
    """``mcp.servers`` as a list of {name, url, headers}: MCP_SERVERS and MCP_SERVER_HEADERS."""
    servers, headers = [], {}
    for entry in section["servers"]:
        if isinstance(entry, str):
            servers.append(entry)
            continue
        if not isinstance(entry, dict) or not entry.get("url"):
            raise SettingsError(f"{path}: each mcp.servers item is a URL or a mapping with url (and name, headers).")
        name = str(entry.get("name") or "")
        servers.append(f"{name}={entry['url']}" if name else str(entry["url"]))
        if entry.get("headers"):
            if not name:
                raise SettingsError(f"{path}: an mcp.servers item with headers needs a name.")
            headers[name] = entry["headers"]
    yield "MCP_SERVERS", ",".join(servers)
    if headers:
        yield "MCP_SERVER_HEADERS", json.dumps(headers)
    for sub, sub_value in section.items():
        if sub != "servers":
            yield _yaml_setting(path, f"mcp.{sub}", f"MCP_{sub}".upper(), sub_value, known)


def _yaml_limits(path: Path, section: dict[str, Any], known: set[str]) -> Iterable[tuple[str, str]]:
    """``limits``: its rules as LIMITS (JSON), its fail_mode and identity_claim as their variables."""
    rules = {k: v for k, v in section.items() if k not in ("fail_mode", "identity_claim")}
    if rules:
        yield "LIMITS", json.dumps(rules)
    for sub in ("fail_mode", "identity_claim"):
        if sub in section:
            yield _yaml_setting(path, f"limits.{sub}", f"LIMITS_{sub}".upper(), section[sub], known)


def _yaml_api_key(path: Path, entry: Any) -> str:
    """One ``auth.api_keys`` item ({name, sha256, models, role}) in the variable's text form."""
    if not isinstance(entry, dict) or not entry.get("name") or not entry.get("sha256"):
        raise SettingsError(
            f"{path}: each auth.api_keys item needs a name and a sha256 (and optional models and role)."
        )
    models = entry.get("models") or []
    if isinstance(models, str):
        models = [models]
    role = str(entry.get("role") or "")
    if role and role not in ROLES:
        raise SettingsError(f"{path}: auth.api_keys role {role!r} is not admin or viewer.")
    text = f"{entry['name']}:{entry['sha256']}:{'|'.join(str(m) for m in models)}"
    return f"{text}:{role}" if role else text


def _yaml_providers(path: Path, section: Any, registry: Mapping[str, ProviderSpec]) -> Iterable[tuple[str, str]]:
    if not isinstance(section, dict):
        raise SettingsError(f"{path}: 'providers' must map provider ids to {{api_url, api_key}}.")
    for pid, entry in section.items():
        if pid not in registry:
            raise SettingsError(f"{path}: unknown provider '{pid}'; known: {', '.join(registry)}.")
        if not isinstance(entry, dict):
            raise SettingsError(f"{path}: providers.{pid} must be a mapping with api_url and/or api_key.")
        prefix = registry[pid].env_prefix
        for key, value in entry.items():
            if key in ("url", "api_url"):
                yield f"{prefix}_API_URL", str(value)
            elif key == "api_key":
                yield f"{prefix}_API_KEY", str(value)
            elif key == "zone":
                yield f"{prefix}_ZONE", str(value)
            else:
                raise SettingsError(f"{path}: providers.{pid}.{key} is unknown; use api_url, api_key or zone.")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
