"""Provider adapters: one module per wire protocol, chosen by the registry's ``adapter`` field.

This package never imports ``gateway``; the gateway hands each adapter a resolved ``Provider``, the
shared ``HttpClient`` and its timeouts.
"""

from __future__ import annotations

from .anthropic import AnthropicAdapter
from .base import Adapter, AdapterOptions, AdapterTimeouts, ChatRequest, EventStream, ModelInfo
from .cohere import CohereAdapter
from .embeddings import EmbeddingRequest
from .google import GoogleAdapter
from .openai_compatible import OpenAICompatibleAdapter
from .registry import Provider, ProviderSpec, RegistryError, load_registry
from .transport import ClientOptions, HttpClient, Timeouts

__all__ = [
    "ADAPTERS",
    "Adapter",
    "AdapterOptions",
    "AdapterTimeouts",
    "ChatRequest",
    "ClientOptions",
    "EmbeddingRequest",
    "EventStream",
    "HttpClient",
    "ModelInfo",
    "Provider",
    "ProviderSpec",
    "RegistryError",
    "Timeouts",
    "build_adapter",
    "load_registry",
]

ADAPTERS: dict[str, type[Adapter]] = {
    "openai": OpenAICompatibleAdapter,
    "anthropic": AnthropicAdapter,
    "google": GoogleAdapter,
    "cohere": CohereAdapter,
}


def build_adapter(provider: Provider, http: HttpClient, options: AdapterOptions) -> Adapter:
    """The adapter the registry names for ``provider``."""
    return ADAPTERS[provider.spec.adapter](provider, http, options)
