"""Zones: where providers run (``zone:`` in the registry, ``<ID>_ZONE``, ``providers.<id>.zone`` in the
config file), and the providers a gateway with zones may route to.

A gateway's data plane holds every provider, those outside its zones *withheld*: they count as not
configured (no adapter, not in ``/v1/models``) and a request naming one gets a 400 that says so.
Model aliases are kept only when all their deployments lie inside the zones, so a fallback can
never leave them.

    providers = in_zones(settings.providers, ("eu-west",))
    provider_zones(settings.providers)          # ('eu-west', 'us-east')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from providers.registry import Provider

from ..aliases import Aliases, Target

__all__ = ["aliases_in", "in_zones", "provider_zones"]


def provider_zones(providers: Mapping[str, Provider]) -> tuple[str, ...]:
    """The zones the configured providers are in, sorted."""
    return tuple(sorted({p.zone for p in providers.values() if p.configured and p.zone}))


def in_zones(providers: Mapping[str, Provider], zones: tuple[str, ...]) -> dict[str, Provider]:
    """``providers`` with those outside ``zones`` withheld (every one kept when ``zones`` is empty)."""
    if not zones:
        return dict(providers)
    inside = sorted(pid for pid, p in providers.items() if p.configured and p.zone in zones)
    where = ", ".join(zones)
    here = ", ".join(inside) or "none"
    found = {}
    for pid, provider in providers.items():
        if provider.zone in zones:
            found[pid] = provider
            continue
        zone = f"in zone '{provider.zone}'" if provider.zone else "in no zone"
        found[pid] = dataclasses.replace(
            provider,
            withheld=(
                f"Provider '{pid}' is outside this gateway's zones ({where}): it is {zone}. "
                f"Providers this gateway routes to: {here}."
            ),
        )
    return found


def aliases_in(aliases: Aliases, providers: Mapping[str, Provider]) -> Aliases:
    """The aliases whose deployments all use providers that are configured (and not withheld) here."""
    kept = {
        name: alias
        for name, alias in aliases.items()
        if all(_serves(t, providers[t.provider]) for t in alias.targets if t.provider in providers)
    }
    return aliases if len(kept) == len(aliases) else Aliases(kept, aliases.upstreams)


def _serves(target: Target, provider: Provider) -> bool:
    """A deployment with a key of its own serves unless its provider is withheld (it is in its
    provider's zone); any other, if its provider is configured here."""
    return not provider.withheld if target.deployment else provider.configured
