"""What the gateways' dispatch costs the default gateway: ``python -m bench.dispatch_cost`` (seconds).

Times one request through ``Dispatch`` to a no-op app against the no-op app called directly, in
nanoseconds of wall time: with no gateway (what GATEWAYS_ENABLED=true costs a deployment that has
none), with gateways that hold extra hosts (the ``Host`` header is then read on every request), and
a request to a gateway (the prefix moved to ``root_path``, the plane's drain put in the scope).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from gateway.gateways.dispatch import Dispatch
from gateway.gateways.runtime import Plane, RoutingTable
from gateway.gateways.spec import GatewaySpec

ROUNDS = 300_000
HEADERS = [
    (b"host", b"127.0.0.1:8080"),
    (b"user-agent", b"OpenAI/Python 1.0"),
    (b"content-type", b"application/json"),
    (b"authorization", b"Bearer sk-..."),
    (b"content-length", b"120"),
]


async def _noop(scope: Any, receive: Any, send: Any) -> None:
    return None


async def _receive() -> dict[str, Any]:
    return {"type": "http.request"}


async def _send(message: Any) -> None:
    return None


def _scope(path: str) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "headers": HEADERS}


async def per_request(app: Any, path: str) -> float:
    scope = _scope(path)
    started = time.perf_counter()
    for _ in range(ROUNDS):
        await app(dict(scope), _receive, _send)
    return (time.perf_counter() - started) / ROUNDS * 1e9


async def main() -> None:
    table = RoutingTable()
    dispatch = Dispatch(_noop, table=table)
    path = "/v1/chat/completions"
    await per_request(_noop, path)  # warm up
    direct = await per_request(_noop, path)
    print(f"no dispatch (GATEWAYS_ENABLED=false): {direct:7.0f} ns per request")
    none = await per_request(dispatch, path)
    print(f"dispatch, no gateway:                 {none:7.0f} ns per request (+{none - direct:.0f} ns)")
    spec = GatewaySpec(id=str(uuid.uuid4()), name="t", organization_id="o", additional_dns=("team.example.com",))
    plane = Plane(spec, _noop, (), 30.0)
    table.by_id, table.by_host = {spec.id: plane}, {"team.example.com": plane}
    hosts = await per_request(dispatch, path)
    print(f"dispatch, gateways with extra hosts:  {hosts:7.0f} ns per request (+{hosts - direct:.0f} ns)")
    routed = await per_request(dispatch, f"/gateways/{spec.id}{path}")
    print(f"a request to a gateway:               {routed:7.0f} ns per request (+{routed - direct:.0f} ns)")


if __name__ == "__main__":
    asyncio.run(main())
