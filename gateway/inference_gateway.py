"""inference-gateway's environment: every variable it reads, and what polyrelay does with each.

The inventory is data, ``config/inference_gateway.yaml``; ``Settings.load`` runs ``check`` over the
environment once at start-up. A variable polyrelay honours differently yields a notice (logged when
the gateway starts); one polyrelay cannot honour stops start-up when set to anything but its
default, with a message that says what polyrelay does instead; the rest pass.

    inventory = load_inventory()            # the shipped file
    notices = check(environ, registry)      # raises Refused naming every refused variable
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from providers.registry import ProviderSpec

__all__ = ["STATUSES", "Inventory", "Refused", "Variable", "check", "load_inventory"]

STATUSES = ("same", "differs", "refused", "accepted")
_NOTE = {"differs": "how", "refused": "instead", "accepted": "why"}


class Refused(ValueError):
    """Settings polyrelay cannot honour; the message has one line per variable."""


@dataclass(frozen=True)
class Variable:
    """One of inference-gateway's variables and polyrelay's answer to it (see the file's header)."""

    name: str
    default: str
    meaning: str
    polyrelay: str
    note: str = ""  # how it differs, what polyrelay does instead, or why it is harmless
    kind: str = "text"
    accepts: tuple[str, ...] = ()
    alias_of: str = ""
    release: str = ""

    def takes(self, raw: str) -> bool:
        """Whether polyrelay takes ``raw``: a value meaning the default, or one of ``accepts`` when the
        entry lists them (compared by kind: ``30s`` is ``30000ms``)."""
        if not raw.strip():
            return True  # inference-gateway reads an empty value as unset
        wanted = self.accepts or (self.default,)
        try:
            value = _COMPARE[self.kind](raw)
            return any(value == _COMPARE[self.kind](w) for w in wanted)
        except ValueError:
            return False


@dataclass(frozen=True)
class Inventory:
    version: str
    variables: Mapping[str, Variable]
    providers: Mapping[str, str | None]  # id -> inference-gateway's default URL, if known


def default_inventory_path() -> Path:
    """The copy shipped in the wheel, else the source checkout's ``config/inference_gateway.yaml``."""
    here = Path(__file__).resolve().parent
    packaged = here / "inference_gateway.yaml"
    return packaged if packaged.exists() else here.parent / "config" / "inference_gateway.yaml"


@functools.cache
def _shipped() -> Inventory:
    return load_inventory(default_inventory_path())


def load_inventory(path: str | Path | None = None) -> Inventory:
    """The inventory at ``path``; the shipped one, read once per process, by default."""
    if path is None:
        return _shipped()
    path = Path(path)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present, a few times faster
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    variables = {name: _variable(name, entry, path) for name, entry in document["variables"].items()}
    return Inventory(str(document["version"]), variables, dict(document.get("providers") or {}))


def check(
    values: Mapping[str, str], registry: Mapping[str, ProviderSpec], inventory: Inventory | None = None
) -> tuple[str, ...]:
    """The notices for the set variables whose meaning differs here; raises ``Refused`` listing every
    variable set to a value polyrelay cannot honour (a provider the registry lacks included)."""
    inventory = inventory or load_inventory()
    notices, refusals = [], []
    for name, var in inventory.variables.items():
        if name not in values:
            continue
        if var.polyrelay == "differs":
            notices.append(f"{name} is set; in polyrelay it differs from inference-gateway: {var.note}.")
        elif var.polyrelay == "refused" and not var.takes(values[name]):
            refusals.append(f"{name}={values[name]!r}: {var.note}.")
    known = {spec.env_prefix for spec in registry.values()}
    for pid, url in inventory.providers.items():
        prefix = pid.upper()
        if prefix in known:
            continue
        key, own_url = values.get(f"{prefix}_API_KEY", "").strip(), values.get(f"{prefix}_API_URL", "").strip()
        if key or (own_url and own_url != url):
            refusals.append(
                f"{prefix}_API_KEY/{prefix}_API_URL: polyrelay's registry has no provider '{pid}'. If it speaks "
                f"OpenAI's API, add it: copy config/providers.yaml, add '{pid}: {{url: {url or '<its base URL>'}}}' "
                "under providers, and point PROVIDERS_REGISTRY at the copy; its variables then apply."
            )
    if refusals:
        raise Refused(
            "These inference-gateway settings cannot be honoured by polyrelay; change or remove them:\n  "
            + "\n  ".join(refusals)
        )
    return tuple(notices)


def _variable(name: str, entry: Mapping[str, Any], path: Path) -> Variable:
    status = entry.get("polyrelay")
    if status not in STATUSES:
        raise ValueError(f"{path}: {name} has polyrelay: {status!r}; expected one of {', '.join(STATUSES)}.")
    default = str(entry.get("default", ""))
    note = str(entry.get(_NOTE.get(status, ""), "")).strip().rstrip(".")
    if status != "same" and not note:
        raise ValueError(f"{path}: {name} is '{status}' and needs '{_NOTE[status]}'.")
    return Variable(
        name,
        default,
        str(entry.get("meaning", "")),
        status,
        note,
        str(entry.get("kind") or _kind_of(default)),
        tuple(str(v) for v in entry.get("accepts") or ()),
        str(entry.get("alias_of", "")),
        str(entry.get("release", "")),
    )


def _kind_of(default: str) -> str:
    if default in ("true", "false"):
        return "bool"
    if re.fullmatch(r"\d+", default):
        return "int"
    if re.fullmatch(r"(\d+(ms|s|m|h))+", default):
        return "duration"
    return "text"


def _as_bool(raw: str) -> bool:
    from .settings import parse_bool  # settings imports this module at load time

    return parse_bool(raw)


def _as_duration(raw: str) -> float:
    from .settings import parse_duration

    return parse_duration(raw)


_COMPARE: dict[str, Callable[[str], object]] = {
    "bool": _as_bool,
    "duration": _as_duration,
    "int": lambda raw: int(raw.strip()),
    "text": lambda raw: raw.strip().lower(),
}
