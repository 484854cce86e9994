"""Fallbacks: when an alias's deployment fails before the client got a byte, its next ones.

Every model route makes its provider call through ``Fallbacks.run``. For a model named directly
it is the call alone; for an alias (the request's ``X-Selected-*`` were set by routing) it counts
the call in and out of flight, times it, reports success or failure to the alias's health (and so
its ejection), and on a failure another deployment might not share (unreachable, 429, 5xx, 529:
``worth_another``) tries the alias's other deployments in order, skipping those the caller's policy
excludes and those that do not serve the route's endpoint. A route that relays a provider's error
answer instead of raising it (the native Messages relay) is judged by that answer's status.

    fallbacks = Fallbacks(settings, policy)
    answer = await fallbacks.run(request, "fast", provider, model, lambda p, m: call(p, m), endpoint="embeddings")
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from providers.errors import UpstreamError, UpstreamStatusError, UpstreamUnreachable
from providers.registry import Provider
from providers.retry import RETRIED_STATUSES

from .aliases import Alias, Target
from .auth import Identity, identity_of
from .policy import ModelPolicy
from .relay import RelayResponse
from .settings import Settings
from .telemetry import current

__all__ = ["Fallbacks", "worth_another"]

log = logging.getLogger("polyrelay")

Answer = TypeVar("Answer", bound=Response | RelayResponse)


def worth_another(error: BaseException) -> bool:
    """Whether another deployment might answer: the provider was unreachable or said it could not
    serve (429, 5xx, 529), as the retries judge it; never the caller's own mistake, nor a timeout."""
    if isinstance(error, UpstreamUnreachable):
        return True
    return isinstance(error, UpstreamStatusError) and error.status in RETRIED_STATUSES


class Fallbacks:
    def __init__(self, settings: Settings, policy: ModelPolicy) -> None:
        self.providers = settings.providers
        self.aliases = settings.aliases
        self.policy = policy

    async def run(
        self,
        request: Request,
        asked: str,
        provider: Provider,
        model: str,
        call: Callable[[Provider, str], Awaitable[Answer]],
        endpoint: str | None = None,
    ) -> Answer:
        """``call(provider, model)``'s answer: JSON, or a stream that has not sent its first event;
        for an alias (``asked``), the first deployment's in order to give one."""
        exchange = current()
        alias = self.aliases.get(asked.strip()) if exchange.selected is not None else None
        if alias is None:
            return await call(provider, model)
        target = Target(provider.id, model, provider.deployment)
        fallbacks = alias.fallbacks(target)
        identity = identity_of(request.scope)
        while True:
            started = time.monotonic()
            alias.begin(target)
            try:
                answer = await call(provider, target.model)
            except BaseException as error:
                alias.end(target)
                if not isinstance(error, UpstreamError) or not worth_another(error):
                    raise
                following = self._next(alias, target, fallbacks, identity, endpoint, error.message)
                if following is None:
                    raise
            else:
                status = answer.status if isinstance(answer, RelayResponse) else answer.status_code
                if status not in RETRIED_STATUSES:
                    alias.succeeded(target, time.monotonic() - started)  # to the answer, or a stream's start
                    if isinstance(answer, RelayResponse):  # in flight until the stream ends
                        answer.close = _then(answer.close, alias, target)
                    else:
                        alias.end(target)
                    return answer
                alias.end(target)  # a provider's refusal relayed as it wrote it
                following = self._next(alias, target, fallbacks, identity, endpoint, f"HTTP {status}")
                if following is None:
                    return answer
            target = following
            # The failure is the log's and the alias's: the answer is the next deployment's.
            exchange.error, exchange.error_type, exchange.outcome = None, None, "ok"
            provider = self.aliases.upstream(target, self.providers)
            exchange.provider, exchange.model = provider.name, target.model
            exchange.selected = (target.upstream, target.model)

    def _next(
        self,
        alias: Alias,
        failed: Target,
        fallbacks: list[Target],
        identity: Identity | None,
        endpoint: str | None,
        reason: str,
    ) -> Target | None:
        """Count ``failed``'s failure; the next deployment to try (taken from ``fallbacks``), if any."""
        alias.failed(failed)
        for target in fallbacks:
            if not self.policy.allows(target.provider, target.model, identity):
                continue
            if endpoint is not None and not self.aliases.upstream(target, self.providers).serves(endpoint):
                continue
            fallbacks.remove(target)
            log.info(
                "alias %s: %s/%s failed (%s); falling back to %s/%s",
                alias.name,
                failed.upstream,
                failed.model,
                reason,
                target.upstream,
                target.model,
            )
            return target
        return None


def _then(close: Callable[[], Awaitable[object]], alias: Alias, target: Target) -> Callable[[], Awaitable[None]]:
    """``close``, then the stream's end counted out of flight, whatever happens."""

    async def closed() -> None:
        try:
            await close()
        finally:
            alias.end(target)

    return closed
