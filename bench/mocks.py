"""The upstreams the benchmark talks to.

``nginx_conf`` writes an nginx configuration answering from memory, at almost no cost:
    /openai/v1/models, /openai/v1/chat/completions     OpenAI JSON
    /openai-sse/v1/chat/completions                    OpenAI SSE (4 content events, usage, [DONE])
    /anthropic/v1/messages, /anthropic-sse/v1/messages Anthropic JSON and SSE
``slow_stream_server`` is the second mock: N SSE chunks with a delay between them, for holding
many concurrent streams (asyncio + uvloop, a few lines of HTTP/1.1).
"""

from __future__ import annotations

import asyncio
import json
import sys

CHAT_JSON = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
    }
)
MODELS_JSON = json.dumps(
    {
        "object": "list",
        "data": [
            {"id": f"bench-model-{i}", "object": "model", "created": 1700000000, "owned_by": "bench"} for i in range(20)
        ],
    }
)


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        chunk["usage"] = usage
    return "data: " + json.dumps(chunk) + "\n\n"


CHAT_SSE = (
    "".join(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "Hello"}),
            _chunk({"content": " there"}),
            _chunk({"content": "!"}),
            _chunk({}, "stop"),
            _chunk({}, usage={"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}),
        ]
    )
    + "data: [DONE]\n\n"
)

ANTHROPIC_JSON = json.dumps(
    {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "claude-bench",
        "content": [{"type": "text", "text": "Hello! How can I help you today?"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 9, "cache_read_input_tokens": 0},
    }
)


def _event(data: dict) -> str:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n"


ANTHROPIC_SSE = "".join(
    [
        _event(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_bench",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-bench",
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": 9, "output_tokens": 1},
                },
            }
        ),
        _event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        _event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
        _event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there!"}}),
        _event({"type": "content_block_stop", "index": 0}),
        _event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 3},
            }
        ),
        _event({"type": "message_stop"}),
    ]
)


def _literal(text: str) -> str:
    """An nginx string literal (real newlines are allowed inside quotes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def nginx_conf(directory: str, port: int) -> str:
    def location(path: str, body: str, content_type: str) -> str:
        return f"""
    location = {path} {{
      default_type {content_type};
      return 200 {_literal(body)};
    }}"""

    return f"""
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log crit;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_body_temp_path {directory}/body;
  proxy_temp_path {directory}/proxy;
  fastcgi_temp_path {directory}/fastcgi;
  uwsgi_temp_path {directory}/uwsgi;
  scgi_temp_path {directory}/scgi;
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    {location("/openai/v1/models", MODELS_JSON, "application/json")}
    {location("/openai/v1/chat/completions", CHAT_JSON, "application/json")}
    {location("/openai-sse/v1/chat/completions", CHAT_SSE, "text/event-stream")}
    {location("/anthropic/v1/messages", ANTHROPIC_JSON, "application/json")}
    {location("/anthropic-sse/v1/messages", ANTHROPIC_SSE, "text/event-stream")}
  }}
}}
"""


class SlowStream(asyncio.Protocol):
    """Answers any request with ``chunks`` SSE chunks, ``delay`` seconds apart, then [DONE]."""

    chunks = 20
    delay = 0.05

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""
        self.task: asyncio.Task[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep or self.task is not None:
            return
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if len(rest) >= length:
            self.buffer = rest[length:]
            self.task = asyncio.get_running_loop().create_task(self.answer())

    async def answer(self) -> None:
        write = self.transport.write  # type: ignore[attr-defined]
        write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(self.chunks):
            await asyncio.sleep(self.delay)
            event = _chunk({"content": f"t{i} "}).encode()
            write(b"%x\r\n%s\r\n" % (len(event), event))
        done = _chunk({}, "stop").encode() + b"data: [DONE]\n\n"
        write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
        self.task = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None:
            self.task.cancel()


async def slow_stream_server(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(SlowStream, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(slow_stream_server(int(sys.argv[1])))
