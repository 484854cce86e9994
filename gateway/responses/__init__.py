"""OpenAI's Responses API (``POST /v1/responses``) for every provider.

    endpoint   the route: parse, route (``provider/model`` or ``?provider=``), authorize, then
               relay or translate
    relay      providers whose registry entry lists ``responses`` (OpenAI, Groq, Ollama): the
               request relayed with the provider's model name and credential, the answer and its
               events byte for byte
    request    the others: a Responses request as a chat request (input items, instructions,
               function tools, tool_choice, text.format, reasoning), refusing what chat cannot say
    answer     a chat completion as a Response object (output items, status, usage)
    stream     a chat stream as the Responses stream's typed, numbered events
    usage      usage in the Responses shape, from chat's and from a relayed answer

The translated path calls the provider's chat adapter through the MCP runner, as the chat route
does, so the gateway's MCP tools are offered and run there too. The gateway keeps no state:
``previous_response_id``, ``conversation``, ``background`` and stored prompts are refused for
translated providers, and nothing is stored (a Response says ``store: false``).
"""

from .endpoint import ResponsesEndpoint

__all__ = ["ResponsesEndpoint"]
