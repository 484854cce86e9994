"""A real OIDC issuer for the tests: discovery and JWKS over HTTP on loopback, and tokens signed
with keys generated here (RSA and EC), which can be rotated."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

AUDIENCE = "polyrelay-tests"


class Issuer:
    def __init__(self) -> None:
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig", "alg": "RS256"})
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig", "alg": "ES256"})
        self.published = [self.rsa, self.ec]
        self.jwks_fetches = 0
        self.down = False
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

    async def _discovery(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503, text="down for maintenance")
        return web.json_response(
            {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/jwks",
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_fetches += 1
        return web.json_response(KeySet(self.published).as_dict(private=False))

    def token(
        self, key: Any = None, *, alg: str | None = None, header: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        """A token for the tests' audience, valid for a minute, unless the arguments say otherwise."""
        key = key or self.rsa
        now = int(time.time())
        payload = {"iss": self.url, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 60, **claims}
        payload = {k: v for k, v in payload.items() if v is not None}
        algorithm = alg or ("ES256" if isinstance(key, ECKey) else "RS256")
        return jwt.encode({"alg": algorithm, "kid": key.kid, **(header or {})}, payload, key, algorithms=[algorithm])

    def rotate(self) -> RSAKey:
        """Publish a new RSA key (keeping the EC one); the old RSA key is withdrawn."""
        new = RSAKey.generate_key(2048, parameters={"kid": f"rsa-{len(self.published) + 1}", "use": "sig"})
        self.published = [new, self.ec]
        return new
