"""The polyrelay command, run as users run it."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from providers.registry import load_registry

ROOT = Path(__file__).parent.parent


def polyrelay(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=ROOT,
        timeout=30,
    )


def test_providers_lists_the_registry_and_what_is_configured() -> None:
    result = polyrelay("providers", OPENAI_API_KEY="sk-secret")
    assert result.returncode == 0
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert list(lines) == list(load_registry())  # every entry, in the registry's order
    assert " yes " in lines["openai"] and "set ANTHROPIC_API_KEY" in lines["anthropic"]
    assert "sk-secret" not in result.stdout


def test_check_config_accepts_good_settings() -> None:
    result = polyrelay("check-config", GROQ_API_KEY="g")
    assert result.returncode == 0 and "groq" in result.stdout


def test_check_config_rejects_bad_settings_readably() -> None:
    result = polyrelay("check-config", SERVER_PORT="eighty")
    assert result.returncode == 1
    assert "SERVER_PORT='eighty' is not valid" in result.stderr and "Traceback" not in result.stderr


def test_check_config_reads_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("server:\n  port: nope\n")
    result = polyrelay("check-config", "--config", str(config))
    assert result.returncode == 1 and "SERVER_PORT" in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_answers_health_and_stops_on_sigterm(workers: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "SERVER_WORKERS": workers, "SERVER_DRAIN_DELAY": "0s", "GROQ_API_KEY": "g"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health")
                break
            except httpx.ConnectError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        assert response.status_code == 200 and response.json() == {"message": "OK"}
        # Every worker builds its app from the same settings: groq is configured in all of them.
        for _ in range(4):
            assert httpx.get(f"http://127.0.0.1:{port}/proxy/nosuch/x").status_code == 400
            listed = httpx.get(f"http://127.0.0.1:{port}/v1/models?provider=groq")
            assert listed.status_code != 400, listed.text
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why it ended.
    assert "Application shutdown complete" in output and process.returncode in (0, -signal.SIGTERM), output


def test_new_key_prints_a_key_and_its_hash() -> None:
    result = polyrelay("new-key", "ci-bot", "--models", "openai/gpt-4o,groq/llama")
    assert result.returncode == 0
    key = result.stdout.split("stored anywhere): ")[1].split()[0]
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert f"AUTH_API_KEYS=ci-bot:{digest}:openai/gpt-4o|groq/llama" in result.stdout
    assert polyrelay("new-key", "bad name").returncode == 1
