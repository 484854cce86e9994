"""``{METHOD} /proxy/{provider}/{path}``: the provider's own API, with the gateway's credential.

``{path}`` is joined to the provider's URL in either of two ways: a path that already starts with
the URL's own path (``/proxy/openai/v1/models``, as a provider's SDK with its base URL set to
``http://gateway/proxy/<provider>`` sends it) is appended to the scheme://host[:port]; any other
(``/proxy/openai/models``, inference-gateway's form) is appended to the whole URL. Any of
inference-gateway's methods (``METHODS``), query, body, status and headers pass through,
streaming both ways, except hop-by-hop headers, the caller's credentials (headers and query
parameters), cookies and whereabouts, which never leave the gateway. Answers are read
uncompressed through the provider's ``Redactor``, so the key it may quote never reaches the caller.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from urllib.parse import unquote, unquote_plus, urlsplit

from starlette.requests import Request
from starlette.types import Message, Receive

from providers import Adapter, HttpClient, Timeouts
from providers.errors import InvalidRequest, PermissionDenied, UpstreamError, UpstreamUnreachable
from providers.transport import UpstreamResponse

from .auth import identity_of
from .body import Upload, check_declared_length, stream_body
from .limits.limiter import UNLIMITED, Limits, Unlimited
from .relay import RelayResponse, until_disconnect
from .routing import provider_by_id
from .settings import Settings
from .telemetry import current

__all__ = ["METHODS", "ProxyEndpoint"]

# Every method inference-gateway's proxy route takes (its router's "any").
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"]

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
# Request headers never forwarded, grouped by reason:
_NOT_FORWARDED = _HOP_BY_HOP | {
    # The caller's credentials for the gateway are not the provider's business.
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "ocp-apim-subscription-key",
    "cookie",
    # Where the caller is: the call to the provider is the gateway's, from the gateway's address.
    "forwarded",
    "via",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    # The browser page the caller is on (a Referer may carry its tokens); an Origin also makes some
    # providers treat the call as a browser's and refuse it.
    "origin",
    "referer",
    # The gateway's key decides whose account pays; a caller may not choose another of its projects.
    "openai-organization",
    "openai-project",
    # The gateway's own controls, for its own routes.
    "x-mcp-bypass",
    # The gateway sends its own request id and trace context (the caller's id, when valid, is kept).
    "x-request-id",
    "traceparent",
    "tracestate",
    # Compression is asked for by the gateway (none: it must read the bytes to mask the key).
    "accept-encoding",
}
# Prefixes and suffixes of more of the same: X-Forwarded-For/-Host/-Proto..., Proxy-Connection...,
# and credentials spelled like anthropic-api-key or x-custom-apikey.
_NOT_FORWARDED_PREFIXES = ("x-forwarded-", "proxy-")
_NOT_FORWARDED_SUFFIXES = ("api-key", "api_key", "apikey")
# Query parameters that carry a credential (Google's ?key=, Azure's ?api-key=, OAuth's access_token).
_QUERY_SECRETS = frozenset({"key", "api-key", "api_key", "apikey", "access_token"})

# Answer headers the caller never sees: the upstream's cookies, its Date and Server (the gateway's
# server writes its own), policies meant for the provider's host, not the gateway's, and the
# organization and project the gateway's key belongs to.
_NOT_RETURNED = _HOP_BY_HOP | {
    "set-cookie",
    "date",
    "server",
    "alt-svc",
    "strict-transport-security",
    "openai-organization",
    "openai-project",
    "anthropic-organization-id",
}
# A compressed answer is decompressed to be checked for the key; its length and coding no longer hold.
_NOT_RETURNED_DECODED = _NOT_RETURNED | {"content-encoding", "content-length"}
_DECODED = frozenset({b"gzip", b"deflate", b"br", b"zstd"})  # the codings the HTTP client decodes
_IDENTITY = {"Accept-Encoding": "identity"}


class ProxyEndpoint:
    def __init__(
        self,
        settings: Settings,
        adapters: Mapping[str, Adapter],
        http: HttpClient,
        limits: Limits | Unlimited = UNLIMITED,
    ) -> None:
        self.settings = settings
        self.limits = limits
        # A proxied request names no model: the limits see the provider, as "<provider>/*".
        self.limited = {pid: {"model": f"{pid}/*"} for pid in settings.providers}
        self.adapters = adapters
        self.http = http
        # Per provider, built once: the headers the proxy injects, and the caller's it drops (those
        # above, the gateway's routing header, and any the injected ones replace).
        not_forwarded = _NOT_FORWARDED | {settings.routing_header_name.lower()}
        self.injected = {pid: {**a.proxy_headers(), **_IDENTITY} for pid, a in adapters.items()}
        # The path of each provider's URL (/v1, /openai/v1, /client/v4/accounts/<id>/ai, or none).
        self.base_paths = {pid: urlsplit(a.provider.url).path.rstrip("/") for pid, a in adapters.items()}
        dropped = {pid: not_forwarded | {name.lower() for name in injected} for pid, injected in self.injected.items()}
        # Which header names pass each way, decided once per spelling seen.
        self.forwarded = {pid: _Names(_forwarded(names)) for pid, names in dropped.items()}
        self.returned = _Names(lambda name: name not in _NOT_RETURNED)
        self.returned_decoded = _Names(lambda name: name not in _NOT_RETURNED_DECODED)
        # Waiting for headers may mean waiting for a whole non-streaming completion.
        self.timeouts = Timeouts(
            connect=settings.client_response_header_timeout,
            headers=settings.upstream_timeout or None,
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
        current().provider = provider.id
        # The caller's request limits, global and the provider's ("<provider>/*"); no tokens.
        await self.limits.admit(request.scope, self.limited[provider.id], 0, provider.id, "*")
        url = _joined(provider.origin, self.base_paths[provider.id], _upstream_path(request)) + _query(request)
        limit = self.settings.server_max_request_body_size
        check_declared_length(request, limit)
        adapter = self.adapters[provider.id]
        headers = _forwarded_headers(request.headers.raw, self.forwarded[provider.id], self.injected[provider.id])
        has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
        body: bytes | AsyncIterator[bytes] | None = None
        upload = None
        if has_body:
            # A body that came whole in its first message (most do) is sent as it is: streaming it
            # would cost two generators, an event and aiohttp's iterable payload on every request.
            first = await request.receive()
            whole = first.get("body", b"")
            if first["type"] == "http.request" and not first.get("more_body") and len(whole) <= limit:
                body = whole
            else:  # the rest is streamed on, the first message with it
                request = Request(request.scope, _replaying(first, request.receive))
                upload = Upload(stream_body(request, limit))
                body = upload.body
        try:
            upstream = await until_disconnect(
                request,
                self.http.request(
                    request.method,
                    url,
                    headers=headers,
                    body=body,
                    timeouts=self.timeouts,
                    raw=True,
                    redactor=adapter.redactor,
                ),
                watch_after=None if upload is None else upload.done,
            )
        except UpstreamError:
            # The client's streamed body failed (too large, or the client left): that is the cause.
            if upload is not None and upload.error is not None:
                raise upload.error from None
            raise
        response_headers = self._answer_headers(upstream)
        return RelayResponse(
            upstream.iter_chunks(), close=upstream.aclose, status=upstream.status, headers=response_headers
        )

    def _answer_headers(self, upstream: UpstreamResponse) -> list[tuple[bytes, bytes]]:
        """The upstream's headers for the caller. A body the HTTP client decoded loses its coding and
        length; one it could not decode cannot be checked for the key, and is refused."""
        raw = upstream.raw_headers
        codings = [v.strip().lower() for k, v in raw if k.lower() == b"content-encoding"]
        if not codings or codings == [b"identity"]:
            return self.returned.kept(raw)
        if len(codings) > 1 or codings[0] not in _DECODED:
            upstream.close()
            coding = b", ".join(codings).decode("latin-1")
            raise UpstreamUnreachable(
                f"The provider answered with Content-Encoding '{coding}', which the gateway cannot decode to "
                "check it for credentials; the proxy asks for uncompressed answers (Accept-Encoding: identity)."
            )
        return self.returned_decoded.kept(raw)


def _replaying(first: Message, receive: Receive) -> Receive:
    """``receive``, giving ``first`` (already received) again before the messages after it."""
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


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


def _joined(origin: str, base_path: str, rest: str) -> str:
    """The upstream URL of ``rest`` (the raw path after /proxy/<provider>/): under the host when it
    already starts with the base URL's path (whole segments), or with another version of it
    (``v1/models`` for Gemini's ``/v1beta``: its SDKs choose the version); else under the base URL."""
    path = "/" + rest
    if not base_path or path == base_path or path.startswith(base_path + "/"):
        return origin + path
    parent, _, last = base_path.rpartition("/")
    if _VERSION.fullmatch(last) and path.startswith(parent + "/"):
        segment = path[len(parent) + 1 :].partition("/")[0]
        if _VERSION.fullmatch(segment):
            return origin + path
    return origin + base_path + path


_VERSION = re.compile(r"v[0-9]+[a-z0-9]*")  # v1, v1beta, v2alpha1: an API version segment


def _query(request: Request) -> str:
    """The caller's query string minus its credentials; the rest byte-exact and in order."""
    query = request.scope.get("query_string", b"")
    if not query:
        return ""
    kept = [
        p for p in query.decode("latin-1").split("&") if unquote_plus(p.partition("=")[0]).lower() not in _QUERY_SECRETS
    ]
    return "?" + "&".join(kept) if kept else ""


class _Names:
    """Which header names pass ``kept_name`` (asked of a name in lower case), decided once per
    spelling seen: a memo, bounded since a caller may send ever new names."""

    __slots__ = ("kept_name", "memo")

    def __init__(self, kept_name: Callable[[str], bool]) -> None:
        self.kept_name = kept_name
        self.memo: dict[bytes, bool] = {}

    def kept(self, raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The headers that pass (repeated ones kept, in order), minus those the Connection header
        names (hop-by-hop too)."""
        memo = self.memo
        headers: list[tuple[bytes, bytes]] = []
        listed: set[bytes] | None = None
        for key, value in raw:
            kept = memo.get(key)
            if kept is None:
                kept = self.kept_name(key.decode("latin-1").lower())
                if len(memo) < _MEMO_SIZE:
                    memo[key] = kept
            if kept:
                headers.append((key, value))
            elif key.lower() == b"connection":
                tokens = {token.strip().lower() for token in value.split(b",")}
                listed = tokens if listed is None else listed | tokens
        if listed:
            headers = [(k, v) for k, v in headers if k.lower() not in listed]
        return headers


_MEMO_SIZE = 512  # spellings remembered per memo; past it, new ones are decided on every request


def _forwarded_headers(
    raw: Iterable[tuple[bytes, bytes]], forwarded: _Names, injected: Mapping[str, str]
) -> list[tuple[str, str]]:
    """The caller's headers that go to the provider, with the provider's injected ones."""
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in forwarded.kept(raw)]
    headers.extend(injected.items())
    return headers


def _forwarded(dropped: frozenset[str]) -> Callable[[str], bool]:
    """Whether the caller's header of a (lower-case) name goes to the provider."""

    def kept(name: str) -> bool:
        return (
            name not in dropped
            and not name.startswith(_NOT_FORWARDED_PREFIXES)
            and not name.endswith(_NOT_FORWARDED_SUFFIXES)
        )

    return kept
