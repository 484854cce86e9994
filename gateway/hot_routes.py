"""``HotRoutes``: the busiest routes served from the innermost middleware, past Starlette's router.

Below the gateway's middleware, Starlette runs each request through an exception middleware, the
router (every route's pattern tried in turn), the route, and a second exception wrapper, building a
``Request`` twice and wrapping ``send`` at every step: about a tenth of a passthrough request's time,
profiled under load. For the few routes that carry the traffic (chat, the proxy), this middleware
does what those layers do, once: it matches the route with the route's own ``matches`` (so path
parameters and methods are the router's), puts ``endpoint`` and ``path_params`` in the scope as the
router would, calls the endpoint, and renders its errors with the app's exception handlers. Other
requests, and a hot route's wrong method (405), go on to the router.

A route is hot only if the router would reach it first: every route listed before it must have a
fixed path its pattern does not match (checked here, once).

    middleware.append(Middleware(HotRoutes, routes=routes, hot=(chat.handle,), handlers=exception_handlers))
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["HotRoutes"]

Handler = Callable[[Request, Exception], Any]


class HotRoutes:
    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Sequence[BaseRoute],
        hot: Collection[Callable[..., Any]],
        handlers: Mapping[type[BaseException], Handler],
    ) -> None:
        self.app = app
        reached = _first_reached(routes, hot)
        # A path without parameters is found by a dict lookup (for the methods its route serves);
        # the rest, and any request under a root path, by the routes' own patterns, in order.
        self.fixed = {
            route.path: (route.endpoint, frozenset(route.methods or ()))
            for route in reached
            if not route.param_convertors
        }
        self.routes = tuple(reached)
        # Starlette gives Exception's handler to its outermost middleware (a 500, then re-raised to
        # the server): the same here, by leaving it out.
        self.handlers = {kind: handler for kind, handler in handlers.items() if kind is not Exception}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            fixed = None if scope.get("root_path") else self.fixed.get(scope["path"])
            if fixed is not None and scope["method"] in fixed[1]:
                params = scope.get("path_params")
                scope["endpoint"], scope["path_params"] = fixed[0], dict(params) if params else {}
                await self._serve(fixed[0], scope, receive, send)
                return
            for route in self.routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    await self._serve(route.endpoint, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(self, endpoint: Callable[..., Any], scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
            exc.__traceback__ = None  # an error instance reused across requests gathers no tracebacks
        try:
            await response(scope, receive, send)
        except Exception as exc:
            # As Starlette's wrapper says of an error it would handle once the answer has begun.
            if self._handler(exc) is not None:
                raise RuntimeError("Caught handled exception, but response already started.") from exc
            raise

    def _handler(self, exc: Exception) -> Handler | None:
        for kind in type(exc).__mro__:
            handler = self.handlers.get(kind)
            if handler is not None:
                return handler
        return None


def _first_reached(routes: Sequence[BaseRoute], hot: Collection[Callable[..., Any]]) -> list[Route]:
    """The hot routes no earlier route can take a request from."""
    found: list[Route] = []
    fixed: list[str] = []  # the paths of the routes before, all without parameters so far
    for route in routes:
        if not isinstance(route, Route):
            break
        if route.endpoint in hot and not any(route.path_regex.match(path) for path in fixed):
            found.append(route)
        if route.param_convertors:
            break  # a pattern before the rest: the router might give it their requests
        fixed.append(route.path)
    return found
