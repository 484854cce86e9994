"""What the metrics sink costs per request: ``python -m bench.sink_cost`` (a few seconds).

Times ``begin`` + ``end`` of ``Metrics`` on realistic exchanges (a chat JSON answer with its usage,
a stream with time to first token, a /health probe), in microseconds per request. "with usage
read" includes reading the tokens from the answer's bytes, which the request log shares when it
is on (the exchange reads them once); "usage already read" is the metrics' own share. With
PROMETHEUS_MULTIPROC_DIR set to an empty directory, it measures the multi-worker mode (values
written to memory-mapped files).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.telemetry.exchange import Exchange
from gateway.telemetry.metrics import Metrics

ANSWER = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-2024-08-06",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"' + b"word " * 60 + b'"},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":120,"completion_tokens":60,"total_tokens":180,'
    b'"prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":0}}}'
)
LAST_CHUNKS = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4o-2024-08-06",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4o-2024-08-06","choices":[],'
    b'"usage":{"prompt_tokens":120,"completion_tokens":60,"total_tokens":180}}\n\n',
)


def chat(stream: bool) -> Exchange:
    exchange = Exchange(None, "0123456789abcdef", "POST", "/v1/chat/completions", "127.0.0.1")
    exchange.route, exchange.status = "/v1/chat/completions", 200
    exchange.operation, exchange.provider, exchange.model = "chat", "openai", "gpt-4o"
    exchange.overhead = 0.0004
    exchange.ended = exchange.started + 0.8
    if stream:
        exchange.stream, exchange.outcome = True, "complete"
        exchange.first_token = exchange.started + 0.2
        exchange.tail = LAST_CHUNKS
    else:
        exchange.tail = (ANSWER,)
    return exchange


def health() -> Exchange:
    exchange = Exchange(None, "0123456789abcdef", "GET", "/health", "127.0.0.1")
    exchange.route, exchange.status, exchange.ended = "/health", 200, exchange.started + 0.0001
    return exchange


def per_request_us(metrics: Metrics, exchange: Exchange, reread: bool, rounds: int = 50_000) -> float:
    begin, stream_started, end = metrics.begin, metrics.stream_started, metrics.end
    streaming = exchange.stream
    best = float("inf")
    for _ in range(5):  # CPU time, the best of five: the machine is shared
        started = time.process_time()
        for _ in range(rounds):
            if reread:
                exchange.usage = None
                exchange.response_model = None
            begin(exchange)
            if streaming:
                stream_started(exchange)
            end(exchange)
        best = min(best, time.process_time() - started)
    return best * 1e6 / rounds


def main() -> None:
    metrics = Metrics(provider_names={"openai": "openai"})
    cases: list[tuple[str, Callable[[], Exchange], bool]] = [
        ("chat JSON, with usage read", lambda: chat(False), True),
        ("chat JSON, usage already read", lambda: chat(False), False),
        ("chat stream, with usage read", lambda: chat(True), True),
        ("chat stream, usage already read", lambda: chat(True), False),
        ("GET /health", health, False),
    ]
    for name, make, reread in cases:
        print(f"{name:<34} {per_request_us(metrics, make(), reread):6.2f} us per request")


if __name__ == "__main__":
    main()
