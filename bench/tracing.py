"""What tracing costs: ``python -m bench.tracing`` (loopback only, about two minutes).

1. On the request's own path, in-process: the tracing hooks of one chat request (server span begun
   and ended, the client span around the adapter call, its traceparent, the answer's attributes),
   timed against the same calls with tracing off, over a stub adapter answering from memory.
2. End to end: the gateway (one worker) in front of the benchmark's nginx mock, under wrk, tracing
   off and on (spans exported to a collector stand-in in another process that accepts and drops
   them): requests/s, latency, and the gateway process's CPU per request, export thread included.

Environment: BENCH_DURATION (seconds per wrk run, 6), BENCH_ITERATIONS (in-process requests, 20000).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.__main__ import CHAT_BODY, ROOT, Bench, Watch, cpu_steal, free_port, wait_http, wrk
from bench.mocks import CHAT_JSON

DURATION = int(os.environ.get("BENCH_DURATION", "6"))
ITERATIONS = int(os.environ.get("BENCH_ITERATIONS", "20000"))

# A collector stand-in: accepts OTLP/HTTP posts and drops them (its CPU is not the gateway's).
COLLECTOR = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


async def in_process(iterations: int, collector: str) -> dict[str, tuple[float, float]]:
    """Per chat request, in µs: (the hooks on the request's path, that plus exporting its spans),
    for tracing off, on, and on with every trace sampled out."""
    from gateway import Settings
    from gateway.telemetry import Telemetry
    from gateway.telemetry.exchange import CURRENT, Exchange
    from providers import Adapter, ChatRequest, EventStream
    from providers.base import AdapterOptions, AdapterTimeouts
    from providers.transport import HttpClient, Timeouts

    class Memory(Adapter):
        """Answers from memory: what is timed is everything around the upstream call."""

        async def chat(self, request: ChatRequest) -> bytes:
            return CHAT_JSON.encode()

        async def stream(self, request: ChatRequest) -> EventStream:
            raise NotImplementedError

    headers = [(b"host", b"gw"), (b"user-agent", b"bench/1.0"), (b"content-type", b"application/json")]
    provider = Settings.load({"OPENAI_API_KEY": "bench-key"}).providers["openai"]
    timeouts = Timeouts()
    options = AdapterOptions(AdapterTimeouts(timeouts, timeouts, timeouts))
    payload = {"model": "m", "messages": [{"role": "user", "content": "Say hello."}], "temperature": 0.2}
    batch = 250  # requests between flushes: 500 spans, below the batch queue's 2048 (nothing dropped)
    results = {}
    for label, sampler in (("off", None), ("on", "parentbased_always_on"), ("on, sampled out", "always_off")):
        env = {} if sampler is None else {"OTEL_EXPORTER_OTLP_ENDPOINT": collector}
        os.environ["OTEL_TRACES_SAMPLER"] = sampler or "parentbased_always_on"  # read by the SDK, as in a deployment
        telemetry = Telemetry.from_settings(Settings.load({"OPENAI_API_KEY": "k", "SERVER_ACCESS_LOG": "false", **env}))
        adapter = telemetry.wrap_adapters({"openai": Memory(provider, HttpClient(), options)})["openai"]
        flush = getattr(telemetry.sinks[0], "provider", None) if telemetry.sinks else None
        best_path = best_total = float("inf")
        for _ in range(max(iterations // batch // 4, 1)):  # rounds; the best one counts (the machine is shared)
            path = 0.0
            started = time.perf_counter()
            for _ in range(batch):
                begun = time.perf_counter()
                exchange = Exchange(telemetry, "req-1", "POST", "/v1/chat/completions", "127.0.0.1", headers)
                token = CURRENT.set(exchange)
                telemetry.begin(exchange)
                exchange.answered(await adapter.chat(ChatRequest(payload, "m")))
                exchange.status, exchange.route = 200, "/v1/chat/completions"
                telemetry.end(exchange)
                CURRENT.reset(token)
                path += time.perf_counter() - begun
            if flush is not None:
                flush.force_flush()  # the export, here in this thread, so it is timed too
            best_total = min(best_total, (time.perf_counter() - started) / batch)
            best_path = min(best_path, path / batch)
        await telemetry.close()
        results[label] = (best_path * 1e6, best_total * 1e6)
    os.environ.pop("OTEL_TRACES_SAMPLER")
    return results


def end_to_end(bench: Bench, collector: str) -> list[dict[str, Any]]:
    rows = []
    mock = f"http://127.0.0.1:{bench.mock}"
    chat = CHAT_BODY % ("openai/m", "")
    stream = CHAT_BODY % ("openai_sse/m", ', "stream": true, "stream_options": {"include_usage": true}')
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector}
    ratio = {**on, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    for label, extra in (("off", {}), ("on", on), ("10%", ratio)):
        port = free_port()
        env = {
            "PROVIDERS_REGISTRY": str(ROOT / "bench" / "registry.yaml"),
            "SERVER_PORT": str(port),
            "SERVER_WORKERS": "1",
            "SERVER_ACCESS_LOG": "false",
            "OPENAI_API_URL": f"{mock}/openai/v1",
            "OPENAI_SSE_API_URL": f"{mock}/openai-sse/v1",
            "OPENAI_API_KEY": "bench-key",
            "OPENAI_SSE_API_KEY": "bench-key",
            **extra,
        }
        process = bench.spawn([sys.executable, "-m", "gateway", "serve"], env)
        wait_http(port)
        watch = Watch(process.pid)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        wrk(url, chat, 8, 2, bench.dir)  # warm-up
        for scenario, body, concurrency in (("JSON", chat, 1), ("JSON", chat, 32), ("stream", stream, 32)):
            steal, total = cpu_steal()
            cpu = watch.cpu()
            result = wrk(url, body, concurrency, DURATION, bench.dir)
            steal_after, total_after = cpu_steal()
            row = {
                "tracing": label,
                "scenario": scenario,
                "concurrency": concurrency,
                **result,
                "cpu_us_per_request": (watch.cpu() - cpu) * 1e6 / max(result["requests"], 1),
                "steal_pct": round((steal_after - steal) * 100 / max(total_after - total, 1), 1),
            }
            rows.append(row)
            print(
                f"  tracing {label:<4} {scenario:<6} c={concurrency:<3} {row['rps']:>8.0f} req/s  "
                f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  "
                f"CPU {row['cpu_us_per_request']:6.0f} µs/request  errors {row['errors']}",
                flush=True,
            )
        process.terminate()
        process.wait(30)
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        bench = Bench(workdir)
        port = free_port()
        bench.processes.append(
            subprocess.Popen([sys.executable, "-c", COLLECTOR, str(port)], stderr=subprocess.DEVNULL)
        )
        collector = f"http://127.0.0.1:{port}"
        try:
            bench.start_mocks()
            print("in-process, per chat request (best of 5 rounds):", flush=True)
            micro = asyncio.run(in_process(ITERATIONS, collector))
            for label, (path, total) in micro.items():
                print(f"  tracing {label:<16} {path:7.1f} µs on the path, {total:7.1f} µs with the export", flush=True)
            print("end to end (one worker, nginx mock, wrk):", flush=True)
            end_to_end(bench, collector)
        finally:
            bench.stop()


if __name__ == "__main__":
    main()
