"""``StartupError``: a part of the gateway that cannot start for a reason the operator must fix
(its store unreachable, its port taken), reported as one line instead of a traceback.

uvicorn logs whatever message the application's lifespan sends with ``lifespan.startup.failed``;
Starlette sends the whole traceback there. ``report_startup`` runs the application's lifespan and,
when it fails with a ``StartupError``, sends the error's own sentence in the traceback's place
(any other failure keeps its traceback: it is a bug to read).

    raise StartupError("GATEWAYS_DATABASE_URL=postgresql://app:***@db/gw does not answer: start it.")
    await report_startup(app, scope, receive, send)      # for scope["type"] == "lifespan"
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["StartupError", "report_startup"]


class StartupError(Exception):
    """Start-up stops: the message is a full sentence naming the setting and what to do."""


async def report_startup(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    held: list[Message] = []

    async def sending(message: Message) -> None:
        if message["type"] == "lifespan.startup.failed":
            held.append(message)  # sent once the failure's kind is known
            return
        await send(message)

    try:
        await app(scope, receive, sending)
    except StartupError as exc:
        await send({"type": "lifespan.startup.failed", "message": f"polyrelay cannot start: {exc}"})
        return
    except BaseException:
        for message in held:
            await send(message)
        raise
    for message in held:
        await send(message)
