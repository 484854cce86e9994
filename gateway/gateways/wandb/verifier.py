"""``WandbVerifier``: a caller's W&B API key, checked against one W&B server's public API.

W&B's SDK and CLI authenticate with HTTP basic auth, user ``api`` and the key as password; the
GraphQL query ``viewer`` (on ``<server_url>/graphql``) answers who the key belongs to. W&B answers
an unknown key with 401 (a GraphQL ``errors`` list in the body) and an anonymous or unknown viewer
with ``{"data": {"viewer": null}}``: both mean the key is not valid. Anything else that is not a
viewer (5xx, 429, a timeout, a connection refused, HTML) means the server cannot say: 503, never a
401, and nothing is cached.

    verifier = WandbVerifier(spec.wandb, http)
    await verifier.check()                  # at apply time: raises spec.GatewayUnavailable
    identity = await verifier.verify(key)   # Identity(subject=<entity>, method="wandb", claims=...)

A positive answer is kept ``ttl`` seconds (60 by default) under the sha256 of the key, never the
key itself, in a bounded LRU; concurrent requests with the same uncached key share one upstream
call. A key that cannot be one (too long, not printable ASCII) is refused before any call.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections import OrderedDict
from typing import Any

import orjson

from providers import HttpClient, Timeouts
from providers.errors import AuthenticationFailed, ServiceUnavailable, UpstreamError

from ...auth import Identity
from ...errors import describe
from ..spec import GatewayUnavailable, WandbAuth

__all__ = ["MAX_KEY_LENGTH", "VIEWER_QUERY", "WandbVerifier", "basic_credentials"]

log = logging.getLogger("polyrelay")

# W&B keys are 40 hex characters, an on-prem prefix and a dash before them, or since 2025
# "wandb_v1_..." (86 characters). Anything far longer is no key: refused without a call.
MAX_KEY_LENGTH = 256
MAX_ANSWER_BYTES = 64 * 1024  # a viewer is a few hundred bytes
VIEWER_QUERY = "query Viewer { viewer { id entity username } }"
_BODY = orjson.dumps({"query": VIEWER_QUERY, "variables": {}})
_WARN_EVERY = 10.0  # seconds between two log lines about the same unreachable server


def basic_credentials(key: str) -> str:
    """The ``Authorization`` value W&B expects for ``key``."""
    return "Basic " + base64.b64encode(b"api:" + key.encode("ascii")).decode("ascii")


class _Invalid(Exception):
    """The server said the key is not valid."""


class _Unavailable(Exception):
    """The server could not say (down, slow, 5xx, an answer that is no viewer)."""


class WandbVerifier:
    """Checks W&B API keys against ``auth.server_url``; one per gateway."""

    def __init__(
        self,
        auth: WandbAuth,
        http: HttpClient,
        *,
        ttl: float = 60.0,
        max_entries: int = 10_000,
        timeout: float = 5.0,
    ) -> None:
        self.server_url = auth.server_url.rstrip("/")
        self.graphql_url = f"{self.server_url}/graphql"
        self.http = http
        self.ttl = ttl
        self.max_entries = max_entries
        self.timeouts = Timeouts(connect=timeout, total=timeout)
        self.upstream_calls = 0  # viewer queries sent (for tests and debugging)
        self._own_key = auth.api_key
        self._reports = auth.enable_usage_reports
        self._cache: OrderedDict[bytes, tuple[float, Identity]] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[Identity]] = {}
        self._warned_at = -_WARN_EVERY

    async def verify(self, key: str) -> Identity:
        """The caller whose key this is; ``AuthenticationFailed`` (401) or ``ServiceUnavailable`` (503)."""
        if len(key) > MAX_KEY_LENGTH:
            raise _refused(f"it is longer than {MAX_KEY_LENGTH} characters")
        if not key.isascii() or not key.isprintable() or " " in key:
            raise _refused("it holds characters other than printable ASCII")
        digest = hashlib.sha256(key.encode("ascii")).digest()
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None:
            if cached[0] > now:
                self._cache.move_to_end(digest)
                return cached[1]
            del self._cache[digest]
        pending = self._pending.get(digest)
        if pending is None:
            pending = self._pending[digest] = asyncio.ensure_future(self._lookup(digest, key))
            pending.add_done_callback(lambda done: self._settled(digest, done))
        # Shielded: a caller that leaves (its client gone) does not cancel the others' answer.
        return await asyncio.shield(pending)

    async def check(self) -> None:
        """That the server answers the viewer query (with the gateway's own key); raises
        ``GatewayUnavailable`` otherwise. The gateway's key matters only for usage reports, so a
        refused key is an error only when they are on."""
        try:
            await self._viewer(self._own_key)
        except _Unavailable as exc:
            raise GatewayUnavailable(
                "AuthServerUnreachable", f"The W&B server at {self.server_url} does not answer: {exc}"
            ) from None
        except _Invalid:
            if self._reports:
                raise GatewayUnavailable(
                    "UsageReportKeyRejected",
                    f"The W&B server at {self.server_url} refuses the gateway's apiKey, which usage "
                    "reports are sent with; set a valid weightsAndBiasesAuth.apiKey.",
                ) from None
            log.info("W&B server %s refuses the gateway's own apiKey (unused: usage reports are off)", self.server_url)

    ping = check

    def _settled(self, digest: bytes, done: asyncio.Future[Identity]) -> None:
        self._pending.pop(digest, None)
        if not done.cancelled():
            done.exception()  # retrieved here: every waiter may have left

    async def _lookup(self, digest: bytes, key: str) -> Identity:
        # The answers name no server: its address is the operator's (the log line has it).
        try:
            viewer = await self._viewer(key)
        except _Invalid:
            raise AuthenticationFailed(
                "The W&B API key is not valid on this gateway's W&B server: send a key from your "
                "W&B user settings as 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
            ) from None
        except _Unavailable as exc:
            now = time.monotonic()
            if now - self._warned_at >= _WARN_EVERY:
                self._warned_at = now
                log.warning("W&B server %s cannot check API keys (%s); answering 503", self.server_url, exc)
            raise ServiceUnavailable(
                "The gateway cannot check W&B API keys now: its W&B server does not answer. Retry shortly.",
                headers={"Retry-After": "5"},
            ) from None
        identity = _identity(viewer)
        self._cache[digest] = (time.monotonic() + self.ttl, identity)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return identity

    async def _viewer(self, key: str) -> dict[str, Any]:
        """The ``viewer`` object for ``key``; ``_Invalid`` or ``_Unavailable``."""
        self.upstream_calls += 1
        headers = {
            "Authorization": basic_credentials(key),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            response = await self.http.request(
                "POST", self.graphql_url, headers=headers, body=_BODY, timeouts=self.timeouts
            )
            try:
                status = response.status
                body = await _read_capped(response) if status in (200, 401, 403) else b""
            finally:
                response.close()
        except UpstreamError as exc:
            raise _Unavailable(describe(exc)) from None
        if status in (401, 403):
            raise _Invalid
        if status != 200:
            raise _Unavailable(f"{self.graphql_url} answered HTTP {status}")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _Unavailable(f"{self.graphql_url} did not answer JSON") from None
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, dict) or "viewer" not in data:
            raise _Unavailable(f"{self.graphql_url} answered no viewer")
        viewer = data["viewer"]
        if viewer is None:  # W&B's answer to an anonymous or unknown caller
            raise _Invalid
        if not isinstance(viewer, dict) or not isinstance(viewer.get("entity"), str) or not viewer["entity"]:
            raise _Unavailable(f"{self.graphql_url} answered a viewer without an entity")
        return viewer


async def _read_capped(response: Any) -> bytes:
    chunks, size = [], 0
    async for chunk in response.iter_chunks():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise _Unavailable(f"the answer is larger than {MAX_ANSWER_BYTES // 1024} KiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _identity(viewer: dict[str, Any]) -> Identity:
    """The viewer's fields that are safe to pass on (no key, no e-mail)."""
    claims = {name: viewer[name] for name in ("entity", "username", "id") if isinstance(viewer.get(name), str)}
    return Identity(viewer["entity"], "wandb", claims=claims)


def _refused(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(f"The W&B API key is not valid: {reason}.", code="invalid_api_key")
