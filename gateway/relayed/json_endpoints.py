"""The relayed routes whose request is JSON: completions, moderations, images, speech.

Each reads top-down: the body within its limits, the model resolved and checked, the body sent
with only ``model`` changed (to the provider's own name), and the answer relayed: JSON read whole
and checked, a completions stream event by event ending in ``[DONE]``, speech's audio as it comes
with its content type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from providers.errors import InvalidRequest
from providers.json_codec import dump_json, load_json
from providers.registry import ENDPOINTS, Provider
from providers.relayed import Relay

from ..body import read_body
from ..chat import DONE_EVENT, SSE_HEADERS
from ..errors import error_event
from ..relay import RelayResponse, until_disconnect
from ..settings import Settings
from ..telemetry import current
from .target import Targets

__all__ = ["Answer", "JsonEndpoint"]


@dataclass(frozen=True, slots=True)
class Answer:
    """How an endpoint answers: ``what`` names it in errors; ``streams`` when ``"stream": true``
    asks for events; ``binary`` when the answer is a body of its own type (audio)."""

    what: str
    streams: bool = False
    binary: bool = False


class JsonEndpoint:
    """One relayed route with a JSON request, for the registry endpoint ``endpoint``."""

    def __init__(self, settings: Settings, targets: Targets, endpoint: str, answer: Answer) -> None:
        self.limit = settings.server_max_request_body_size
        self.read_timeout = settings.server_read_timeout
        self.targets = targets
        self.endpoint = endpoint
        self.answer = answer

    async def handle(self, request: Request) -> Response | RelayResponse:
        body = await read_body(request, self.limit, self.read_timeout)
        payload = load_json(body)
        if not isinstance(payload, dict):
            raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
        asked, provider, model = await self.targets.take(
            request, payload.get("model"), self.endpoint, payload, len(body)
        )
        if payload.get("stream") is True and not self.answer.streams:
            # Image streams end with their own event, not [DONE]: not relayed yet.
            raise InvalidRequest(
                f"Streaming is not relayed for {ENDPOINTS[self.endpoint]}; leave out 'stream'.", param="stream"
            )
        # An alias: on a failure before the first byte, its other deployments, in order.
        return await self.targets.fallbacks.run(
            request, asked, provider, model, lambda p, m: self._answer(request, body, payload, p, m), self.endpoint
        )

    async def _answer(
        self, request: Request, body: bytes, payload: dict[str, Any], provider: Provider, model: str
    ) -> Response | RelayResponse:
        """One provider's answer, with the body's ``model`` its own name."""
        relay = self.targets.relays[provider.name]
        if payload.get("model") != model:  # the bytes as they came when the name is the provider's already
            payload["model"] = model
            body = dump_json(payload)
        if payload.get("stream") is True:
            return await self._stream(request, relay, body, payload)
        if self.answer.binary:
            upstream = await until_disconnect(request, relay.post(self.endpoint, body, binary=True))
            kind = upstream.headers.get("Content-Type") or "application/octet-stream"
            return RelayResponse(
                upstream.iter_chunks(), close=upstream.aclose, headers=[(b"content-type", kind.encode("latin-1"))]
            )
        answer = await until_disconnect(request, self._call(relay, body))
        current().answered(answer)
        return Response(answer, media_type="application/json")

    async def _call(self, relay: Relay, body: bytes) -> bytes:
        return await relay.json(await relay.post(self.endpoint, body), self.answer.what)

    async def _stream(self, request: Request, relay: Relay, body: bytes, payload: dict[str, Any]) -> RelayResponse:
        upstream = await until_disconnect(request, relay.post(self.endpoint, body, stream=True))
        events = relay.events(upstream, payload)
        current().stream_started()
        return RelayResponse(events, close=events.aclose, headers=SSE_HEADERS, on_error=error_event, tail=DONE_EVENT)
