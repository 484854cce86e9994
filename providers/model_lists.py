"""Reading each provider's native model-list answer, page by page.

A format is a first query plus a ``read`` that turns one decoded page into models and the query of
the next page (``None`` on the last). ``list_models`` drives the pages through any fetch function.

>>> page = {"models": [{"name": "command-r"}], "next_page_token": ""}
>>> FORMATS["cohere"].read(page, "cohere")
([ModelInfo(id='command-r', created=0, owned_by='cohere')], None)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from .errors import UpstreamError

__all__ = ["FORMATS", "ListFormat", "ModelInfo", "list_models"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    created: int
    owned_by: str


MAX_PAGES = 20  # a provider that pages forever must not hold the list hostage
Page = tuple[list[ModelInfo], dict[str, str] | None]


@dataclass(frozen=True)
class ListFormat:
    first_query: dict[str, str]
    read: Callable[[Any, str], Page]


async def list_models(fetch: Callable[[str], Awaitable[Any]], url: str, fmt: ListFormat, owner: str) -> list[ModelInfo]:
    """All pages of ``url`` read with ``fmt``; ``fetch`` returns one page's decoded JSON."""
    models: list[ModelInfo] = []
    query: dict[str, str] | None = fmt.first_query
    for _ in range(MAX_PAGES):
        page_url = url + (("&" if "?" in url else "?") + urlencode(query) if query else "")
        page, query = fmt.read(await fetch(page_url), owner)
        models.extend(page)
        if not query:
            break
    return models


def _items(data: Any, key: str) -> list[dict[str, Any]]:
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise UpstreamError(f"The provider's model list has no '{key}' list.")
    return [item for item in items if isinstance(item, dict)]


def _epoch(value: Any) -> int:
    """Unix seconds from an int or an ISO-8601 / 'YYYY-MM-DD hh:mm:ss' timestamp; 0 if unknown."""
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value:
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return 0
    return 0


def _strip_models_prefix(name: str) -> str:
    return name.removeprefix("models/")


def _openai(data: Any, owner: str) -> Page:
    models = [
        ModelInfo(
            # Google's OpenAI-compatible list names models "models/<id>"; the id is what chat takes.
            id=_strip_models_prefix(str(item["id"])),
            created=_epoch(item.get("created")),
            owned_by=str(item.get("owned_by") or owner),
        )
        for item in _items(data, "data")
        if item.get("id")
    ]
    return models, None


def _anthropic(data: Any, owner: str) -> Page:
    models = [
        ModelInfo(id=str(item["id"]), created=_epoch(item.get("created_at")), owned_by=owner)
        for item in _items(data, "data")
        if item.get("id")
    ]
    more = data.get("has_more") and data.get("last_id")
    return models, {"limit": "1000", "after_id": str(data["last_id"])} if more else None


def _cohere(data: Any, owner: str) -> Page:
    models = [
        ModelInfo(id=str(item["name"]), created=0, owned_by=owner)
        for item in _items(data, "models")
        if item.get("name")
    ]
    token = data.get("next_page_token")
    return models, {"page_size": "1000", "page_token": str(token)} if token else None


def _cloudflare(data: Any, owner: str) -> Page:
    if isinstance(data, dict) and data.get("success") is False:
        errors = data.get("errors") or [{}]
        message = errors[0].get("message") if isinstance(errors[0], dict) else errors[0]
        raise UpstreamError(f"Cloudflare refused to list models: {message or 'no reason given'}.")
    items = _items(data, "result")
    models = [
        ModelInfo(id=str(item["name"]), created=_epoch(item.get("created_at")), owned_by=owner)
        for item in items
        if item.get("name")
    ]
    info = data.get("result_info") or {}
    page, per_page = int(info.get("page") or 1), int(info.get("per_page") or len(items) or 1)
    total = info.get("total_count")
    more = len(items) >= per_page and (total is None or page * per_page < int(total))
    return models, {"per_page": str(per_page), "page": str(page + 1)} if more and items else None


def _google(data: Any, owner: str) -> Page:
    models = [
        ModelInfo(id=_strip_models_prefix(str(item["name"])), created=0, owned_by=owner)
        for item in _items(data, "models")
        if item.get("name")
    ]
    token = data.get("nextPageToken")
    return models, {"pageSize": "1000", "pageToken": str(token)} if token else None


FORMATS: dict[str, ListFormat] = {
    "openai": ListFormat({}, _openai),
    "anthropic": ListFormat({"limit": "1000"}, _anthropic),
    "cohere": ListFormat({"page_size": "1000"}, _cohere),
    "cloudflare": ListFormat({"per_page": "1000"}, _cloudflare),
    "google": ListFormat({"pageSize": "1000"}, _google),
}
