"""``{METHOD} /proxy/{provider}/{path}``: the provider's own API, with the gateway's credential.

``{path}`` is appended to the scheme://host[:port] of the provider's URL, so a provider's SDK works
with its base URL set to ``http://gateway/proxy/<provider>`` (plus ``/v1`` for OpenAI-style SDKs).
Method, query, body, status and headers pass through, streaming both ways, except hop-by-hop
headers and the caller's credentials and cookies, which never leave the gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from urllib.parse import unquote

from starlette.requests import Request

from providers import Adapter, HttpClient, Timeouts
from providers.errors import APIError, InvalidRequest, PermissionDenied, UpstreamError

from .auth import identity_of
from .body import check_declared_length, stream_body
from .relay import ClientGone, RelayResponse, until_disconnect
from .routing import provider_by_id
from .settings import Settings

__all__ = ["METHODS", "ProxyEndpoint"]

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "expect",
    }
)
# The caller's credentials for the gateway are not the provider's business.
_CALLER_SECRETS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie"})
_NOT_FORWARDED = _HOP_BY_HOP | _CALLER_SECRETS
_NOT_RETURNED = _HOP_BY_HOP | {"set-cookie"}


class ProxyEndpoint:
    def __init__(self, settings: Settings, adapters: Mapping[str, Adapter], http: HttpClient) -> None:
        self.settings = settings
        self.adapters = adapters
        self.http = http
        # Waiting for headers may mean waiting for a whole non-streaming completion.
        self.timeouts = Timeouts(
            connect=settings.client_response_header_timeout,
            headers=settings.client_timeout or None,
            idle=settings.server_write_timeout or None,
        )

    async def handle(self, request: Request) -> RelayResponse:
        identity = identity_of(request.scope)
        if identity is not None and identity.models:
            raise PermissionDenied(
                f"The key '{identity.subject}' is limited to some models, which the raw proxy cannot enforce; "
                "use /v1/chat/completions.",
                code="proxy_not_allowed",
            )
        provider = provider_by_id(request.path_params["provider"], self.settings.providers)
        url = provider.origin + "/" + _upstream_path(request) + _query(request)
        limit = self.settings.server_max_request_body_size
        check_declared_length(request, limit)
        headers = _forwarded_headers(request.headers.raw, self.adapters[provider.id].proxy_headers())
        has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
        upload = _Upload(stream_body(request, limit) if has_body else None)
        try:
            upstream = await until_disconnect(
                request,
                self.http.request(
                    request.method, url, headers=headers, body=upload.body, timeouts=self.timeouts, raw=True
                ),
                watch_after=upload.done,
            )
        except UpstreamError:
            if upload.error is not None:  # the client's body failed (too large, or the client left)
                raise upload.error from None
            raise
        response_headers = _filtered(upstream.raw_headers, _NOT_RETURNED)
        return RelayResponse(
            upstream.iter_chunks(), close=upstream.aclose, status=upstream.status, headers=response_headers
        )


class _Upload:
    """The client's body on its way upstream. The HTTP client would report any failure of it as a
    connection error; ``error`` keeps the real cause, and ``done`` tells when ``receive`` is free."""

    def __init__(self, chunks: AsyncIterator[bytes] | None) -> None:
        self.done = asyncio.Event()
        self.error: Exception | None = None
        self.body = None if chunks is None else self._relay(chunks)
        if chunks is None:
            self.done.set()

    async def _relay(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield chunk
        except (APIError, ClientGone) as exc:
            self.error = exc
            raise
        self.done.set()


def _upstream_path(request: Request) -> str:
    """The raw (still percent-encoded) path after ``/proxy/<provider>/``; ``..`` in any spelling is refused."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    raw_path = raw.decode("latin-1")
    prefix = "/proxy/" + request.path_params["provider"]
    rest = raw_path[len(prefix) :] if raw_path.startswith(prefix) else "/" + request.path_params["path"]
    decoded = unquote(unquote(rest)).replace("\\", "/")
    if ".." in decoded.split("/"):
        raise InvalidRequest("The proxied path may not contain '..' segments.", param="path", code="invalid_path")
    return rest.lstrip("/")


def _query(request: Request) -> str:
    query = request.scope.get("query_string", b"")
    return "?" + query.decode("latin-1") if query else ""


def _filtered(raw: Iterable[tuple[bytes, bytes]], dropped: frozenset[str]) -> list[tuple[bytes, bytes]]:
    """Headers minus ``dropped`` and minus those the Connection header names (hop-by-hop too)."""
    pairs = list(raw)
    listed = {
        token.strip().lower()
        for key, value in pairs
        if key.lower() == b"connection"
        for token in value.decode("latin-1").split(",")
    }
    return [(k, v) for k, v in pairs if (name := k.decode("latin-1").lower()) not in dropped and name not in listed]


def _forwarded_headers(raw: Iterable[tuple[bytes, bytes]], injected: Mapping[str, str]) -> list[tuple[str, str]]:
    """The caller's headers (repeated ones kept) with the provider's injected over them."""
    replaced = _NOT_FORWARDED | {name.lower() for name in injected}
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in _filtered(raw, replaced)]
    headers.extend(injected.items())
    return headers
