"""The benchmark: ``make bench`` (or ``python -m bench``). Loopback only, about ten minutes.

Every scenario runs against three targets in the same run, in interleaved rounds (the order turns
each round; medians reported): the mock directly, the raw-ASGI relay (``bench.raw_relay``: the same
server and HTTP client with no framework, the ceiling for this design) and the gateway, as deployed:
metrics on, the request log on (to /dev/null), a generous rate limit in memory. Each gateway figure
is printed as a ratio to the raw relay and to direct, and checked against the targets of
``bench.ratios``. Results go to bench/results/latest.{md,json} (-partial with BENCH_ONLY).

Environment: BENCH_DURATION (seconds per wrk run, 5), BENCH_ROUNDS (3), BENCH_SOAK_REQUESTS
(1000000, or as many as BENCH_SOAK_MAX_SECONDS, 60, allow), BENCH_STREAMS (1000 concurrent slow
streams), BENCH_QUICK=1 (short runs, for a smoke test), BENCH_BARE=1 (the gateway with metrics,
request log and limits off), BENCH_ONLY=1,2 (only the scenarios of those numbers; also "workers",
"clients", "layers": the features added one at a time).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from bench.mocks import nginx_conf
from bench.ratios import median_row, ratio_lines

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
QUICK = os.environ.get("BENCH_QUICK") == "1"
DURATION = int(os.environ.get("BENCH_DURATION", "2" if QUICK else "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
SOAK = int(os.environ.get("BENCH_SOAK_REQUESTS", "20000" if QUICK else "1000000"))
SOAK_MAX_SECONDS = int(os.environ.get("BENCH_SOAK_MAX_SECONDS", "60"))  # keeps the harness near ten minutes
STREAMS = int(os.environ.get("BENCH_STREAMS", "200" if QUICK else "1000"))
BARE = os.environ.get("BENCH_BARE") == "1"
# As deployed: a rate limit on every request, far above the load (none is refused), in memory.
GENEROUS_LIMITS = '{"default": {"requests_per_minute": 1000000000, "tokens_per_minute": 1000000000}}'
ONLY = {part.strip() for part in os.environ.get("BENCH_ONLY", "").split(",") if part.strip()}
CHAT_BODY = '{"model": "%s", "messages": [{"role": "user", "content": "Say hello."}]%s}'
ANTHROPIC_BODY = (
    '{"model": "claude-bench", "max_tokens": 64, "messages": [{"role": "user", "content": "Say hello."}]%s}'
)


@dataclass
class Row:
    scenario: str
    target: str  # "direct", "gateway", or a client's name
    concurrency: int
    requests: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    steal_pct: float = 0.0
    cpu_ms_per_request: float | None = None
    peak_rss_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def need_tools() -> None:
    missing = [
        tool
        for tool in ("nginx", "wrk", "hey", "redis-server")
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if not missing:
        return
    packages = {"nginx": "nginx-light", "wrk": "wrk", "hey": "hey", "redis-server": "redis-server"}
    if os.geteuid() != 0:
        raise SystemExit(f"bench needs {', '.join(missing)}: apt-get install {' '.join(packages[m] for m in missing)}")
    print(f"installing {', '.join(missing)} (Debian packages)", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *(packages[m] for m in missing)],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def wait_http(port: int, path: str = "/health", timeout: float = 15.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if sock.recv(12).startswith(b"HTTP/1.1"):
                    return time.monotonic() - started
        except OSError:
            time.sleep(0.01)
    raise SystemExit(f"nothing answered on port {port}")


def cpu_steal() -> tuple[int, int]:
    """(steal, total) jiffies from /proc/stat: how much CPU the hypervisor took from this machine."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


