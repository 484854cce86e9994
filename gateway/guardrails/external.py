"""``ExternalDetector``: GUARDRAILS_EXTERNAL_URL, an HTTP service asked for a decision.

It is POSTed the same input document as the policies, as JSON, and answers a decision
(``{"action": ..., "message": ...}``); anything else (a failure, a timeout, another shape) is an
``EvaluationError``, which GUARDRAILS_FAIL_MODE turns into a refusal or a pass.
"""

from __future__ import annotations

from typing import Any

import orjson

from providers import HttpClient, Timeouts
from providers.errors import UpstreamError

from .policy import Decision, EvaluationError

__all__ = ["ExternalDetector"]

MAX_ANSWER_BYTES = 1 << 20
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class ExternalDetector:
    def __init__(self, url: str, http: HttpClient, timeout: float) -> None:
        self.url = url
        self.http = http
        self.timeouts = Timeouts(connect=timeout, total=timeout)

    async def decide(self, document: dict[str, Any]) -> Decision:
        try:
            response = await self.http.request(
                "POST", self.url, headers=_HEADERS, body=orjson.dumps(document), timeouts=self.timeouts
            )
            try:
                body = await response.read()
            finally:
                response.close()
        except UpstreamError as exc:
            raise EvaluationError(f"the external detector failed: {exc.message}") from None
        if response.status >= 400:
            raise EvaluationError(f"the external detector answered HTTP {response.status}")
        if len(body) > MAX_ANSWER_BYTES:
            raise EvaluationError("the external detector's answer is larger than 1 MiB")
        try:
            return Decision.of(orjson.loads(body))
        except orjson.JSONDecodeError:
            raise EvaluationError("the external detector's answer is not JSON") from None
