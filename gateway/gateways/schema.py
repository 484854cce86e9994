"""The management API's JSON, both ways: a request body parsed and validated into a ``GatewaySpec``,
and a gateway rendered as the Inference API shows it.

    spec = parse_spec(document, organization_id="acme", known_zones=runtime.zones())
    body = {"gateway": render_gateway(spec, status)}

The rules (each refusal is a 400 naming the field):

- the body is a JSON object; unknown fields are refused at every level, and every field must have
  its JSON type (``null`` counts as absent, as in protobuf's JSON mapping);
- ``name``: required, an RFC 1123 DNS label (1-63 lower-case letters, digits and ``-``, starting
  and ending with a letter or digit), so it can name a host or a Kubernetes object as it is;
- ``id``: a UUID (any case, stored lower case); generated when absent;
- ``zones``: each known (``GET /gateways/parameters``), case insensitive, stored lower case;
- exactly one of ``coreWeaveAuth`` and ``weightsAndBiasesAuth``; the latter needs ``apiKey``,
  and its ``serverUrl`` (default ``https://api.wandb.ai``) is an http(s) URL;
- exactly one of ``bodyBasedRouting`` (``apiType`` ``API_TYPE_OPENAI``, the default),
  ``headerBasedRouting`` (``headerName`` 1-100 characters of an HTTP token) and ``pathBasedRouting``;
- ``endpointConfiguration.additionalDns``: host names (labels as above, 253 characters at most, no
  IP addresses, no wildcards), stored lower case, each once.

A W&B ``apiKey`` is never shown whole: ``mask`` keeps its last four characters. A PATCH that sends
back the masked value keeps the stored key, so a client can send a spec it read.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from .errors import invalid
from .spec import Condition, GatewaySpec, GatewayStatus, RoutingKind, WandbAuth

__all__ = [
    "MAX_ADDITIONAL_DNS",
    "WANDB_SERVER_URL",
    "is_uuid",
    "mask",
    "parse_spec",
    "render_gateway",
    "render_spec",
    "render_status",
    "stored_spec",
]

WANDB_SERVER_URL = "https://api.wandb.ai"
MAX_ADDITIONAL_DNS = 32
MAX_ZONES = 64
MAX_API_KEY = 1024
_MASK = "****"

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

_FIELDS = frozenset(
    {
        "name",
        "zones",
        "id",
        "coreWeaveAuth",
        "weightsAndBiasesAuth",
        "endpointConfiguration",
        "bodyBasedRouting",
        "headerBasedRouting",
        "pathBasedRouting",
    }
)
_AUTHS = ("coreWeaveAuth", "weightsAndBiasesAuth")
_ROUTINGS: Mapping[str, RoutingKind] = {
    "bodyBasedRouting": "body",
    "headerBasedRouting": "header",
    "pathBasedRouting": "path",
}
_API_TYPES = ("API_TYPE_OPENAI",)


def is_uuid(text: str) -> bool:
    return bool(_UUID.match(text))


def mask(api_key: str) -> str:
    """What the API shows of a W&B key: its last four characters, or nothing of a short one."""
    return _MASK + api_key[-4:] if len(api_key) >= 12 else _MASK


def parse_spec(
    document: Any,
    *,
    organization_id: str,
    known_zones: Collection[str] | None,
    gateway_id: str | None = None,
    stored: GatewaySpec | None = None,
) -> GatewaySpec:
    """The request body of a create (``gateway_id`` None) or of a PATCH of ``stored``; raises a
    400 ``GatewaysError``. ``known_zones`` None skips the zone check (a spec read back from the
    store stays valid when a zone leaves the configuration)."""
    body = _object(document, "the request body", _FIELDS)
    name = _string(body, "name", "")
    if not name:
        raise invalid("name is required.")
    if not _LABEL.match(name):
        raise invalid(
            f"name {name[:80]!r} is not valid: use 1 to 63 lower-case letters, digits or '-', starting and "
            "ending with a letter or digit (a DNS label)."
        )
    given_id = _string(body, "id", "")
    if given_id and not _UUID.match(given_id):
        raise invalid(f"id {given_id[:80]!r} is not a UUID (such as 0b6c3d9e-4f1a-4b8e-9c2d-7e5f6a1b2c3d).")
    if gateway_id is not None:
        if given_id and given_id.lower() != gateway_id:
            raise invalid(f"id {given_id!r} in the body differs from the gateway's id {gateway_id} in the path.")
        given_id = gateway_id
    auth = _exactly_one(body, _AUTHS, "an authentication type")
    routing = _exactly_one(body, tuple(_ROUTINGS), "a routing strategy")
    header_name, api_type = "", "API_TYPE_OPENAI"
    if routing == "headerBasedRouting":
        header_name = _header_name(body[routing])
    elif routing == "bodyBasedRouting":
        section = _object(body[routing], "bodyBasedRouting", {"apiType"})
        api_type = _string(section, "apiType", "API_TYPE_OPENAI", "bodyBasedRouting.apiType")
        if api_type not in _API_TYPES:
            raise invalid(f"bodyBasedRouting.apiType {api_type[:80]!r} is not supported: use API_TYPE_OPENAI.")
    else:
        _object(body[routing], "pathBasedRouting", set())
    wandb = None
    if auth == "weightsAndBiasesAuth":
        wandb = _wandb(body[auth], stored.wandb if stored is not None else None)
    else:
        _object(body[auth], "coreWeaveAuth", set())
    return GatewaySpec(
        id=(given_id or str(uuid.uuid4())).lower(),
        name=name,
        organization_id=organization_id,
        zones=_zones(body, known_zones),
        auth="wandb" if wandb is not None else "coreweave",
        wandb=wandb,
        routing=_ROUTINGS[routing],
        header_name=header_name,
        api_type=api_type,
        additional_dns=_additional_dns(body),
    )


def stored_spec(document: Mapping[str, Any]) -> GatewaySpec:
    """A spec as the store keeps it (``render_spec(spec, reveal=True)``), read back."""
    body = dict(document)
    organization_id = str(body.pop("organizationId", ""))
    return parse_spec(body, organization_id=organization_id, known_zones=None)


def render_spec(spec: GatewaySpec, *, reveal: bool = False) -> dict[str, Any]:
    """The spec as the API shows it (``reveal``: with the W&B key whole, for the store alone)."""
    document: dict[str, Any] = {"id": spec.id, "name": spec.name, "zones": list(spec.zones)}
    if spec.wandb is not None:
        key = spec.wandb.api_key if reveal else mask(spec.wandb.api_key)
        document["weightsAndBiasesAuth"] = {
            "apiKey": key,
            "serverUrl": spec.wandb.server_url,
            "enableUsageReports": spec.wandb.enable_usage_reports,
            "enableRateLimiting": spec.wandb.enable_rate_limiting,
        }
    else:
        document["coreWeaveAuth"] = {}
    document["organizationId"] = spec.organization_id
    document["endpointConfiguration"] = {"additionalDns": list(spec.additional_dns)}
    if spec.routing == "header":
        document["headerBasedRouting"] = {"headerName": spec.header_name}
    elif spec.routing == "path":
        document["pathBasedRouting"] = {}
    else:
        document["bodyBasedRouting"] = {"apiType": spec.api_type}
    return document


def render_status(status: GatewayStatus) -> dict[str, Any]:
    return {
        "createdAt": status.created_at,
        "updatedAt": status.updated_at,
        "conditions": [_condition(c) for c in status.conditions],
        "endpoints": list(status.endpoints),
        "status": status.status,
    }


def render_gateway(spec: GatewaySpec, status: GatewayStatus) -> dict[str, Any]:
    return {"spec": render_spec(spec), "status": render_status(status)}


def _condition(condition: Condition) -> dict[str, Any]:
    return {
        "type": condition.type,
        "lastUpdateTime": condition.last_update_time,
        "reason": condition.reason,
        "message": condition.message,
        "zone": condition.zone,
        "status": condition.status,
    }


# -- the fields ---------------------------------------------------------------------------------


def _object(value: Any, where: str, fields: Collection[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{where} must be a JSON object, not {_kind(value)}.")
    unknown = [key for key in value if key not in fields]
    if unknown:
        allowed = ", ".join(sorted(fields)) or "no fields"
        raise invalid(f"{where} has an unknown field {unknown[0][:80]!r}; it takes {allowed}.")
    return {key: item for key, item in value.items() if item is not None}


def _string(section: Mapping[str, Any], key: str, default: str, where: str = "") -> str:
    value = section.get(key, default)
    if not isinstance(value, str):
        raise invalid(f"{where or key} must be a string, not {_kind(value)}.")
    return value


def _boolean(section: Mapping[str, Any], key: str, where: str) -> bool:
    value = section.get(key, False)
    if not isinstance(value, bool):
        raise invalid(f"{where} must be true or false, not {_kind(value)}.")
    return value


def _strings(section: Mapping[str, Any], key: str, where: str, most: int) -> list[str]:
    value = section.get(key, [])
    if not isinstance(value, list):
        raise invalid(f"{where} must be an array of strings, not {_kind(value)}.")
    if len(value) > most:
        raise invalid(f"{where} has {len(value)} entries; at most {most} are allowed.")
    for item in value:
        if not isinstance(item, str):
            raise invalid(f"{where} must hold strings only, not {_kind(item)}.")
    return value


def _exactly_one(body: Mapping[str, Any], keys: tuple[str, ...], what: str) -> str:
    present = [key for key in keys if key in body]
    if len(present) != 1:
        choices = ", ".join(keys[:-1]) + " or " + keys[-1]
        found = f"{len(present)} were given ({', '.join(present)})" if present else "none was given"
        raise invalid(f"Exactly one of {choices} is required as {what}; {found}.")
    return present[0]


def _header_name(value: Any) -> str:
    section = _object(value, "headerBasedRouting", {"headerName"})
    name = _string(section, "headerName", "", "headerBasedRouting.headerName")
    if not name:
        raise invalid("headerBasedRouting.headerName is required (1 to 100 characters).")
    if len(name) > 100:
        raise invalid(f"headerBasedRouting.headerName is {len(name)} characters long; at most 100 are allowed.")
    if not _TOKEN.match(name):
        raise invalid(
            f"headerBasedRouting.headerName {name!r} is not a valid HTTP header name: use letters, digits "
            "and !#$%&'*+-.^_`|~ only."
        )
    return name


def _wandb(value: Any, stored: WandbAuth | None) -> WandbAuth:
    where = "weightsAndBiasesAuth"
    section = _object(value, where, {"apiKey", "serverUrl", "enableUsageReports", "enableRateLimiting"})
    api_key = _string(section, "apiKey", "", f"{where}.apiKey")
    if stored is not None and api_key == mask(stored.api_key):
        api_key = stored.api_key  # the masked value read back: the key stays
    elif api_key.startswith(_MASK):
        raise invalid(f"{where}.apiKey is a masked value, not a key: send the W&B API key itself.")
    if not api_key:
        raise invalid(f"{where}.apiKey is required: the W&B API key of the gateway.")
    if len(api_key) > MAX_API_KEY or not api_key.isprintable() or api_key.strip() != api_key:
        raise invalid(f"{where}.apiKey is not a valid API key.")
    server_url = _string(section, "serverUrl", "", f"{where}.serverUrl") or WANDB_SERVER_URL
    parts = urlsplit(server_url)
    if parts.scheme not in ("https", "http") or not parts.hostname or len(server_url) > 2048:
        raise invalid(f"{where}.serverUrl {server_url[:80]!r} must be an http(s) URL such as {WANDB_SERVER_URL}.")
    return WandbAuth(
        api_key=api_key,
        server_url=server_url.rstrip("/"),
        enable_usage_reports=_boolean(section, "enableUsageReports", f"{where}.enableUsageReports"),
        enable_rate_limiting=_boolean(section, "enableRateLimiting", f"{where}.enableRateLimiting"),
    )


def _zones(body: Mapping[str, Any], known: Collection[str] | None) -> tuple[str, ...]:
    zones = [zone.lower() for zone in _strings(body, "zones", "zones", MAX_ZONES)]
    if known is not None:
        for zone in zones:
            if zone not in known:
                listed = ", ".join(sorted(known)) or "none (no configured provider has a zone)"
                raise invalid(f"zones: {zone[:80]!r} is not a known zone; known zones: {listed}.")
    return tuple(dict.fromkeys(zones))  # each once, in the given order


def _additional_dns(body: Mapping[str, Any]) -> tuple[str, ...]:
    section = _object(body.get("endpointConfiguration", {}), "endpointConfiguration", {"additionalDns"})
    where = "endpointConfiguration.additionalDns"
    hosts = []
    for host in _strings(section, "additionalDns", where, MAX_ADDITIONAL_DNS):
        problem = _host_problem(host)
        if problem:
            raise invalid(f"{where}: {host[:80]!r} is not a valid host name: {problem}.")
        name = host.lower().rstrip(".")
        if name in hosts:
            raise invalid(f"{where}: {name!r} is listed twice.")
        hosts.append(name)
    return tuple(hosts)


def _host_problem(host: str) -> str:
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253:
        return "a host name is 1 to 253 characters"
    labels = name.split(".")
    if not all(_HOST_LABEL.match(label) for label in labels):
        return "each dot-separated label is 1 to 63 letters, digits or '-', not starting or ending with '-'"
    if labels[-1].isdigit():
        return "an IP address is not a host name"
    return ""


_KINDS: Mapping[type, str] = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return _KINDS.get(type(value), "null")
