"""A provider's rate-limit headers, in OpenAI's names, for relaying with its error answer.

When a provider refuses (429, or any error once retries and fallbacks are spent), the caller is
told what it said about its limits: OpenAI's six ``x-ratelimit-*`` headers as they came (most
OpenAI-compatible providers send the same names), or Anthropic's ``anthropic-ratelimit-*``
translated (its reset is a moment, OpenAI's a duration).

>>> rate_limit_headers({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"})
{'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1s'}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime

__all__ = ["rate_limit_headers"]

_MEASURES = ("requests", "tokens")
_OPENAI = tuple(f"x-ratelimit-{what}-{m}" for m in _MEASURES for what in ("limit", "remaining", "reset"))


def rate_limit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """OpenAI's rate-limit headers out of an answer's ``headers`` (any case)."""
    headers = {k.lower(): v for k, v in headers.items()}  # an error answer's few headers
    found = {name: headers[name] for name in _OPENAI if name in headers}
    if found:
        return found
    for measure in _MEASURES:
        for what in ("limit", "remaining"):
            if value := headers.get(f"anthropic-ratelimit-{measure}-{what}"):
                found[f"x-ratelimit-{what}-{measure}"] = value
        if moment := headers.get(f"anthropic-ratelimit-{measure}-reset"):
            try:
                at = datetime.fromisoformat(moment.replace("Z", "+00:00"))
            except ValueError:
                continue
            seconds = (at - datetime.now(UTC)).total_seconds()
            found[f"x-ratelimit-reset-{measure}"] = f"{max(0, math.ceil(seconds))}s"
    return found