class Watch:
    """Samples a process tree's RSS while a load runs; CPU time read before and after."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0

    def tree(self) -> list[psutil.Process]:
        return [self.process, *self.process.children(recursive=True)]

    def cpu(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.tree())

    def rss(self) -> int:
        return sum(p.memory_info().rss for p in self.tree())

    def fds(self) -> int:
        return sum(p.num_fds() for p in self.tree())

    @contextmanager
    def sampling(self) -> Any:
        self.peak = self.rss()
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.1):
                self.peak = max(self.peak, self.rss())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()


_DURATION_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)", text)
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)] if match else 0.0


def wrk(url: str, body: str, concurrency: int, duration: int, lua_dir: str) -> dict[str, Any]:
    script = Path(lua_dir) / f"post-{abs(hash(body))}.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(body)}\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        # The "Latency Distribution" lines; "75.50%"-like stdev columns must not match.
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "errors": errors,
    }


def hey(url: str, body: str, concurrency: int, requests: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            "hey",
            "-n",
            str(requests),
            "-c",
            str(concurrency),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-d",
            body,
            "-t",
            "60",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ok = sum(int(n) for n in re.findall(r"\[200\]\s+(\d+) responses", out))
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": float(re.search(r"50%+ in ([\d.]+) secs", out).group(1)) * 1000,  # type: ignore[union-attr]
        "p99_ms": float(re.search(r"99%+ in ([\d.]+) secs", out).group(1)) * 1000,  # type: ignore[union-attr]
        "errors": requests - ok,
    }


class Bench:
    def __init__(self, workdir: str) -> None:
        self.dir = workdir
        self.rows: list[Row] = []
        self.facts: dict[str, Any] = {}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.mock = free_port()
        self.slow = free_port()
        self.raw = free_port()  # the raw-ASGI relay to the nginx mock
        self.raw_slow = free_port()  # and one to the slow-stream mock
        self.raw_watch: Watch | None = None
        self.metrics_port = 0

    def spawn(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.processes.append(process)
        return process

    def start_mocks(self) -> None:
        conf = Path(self.dir) / "nginx.conf"
        conf.write_text(nginx_conf(self.dir, self.mock))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        subprocess.run([nginx, "-c", str(conf), "-p", self.dir], check=True)
        self.spawn([sys.executable, "-m", "bench.mocks", str(self.slow)])
        wait_http(self.mock, "/openai/v1/models")
        wait_http(self.slow, "/")
        for port, upstream in ((self.raw, self.mock), (self.raw_slow, self.slow)):
            relay = self.spawn([sys.executable, "-m", "bench.raw_relay", str(port), f"http://127.0.0.1:{upstream}"])
            wait_http(port)
            self.raw_watch = self.raw_watch or Watch(relay.pid)  # the JSON and SSE relay's CPU and RSS

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        pid_file = Path(self.dir) / "nginx.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), 15)

    def gateway(self, workers: int = 1, extra: dict[str, str] | None = None) -> tuple[int, Watch, float]:
        port = free_port()
        mock = f"http://127.0.0.1:{self.mock}"
        env = {
            "PROVIDERS_REGISTRY": str(ROOT / "bench" / "registry.yaml"),
            "SERVER_PORT": str(port),
            "SERVER_WORKERS": str(workers),
            "SERVER_ACCESS_LOG": "false" if BARE else "true",  # the request log, to /dev/null
            "SERVER_DRAIN_DELAY": "0s",  # no load balancer to wait for when the bench stops it
            "OPENAI_API_URL": f"{mock}/openai/v1",
            "OPENAI_SSE_API_URL": f"{mock}/openai-sse/v1",
            "ANTHROPIC_API_URL": f"{mock}/anthropic/v1",
            "ANTHROPIC_SSE_API_URL": f"{mock}/anthropic-sse/v1",
            "SLOW_API_URL": f"http://127.0.0.1:{self.slow}/v1",
            **{f"{p}_API_KEY": "bench-key" for p in ("OPENAI", "OPENAI_SSE", "ANTHROPIC", "ANTHROPIC_SSE", "SLOW")},
        }
        if not BARE:
            self.metrics_port = free_port()
            env |= {
                "TELEMETRY_ENABLED": "true",
                "TELEMETRY_METRICS_PORT": str(self.metrics_port),
                "LIMITS": GENEROUS_LIMITS,
            }
        env |= extra or {}
        process = self.spawn([sys.executable, "-m", "gateway", "serve"], env)
        startup = wait_http(port)
        return port, Watch(process.pid), startup

    def load(
        self,
        scenario: str,
        target: str,
        url: str,
        body: str,
        concurrency: int,
        watch: Watch | None = None,
        duration: int = DURATION,
        quiet: bool = False,
    ) -> Row:
        steal, total = cpu_steal()
        if watch is None:
            result = wrk(url, body, concurrency, duration, self.dir)
            row = Row(scenario, target, concurrency, **result)
        else:
            cpu = watch.cpu()
            with watch.sampling():
                result = wrk(url, body, concurrency, duration, self.dir)
            row = Row(
                scenario,
                target,
                concurrency,
                **result,
                cpu_ms_per_request=(watch.cpu() - cpu) * 1000 / max(result["requests"], 1),
                peak_rss_mb=watch.peak / 2**20,
            )
        steal_after, total_after = cpu_steal()
        row.steal_pct = round((steal_after - steal) * 100 / max(total_after - total, 1), 1)
        if quiet:
            return row
        self.rows.append(row)
        print(
            f"  {scenario:<34} {target:<14} c={concurrency:<4} {row.rps:>9.0f} req/s  "
            f"p50 {row.p50_ms:6.2f} ms  p99 {row.p99_ms:6.2f} ms  errors {row.errors}",
            flush=True,
        )
        return row

    def trio(
        self,
        scenario: str,
        direct: str,
        direct_body: str,
        gateway_path: str,
        body: str,
        port: int,
        watch: Watch,
        concurrency: int,
    ) -> None:
        """The mock alone, the raw relay (same path and body as direct) and the gateway, ``ROUNDS``
        times, the order turned each round so that none is always first; one median row each."""
        if not wanted(scenario):
            return
        targets: list[tuple[str, str, str, Watch | None]] = [
            ("direct", f"http://127.0.0.1:{self.mock}{direct}", direct_body, None),
            ("raw relay", f"http://127.0.0.1:{self.raw}{direct}", direct_body, self.raw_watch),
            ("gateway", f"http://127.0.0.1:{port}{gateway_path}", body, watch),
        ]
        runs: dict[str, list[Row]] = {name: [] for name, *_ in targets}
        for round_ in range(ROUNDS):
            for name, url, payload, watched in targets[round_ % 3 :] + targets[: round_ % 3]:
                runs[name].append(self.load(scenario, name, url, payload, concurrency, watched, quiet=True))
        for name, _, _, _ in targets:
            row = median_row(runs[name])
            self.rows.append(row)
            print(
                f"  {scenario:<34} {name:<10} c={concurrency:<4} {row.rps:>9.0f} req/s  p50 {row.p50_ms:6.2f} ms  "
                f"p99 {row.p99_ms:6.2f} ms  errors {row.errors}  (rounds: "
                + ", ".join(f"{r.rps:.0f}" for r in runs[name])
                + ")",
                flush=True,
            )

    def run(self) -> None:
        self.start_mocks()
        port, watch, startup = self.gateway()
        self.facts["start_to_first_answer_s"] = round(startup, 3)
        time.sleep(0.5)
        self.facts["idle_rss_mb"] = round(watch.rss() / 2**20, 1)
        chat = "/v1/chat/completions"
        stream = ', "stream": true, "stream_options": {"include_usage": true}'
        openai_direct = "/openai/v1/chat/completions"
        print(
            "scenarios (direct = the mock alone, raw relay = bench.raw_relay, gateway = through polyrelay"
            + (", bare" if BARE else ", metrics, request log and limits on")
            + f"; medians of {ROUNDS} interleaved rounds):",
            flush=True,
        )
        self.load("warm-up", "gateway", f"http://127.0.0.1:{port}{chat}", CHAT_BODY % ("openai/m", ""), 8, watch, 2)
        self.rows.pop()
        for concurrency in (1, 32):
            self.trio(
                "1. passthrough JSON",
                openai_direct,
                CHAT_BODY % ("m", ""),
                chat,
                CHAT_BODY % ("openai/m", ""),
                port,
                watch,
                concurrency,
            )
        self.trio(
            "2. passthrough stream",
            "/openai-sse/v1/chat/completions",
            CHAT_BODY % ("m", stream),
            chat,
            CHAT_BODY % ("openai_sse/m", stream),
            port,
            watch,
            32,
        )
        self.trio(
            "3. anthropic translation JSON",
            "/anthropic/v1/messages",
            ANTHROPIC_BODY % "",
            chat,
            CHAT_BODY % ("anthropic/claude-bench", ""),
            port,
            watch,
            32,
        )
        self.trio(
            "3. anthropic translation stream",
            "/anthropic-sse/v1/messages",
            ANTHROPIC_BODY % ', "stream": true',
            chat,
            CHAT_BODY % ("anthropic_sse/claude-bench", stream),
            port,
            watch,
            32,
        )
        self.trio(
            "4. /proxy passthrough",
            openai_direct,
            CHAT_BODY % ("m", ""),
            f"/proxy/openai{openai_direct}",
            CHAT_BODY % ("m", ""),
            port,
            watch,
            32,
        )
        if wanted("5."):
            self.slow_streams(port, watch)
        if wanted("6."):
            self.soak(port, watch)
        if not BARE:
            self.facts["metrics_requests_counted"] = scraped_requests(self.metrics_port)
        self.stop_process(watch)
        if wanted("workers"):
            self.workers()
        if wanted("clients"):
            self.clients()
        if wanted("layers") or wanted("limits"):
            self.layers()

    def stop_process(self, watch: Watch) -> None:
        watch.process.terminate()
        watch.process.wait(10)

    def slow_streams(self, port: int, watch: Watch) -> None:
        body = CHAT_BODY % ("slow/m", ', "stream": true')
        scenario = f"5. {STREAMS} slow streams (20 x 50 ms)"
        path = "/v1/chat/completions"
        targets = [
            ("direct", f"http://127.0.0.1:{self.slow}{path}", None),
            ("raw relay", f"http://127.0.0.1:{self.raw_slow}{path}", None),
            ("gateway", f"http://127.0.0.1:{port}{path}", watch),
        ]
        runs: dict[str, list[Row]] = {name: [] for name, _, _ in targets}
        for round_ in range(ROUNDS):
            for name, url, watched in targets[round_ % 3 :] + targets[: round_ % 3]:
                if watched is None:
                    runs[name].append(Row(scenario, name, STREAMS, **hey(url, body, STREAMS, STREAMS * 2)))
                    continue
                cpu = watched.cpu()
                with watched.sampling():
                    through = hey(url, body, STREAMS, STREAMS * 2)
                runs[name].append(
                    Row(
                        scenario,
                        name,
                        STREAMS,
                        **through,
                        cpu_ms_per_request=(watched.cpu() - cpu) * 1000 / (STREAMS * 2),
                        peak_rss_mb=watched.peak / 2**20,
                    )
                )
        for name, _, _ in targets:
            row = median_row(runs[name])
            self.rows.append(row)
            rss = f" peak RSS {row.peak_rss_mb:.0f} MB" if row.peak_rss_mb is not None else ""
            print(
                f"  {scenario:<34} {name:<10} c={STREAMS:<4} p50 {row.p50_ms:.0f} ms p99 {row.p99_ms:.0f} ms "
                f"errors {row.errors}{rss}",
                flush=True,
            )

    def soak(self, port: int, watch: Watch) -> None:
        rss, fds = watch.rss(), watch.fds()
        rate = max((r.rps for r in self.rows if r.scenario.startswith("1.") and r.target == "gateway"), default=3000)
        duration = max(5, min(int(SOAK / rate) + 1, SOAK_MAX_SECONDS))
        row = self.load(
            "6. soak",
            "gateway",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            CHAT_BODY % ("openai/m", ""),
            32,
            watch,
            duration,
        )
        time.sleep(1)
        row.extra = {
            "rss_before_mb": round(rss / 2**20, 1),
            "rss_after_mb": round(watch.rss() / 2**20, 1),
            "rss_growth_pct": round((watch.rss() - rss) * 100 / rss, 1),
            "fds_before": fds,
            "fds_after": watch.fds(),
        }
        print(
            f"     soak: {row.requests} requests, RSS {row.extra['rss_before_mb']} -> {row.extra['rss_after_mb']} MB, "
            f"fds {fds} -> {row.extra['fds_after']}",
            flush=True,
        )

    def workers(self) -> None:
        port, watch, _ = self.gateway(workers=2)
        time.sleep(1)
        self.load(
            "1. passthrough JSON, 2 workers",
            "gateway",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            CHAT_BODY % ("openai/m", ""),
            32,
            watch,
        )
        self.stop_process(watch)

    def layers(self) -> None:
        """Scenario 1 on fresh gateways with the deployed features added one at a time (none, metrics,
        the request log, the generous limit in memory, then in a loopback redis-server), in
        interleaved rounds: what each layer costs, as ratios in this same run."""
        redis_port = free_port()
        redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.spawn([redis, "--port", str(redis_port), "--save", "", "--appendonly", "no", "--dir", self.dir])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", redis_port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        off = {"SERVER_ACCESS_LOG": "false", "TELEMETRY_ENABLED": "false", "LIMITS": ""}
        metrics = {"TELEMETRY_ENABLED": "true", "TELEMETRY_METRICS_PORT": str(free_port())}
        logged = {**metrics, "SERVER_ACCESS_LOG": "true"}
        layers: tuple[tuple[str, dict[str, str]], ...] = (
            ("no features", off),
            ("+ metrics", {**off, **metrics}),
            ("+ request log", {**off, **logged}),
            ("+ limits in memory (as deployed)", {**logged, "LIMITS": GENEROUS_LIMITS}),
            (
                "+ limits in redis",
                {**logged, "LIMITS": GENEROUS_LIMITS, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"},
            ),
        )
        runs: dict[str, list[Row]] = {name: [] for name, _ in layers}
        for round_ in range(ROUNDS):
            for name, extra in layers[round_ % len(layers) :] + layers[: round_ % len(layers)]:
                port, watch, _ = self.gateway(extra=extra)
                time.sleep(1)
                runs[name].append(
                    self.load(
                        f"1. passthrough JSON, {name}",
                        "gateway",
                        f"http://127.0.0.1:{port}/v1/chat/completions",
                        CHAT_BODY % ("openai/m", ""),
                        32,
                        watch,
                        quiet=True,
                    )
                )
                self.stop_process(watch)
        rows = [median_row(runs[name]) for name, _ in layers]
        self.rows += rows
        plain = before = rows[0]
        for row in rows:
            row.extra = {
                "rps_vs_no_features": round(row.rps / max(plain.rps, 1e-9), 3),
                "rps_vs_layer_before": round(row.rps / max(before.rps, 1e-9), 3),
                "cpu_ms_per_request_added": round((row.cpu_ms_per_request or 0) - (before.cpu_ms_per_request or 0), 4),
            }
            before = row
            print(
                f"     {row.scenario}: {row.rps:.0f} req/s, x{row.extra['rps_vs_no_features']:.2f} of no features, "
                f"x{row.extra['rps_vs_layer_before']:.2f} of the layer before, CPU "
                f"{row.cpu_ms_per_request or 0:.3f} ms/req ({row.extra['cpu_ms_per_request_added'] * 1000:+.0f} µs)",
                flush=True,
            )

    def clients(self) -> None:
        upstream = f"http://127.0.0.1:{self.mock}/openai/v1/chat/completions"
        for client in ("aiohttp", "httpx2", "httpx-aiohttp"):
            port = free_port()
            process = self.spawn([sys.executable, "-m", "bench.relays", client, str(port), upstream])
            wait_http(port, "/")
            self.load(
                "bare relay, HTTP client",
                client,
                f"http://127.0.0.1:{port}/v1/chat/completions",
                CHAT_BODY % ("m", ""),
                32,
                Watch(process.pid),
            )
            process.terminate()
            process.wait(10)


def wanted(scenario: str) -> bool:
    return not ONLY or scenario.split(".")[0] in ONLY


def scraped_requests(port: int) -> int:
    """The requests the gateway's metrics counted: proof that they were on, and kept up."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        text = b""
        while chunk := sock.recv(65536):
            text += chunk
    values = re.findall(rb"^polyrelay_http_requests_total\{[^}]*\} ([\d.e+]+)$", text, re.M)
    return int(sum(float(v) for v in values))


