"""Anthropic's Messages API as a front door: ``POST /v1/messages`` and ``/v1/messages/count_tokens``
for every provider.

    endpoint   the routes: parse, route (provider/model as for chat), policy and vision gate, then
               relay natively or translate
    native     the relay to a provider that speaks Messages itself (Anthropic): bytes through
    request    a Messages request checked, and translated to an OpenAI chat request
    answer     an OpenAI chat completion translated to a Message
    stream     OpenAI chat chunks translated to Messages stream events
    tokens     the input-token estimate of count_tokens where the provider has no count

Errors on these routes are the gateway's one error tree, rendered in Anthropic's envelope
(``gateway.errors.anthropic_envelope``) because of their path.

    messages = MessagesEndpoint(settings, adapters, policy, runner, NativeRelay(http, adapters, timeouts))
    Route("/v1/messages", messages.create, methods=["POST"])
"""

from .endpoint import MessagesEndpoint
from .native import NativeRelay

__all__ = ["MessagesEndpoint", "NativeRelay"]
