"""A W&B server for the tests, on loopback: the GraphQL ``viewer`` query as W&B answers it, and
polyrelay's usage endpoint, recording the batches it takes.

Like W&B: credentials are HTTP basic auth with the API key as password (``api:<key>``); no
credentials is the anonymous viewer (200, ``{"data": {"viewer": null}}``); an unknown key is 401
with a GraphQL ``errors`` list; only the fields the query selects are answered, and a field the
``User`` type lacks is a GraphQL error. Switches make it fail: ``graphql_status`` (answer that
status), ``delay`` (answer late), ``down()`` / ``up()`` (nothing listens on its port), and for the
usage endpoint ``usage_failures`` (the next N batches get 500) and ``usage_status``.
"""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

from aiohttp import web

from gateway.gateways.wandb import USAGE_PATH

_SELECTION = re.compile(r"\bviewer\s*\{([^{}]*)\}")
_USER_FIELDS = frozenset({"id", "entity", "username", "email", "name", "admin", "flags"})


class FakeWandb:
    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.graphql_calls = 0
        self.graphql_status: int | None = None
        self.delay = 0.0
        self.usage_failures = 0
        self.usage_status: int | None = None
        self.usage_attempts = 0
        self.batches: list[dict[str, Any]] = []  # the ones taken (2xx)
        self.usage_headers: list[dict[str, str]] = []
        self.seen_authorization: list[str] = []
        self.url = ""
        self.port = 0
        self._runner: web.AppRunner | None = None

    def add_user(self, key: str, entity: str, username: str | None = None) -> None:
        number = len(self.users) + 1
        self.users[key] = {
            "id": base64.b64encode(f"User:{number}".encode()).decode(),
            "entity": entity,
            "username": username or entity,
            "email": f"{entity}@example.com",
            "name": entity.title(),
            "admin": False,
            "flags": "{}",
        }

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/graphql", self._graphql)
        app.router.add_post(USAGE_PATH, self._usage)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def down(self) -> None:
        """Stop listening (connections are refused) until ``up``."""
        await self.stop()

    async def up(self) -> None:
        await self.start()  # on the same port

    def _key(self, request: web.Request) -> str | None:
        """The password of basic credentials; ``None`` without any; ``""`` when malformed."""
        header = request.headers.get("Authorization")
        if header is None:
            return None
        self.seen_authorization.append(header)
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return ""
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return ""
        return password if user == "api" else ""

    async def _graphql(self, request: web.Request) -> web.Response:
        self.graphql_calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.graphql_status is not None:
            return web.Response(status=self.graphql_status, text="<html>bad gateway</html>", content_type="text/html")
        try:
            document = await request.json()
            query = document["query"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"errors": [{"message": "must provide query string"}]}, status=400)
        match = _SELECTION.search(query)
        if match is None:
            return web.json_response({"errors": [{"message": "unsupported query in this fake"}]}, status=400)
        fields = match.group(1).split()
        unknown = [name for name in fields if name not in _USER_FIELDS]
        if unknown:
            message = f'Cannot query field "{unknown[0]}" on type "User".'
            return web.json_response({"errors": [{"message": message}]}, status=422)
        key = self._key(request)
        if key is None:
            return web.json_response({"data": {"viewer": None}})
        user = self.users.get(key)
        if user is None:
            return web.json_response({"errors": [{"message": "user is not logged in"}], "data": None}, status=401)
        return web.json_response({"data": {"viewer": {name: user[name] for name in fields}}})

    async def _usage(self, request: web.Request) -> web.Response:
        self.usage_attempts += 1
        if self._key(request) not in self.users:
            return web.json_response({"errors": ["user is not logged in"]}, status=401)
        if self.usage_failures > 0:
            self.usage_failures -= 1
            return web.Response(status=500, text="internal error")
        if self.usage_status is not None:
            return web.json_response({"errors": ["refused"]}, status=self.usage_status)
        batch = await request.json()
        self.usage_headers.append(dict(request.headers))
        self.batches.append(batch)
        return web.json_response({"accepted": len(batch["records"])})

    @property
    def records(self) -> list[dict[str, Any]]:
        return [record for batch in self.batches for record in batch["records"]]