def versions() -> dict[str, str]:
    found = {
        name: metadata.version(name) for name in ("starlette", "uvicorn", "aiohttp", "orjson", "uvloop", "httptools")
    }
    found["python"] = platform.python_version()
    for tool, flag in (("nginx", "-v"), ("wrk", "-v")):
        path = shutil.which(tool) or f"/usr/sbin/{tool}"
        out = subprocess.run([path, flag], capture_output=True, text=True)
        found[tool] = (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else "?"
    return found


def report(bench: Bench) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions(),
        "duration_s": DURATION,
        "rounds": ROUNDS,
        "as_deployed": not BARE,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    document = {"machine": machine, "facts": bench.facts, "rows": [asdict(r) for r in bench.rows]}
    stem = "latest" + ("-bare" if BARE else "") + ("-partial" if ONLY else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(document, indent=2) + "\n")
    direct = {(r.scenario, r.concurrency): r for r in bench.rows if r.target == "direct"}
    lines = [
        f"# polyrelay benchmark, {machine['date']}",
        "",
        f"{machine['cores']} cores, Python {machine['versions']['python']}, {machine['versions']['nginx']}, "
        f"{machine['versions']['wrk']}; one gateway worker unless said; loopback; wrk -t1, {DURATION} s per run, "
        f"medians of {ROUNDS} interleaved rounds; the gateway "
        + ("bare (metrics, request log and limits off)." if BARE else "with metrics, request log and limits on."),
        "",
        *ratio_lines(bench.rows),
        "",
        "| scenario | target | conc. | req/s | p50 ms | p99 ms | added p50 / p99 ms | CPU ms/req | peak RSS MB "
        "| errors | CPU steal % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in bench.rows:
        base = direct.get((r.scenario, r.concurrency)) if r.target != "direct" else None
        added = f"{r.p50_ms - base.p50_ms:+.2f} / {r.p99_ms - base.p99_ms:+.2f}" if base else ""
        cpu = f"{r.cpu_ms_per_request:.3f}" if r.cpu_ms_per_request is not None else ""
        rss = f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb is not None else ""
        lines.append(
            f"| {r.scenario} | {r.target} | {r.concurrency} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {added} | {cpu} | {rss} | {r.errors} | {r.steal_pct:.0f} |"
        )
    soak = next((r for r in bench.rows if r.scenario == "6. soak"), None)
    lines += [
        "",
        f"Start to first answered request: {bench.facts.get('start_to_first_answer_s')} s; "
        f"idle RSS: {bench.facts.get('idle_rss_mb')} MB.",
    ]
    if soak:
        e = soak.extra
        lines.append(
            f"Soak: {soak.requests:,} requests; RSS {e['rss_before_mb']} -> {e['rss_after_mb']} MB "
            f"({e['rss_growth_pct']:+.1f}%); open fds {e['fds_before']} -> {e['fds_after']}."
        )
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    need_tools()
    with tempfile.TemporaryDirectory(prefix="polyrelay-bench-") as workdir:
        bench = Bench(workdir)
        try:
            bench.run()
        finally:
            bench.stop()
        report(bench)


if __name__ == "__main__":
    main()
