"""The peer row: ``make bench-peers`` (or ``python -m bench.peers``); not part of ``make bench`` or CI.

Installs the LiteLLM proxy in a virtual environment of its own (bench/.peers-venv, kept between
runs), pinned to a release that is neither 1.82.7 nor 1.82.8 (both were published compromised;
so was 1.107.0, since withdrawn), and serves it with one worker in front of the same nginx mock.
Then JSON passthrough at concurrency 32 and 1, in interleaved rounds against the mock alone, the
raw-ASGI relay and polyrelay as deployed, like every scenario of ``make bench``.

    make bench-peers            # results in bench/results/peers.md
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.__main__ import CHAT_BODY, RESULTS, ROOT, ROUNDS, Bench, Row, free_port, need_tools, wait_http
from bench.ratios import median_row

LITELLM = "litellm[proxy]==1.106.2"
VENV = Path(os.environ.get("BENCH_PEERS_VENV", ROOT / "bench" / ".peers-venv"))
COMPROMISED = ("1.82.7", "1.82.8", "1.107.0")


def litellm_venv() -> Path:
    """The venv's ``litellm`` command, installed on first use."""
    assert not any(LITELLM.endswith("==" + bad) for bad in COMPROMISED)
    command = VENV / "bin" / "litellm"
    if not command.exists():
        print(f"installing {LITELLM} into {VENV} (a few minutes, once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, LITELLM], check=True)
    return command


def config(directory: str, mock: int) -> Path:
    path = Path(directory) / "litellm.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: openai/m\n"
        "    litellm_params:\n"
        "      model: openai/m\n"
        f"      api_base: http://127.0.0.1:{mock}/openai/v1\n"
        "      api_key: bench-key\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    return path


def main() -> None:
    need_tools()
    command = litellm_venv()
    with tempfile.TemporaryDirectory(prefix="polyrelay-peers-") as workdir:
        bench = Bench(workdir)
        try:
            bench.start_mocks()
            port, watch, _ = bench.gateway()
            litellm_port = free_port()
            peer = bench.spawn(
                [str(command), "--config", str(config(workdir, bench.mock)), "--port", str(litellm_port)],
                # No authentication, like the gateway under test (loopback only): LiteLLM wants that said.
                {
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                    "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
                    "NUM_WORKERS": "1",
                },
            )
            wait_http(litellm_port, "/health/liveliness", timeout=120)
            peer_watch = type(watch)(peer.pid)
            body = CHAT_BODY % ("openai/m", "")
            chat = "/v1/chat/completions"
            targets = [
                ("direct", f"http://127.0.0.1:{bench.mock}/openai{chat}", CHAT_BODY % ("m", ""), None),
                ("raw relay", f"http://127.0.0.1:{bench.raw}/openai{chat}", CHAT_BODY % ("m", ""), bench.raw_watch),
                ("gateway", f"http://127.0.0.1:{port}{chat}", body, watch),
                ("litellm", f"http://127.0.0.1:{litellm_port}{chat}", body, peer_watch),
            ]
            rows: list[Row] = []
            for concurrency in (32, 1):
                runs: dict[str, list[Row]] = {name: [] for name, *_ in targets}
                for round_ in range(ROUNDS):
                    turned = targets[round_ % len(targets) :] + targets[: round_ % len(targets)]
                    for name, url, payload, watched in turned:
                        scenario = "1. passthrough JSON"
                        runs[name].append(bench.load(scenario, name, url, payload, concurrency, watched, quiet=True))
                rows += [median_row(runs[name]) for name, *_ in targets]
        finally:
            bench.stop()
    by = {(r.target, r.concurrency): r for r in rows}
    lines = [
        f"# Peers, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: JSON passthrough, one worker each, "
        f"medians of {ROUNDS} interleaved rounds ({LITELLM})",
        "",
        "| target | req/s c=32 | share of the raw relay | CPU ms/req | p50 ms c=1 | p99 ms c=1 | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    raw = by[("raw relay", 32)].rps
    for name, *_ in targets:
        busy, alone = by[(name, 32)], by[(name, 1)]
        cpu = f"{busy.cpu_ms_per_request:.3f}" if busy.cpu_ms_per_request is not None else ""
        lines.append(
            f"| {name} | {busy.rps:,.0f} | {busy.rps / raw:.2f} | {cpu} | {alone.p50_ms:.2f} | {alone.p99_ms:.2f} "
            f"| {busy.errors + alone.errors} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
