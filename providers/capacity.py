"""A cap on the calls in flight to one provider, for upstreams that cannot take more (a
self-hosted vLLM's batch size, an account's concurrency allowance).

A call takes a slot when it is sent and gives it back when its answer is done with (read to its
end, closed, or a stream finished); one more call than the cap is refused at once with a 503
(``code: upstream_capacity``, ``Retry-After: 1``) rather than queued, so an alias falls back to
its next deployment without waiting, and a caller hears it at once. The count is per process.

    client = CappedClient(http, 8, "vllm")        # under the RetryingClient: a retry's wait holds no slot
    response = await client.request("POST", url, ...)
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from .errors import UpstreamStatusError
from .redact import Redactor
from .transport import Headers, HttpClient, Timeouts, UpstreamResponse

__all__ = ["CappedClient"]

_DEFAULT_TIMEOUTS = Timeouts()


class CappedClient(HttpClient):
    """``HttpClient.request`` with at most ``limit`` answers open at once; shares the wrapped pool."""

    def __init__(self, http: HttpClient, limit: int, name: str, setting: str = "") -> None:
        super().__init__()
        self.http = http
        self.limit = limit
        self.name = name
        self.setting = setting  # the variable that set the cap, for the refusal's message
        self.in_flight = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Headers | None = None,
        body: bytes | AsyncIterable[bytes] | None = None,
        timeouts: Timeouts = _DEFAULT_TIMEOUTS,
        raw: bool = False,
        redactor: Redactor | None = None,
    ) -> UpstreamResponse:
        if self.in_flight >= self.limit:
            raise UpstreamStatusError(
                503,
                f"{self.name}: {self.limit} requests are already in flight to this provider, the gateway's cap "
                f"for it{f' ({self.setting})' if self.setting else ''}. Try again shortly.",
                code="upstream_capacity",
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1
        try:
            response = await self.http.request(
                method, url, headers=headers, body=body, timeouts=timeouts, raw=raw, redactor=redactor
            )
        except BaseException:
            self.in_flight -= 1
            raise
        response.on_done(self._release)
        return response

    def _release(self) -> None:
        self.in_flight -= 1
