"""A real OIDC issuer for the tests: discovery and JWKS over HTTP on loopback, and tokens signed
with keys generated here (RSA and EC), which can be rotated or withdrawn. It can also misbehave:
be down, fail its JWKS, or answer an oversized document (announced, or streamed without a length)."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web
from joserfc import jws, jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

AUDIENCE = "polyrelay-tests"
OVERSIZED = 2 * 1024 * 1024  # the announced oversized document
STREAM_LIMIT = 64 * 1024 * 1024  # where a streamed one would end, if nobody stopped reading


class Issuer:
    def __init__(self) -> None:
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig", "alg": "RS256"})
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig", "alg": "ES256"})
        self.published = [self.rsa, self.ec]
        self.jwks_fetches = 0
        self.down = False
        self.jwks_down = False
        # Which document ("discovery" or "jwks") is oversized, and how: "announced" (Content-Length) or
        # "streamed" (chunked, up to STREAM_LIMIT); streamed_bytes counts what the client let through.
        self.oversized: tuple[str, str] | None = None
        self.streamed_bytes = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _discovery(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            return web.Response(status=503, text="down for maintenance")
        if self.oversized and self.oversized[0] == "discovery":
            return await self._oversized(request)
        return web.json_response(
            {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/jwks",
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.StreamResponse:
        self.jwks_fetches += 1
        if self.jwks_down:
            return web.Response(status=500, text="internal error")
        if self.oversized and self.oversized[0] == "jwks":
            return await self._oversized(request)
        return web.json_response(KeySet(self.published).as_dict(private=False))

    async def _oversized(self, request: web.Request) -> web.StreamResponse:
        """A JSON object padded past any sane size: 2 MiB announced, or streamed with no length."""
        assert self.oversized is not None
        if self.oversized[1] == "announced":
            padding = "x" * (OVERSIZED - 32)
            return web.Response(body=f'{{"keys": [], "padding": "{padding}"}}', content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            await response.write(b'{"keys": [], "padding": "')
            while self.streamed_bytes < STREAM_LIMIT:
                await response.write(chunk)
                self.streamed_bytes += len(chunk)
            await response.write(b'"}')
        except ConnectionError:
            pass  # the client hung up: what it read is counted
        return response

    def token(
        self, key: Any = None, *, alg: str | None = None, header: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        """A token for the tests' audience, valid for a minute, unless the arguments say otherwise."""
        key = key or self.rsa
        now = int(time.time())
        payload = {"iss": self.url, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 60, **claims}
        payload = {k: v for k, v in payload.items() if v is not None}
        algorithm = alg or ("ES256" if isinstance(key, ECKey) else "RS256")
        protected = {"alg": algorithm, "kid": key.kid, **(header or {})}
        if protected.get("typ", "") is None:  # jwt.encode always writes a typ: sign the JSON ourselves
            del protected["typ"]
            return jws.serialize_compact(protected, json.dumps(payload).encode(), key, algorithms=[algorithm])
        return jwt.encode(protected, payload, key, algorithms=[algorithm])

    def rotate(self) -> RSAKey:
        """Publish a new RSA key (keeping the EC one); the old RSA key is withdrawn."""
        new = RSAKey.generate_key(2048, parameters={"kid": f"rsa-{len(self.published) + 1}", "use": "sig"})
        self.published = [new, self.ec]
        return new

    def withdraw(self, key: Any) -> None:
        """Stop publishing a key: tokens it signs, even with its known kid, must stop verifying."""
        self.published = [k for k in self.published if k.kid != key.kid]
