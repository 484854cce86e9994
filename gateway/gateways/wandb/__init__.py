"""Weights & Biases authentication of a gateway (``weightsAndBiasesAuth``): who calls, and what they used.

    verifier     WandbVerifier: a caller's W&B API key, checked with the viewer query of the
                 gateway's W&B server (basic auth ``api:<key>``); positive answers cached briefly
                 by the key's hash; 401 for a bad key, 503 when the server cannot say
    middleware   WandbAuthMiddleware: the per-gateway ASGI middleware around a verifier, with the
                 header rules of ``gateway.auth`` (Bearer; ``x-api-key`` on Anthropic's routes)
    reporter     UsageReporter: each request's token usage, batched to the server with the
                 gateway's own key (``enableUsageReports``); NoUsageReports when off

The runtime builds one of each per W&B-authenticated gateway:

    verifier = WandbVerifier(spec.wandb, http)
    await verifier.check()                                   # spec.GatewayUnavailable if not
    app = WandbAuthMiddleware(app, verifier=verifier)
    reports = usage_reporter(spec.wandb, spec.id, http, dropped=metrics.wandb_usage_dropped)
"""

from __future__ import annotations

from .middleware import WandbAuthMiddleware
from .reporter import USAGE_PATH, DropCounter, NoUsageReports, UsageReporter, usage_reporter
from .verifier import MAX_KEY_LENGTH, WandbVerifier

__all__ = [
    "MAX_KEY_LENGTH",
    "USAGE_PATH",
    "DropCounter",
    "NoUsageReports",
    "UsageReporter",
    "WandbAuthMiddleware",
    "WandbVerifier",
    "usage_reporter",
]
