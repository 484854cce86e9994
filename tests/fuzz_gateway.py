"""``make fuzz``: schemathesis over openapi.yaml against a real gateway and the fake providers.

The gateway serves every route with every registry provider configured (pointed at the fakes),
images on, and the gateways management API on its own port (a fresh SQLite store); schemathesis
generates requests from openapi.yaml (valid and invalid ones) for each of the two servers and
fails on any 5xx the gateway itself answers. A provider's own error status passes through as
documented, so 502/504 from an upstream are not the gateway's fault; the fakes answer at once,
so only the gateway's own 500 (an unhandled exception) can fail it.

    python -m tests.fuzz_gateway [--max-examples N]      # what `make fuzz` runs
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from gateway import Settings
from providers.registry import load_registry

from .conftest import serve
from .fakes import FakeProviders
from .processes import free_port

ROOT = Path(__file__).parent.parent


async def main(max_examples: int) -> int:
    fake = FakeProviders(load_registry())
    await fake.start()
    try:
        with tempfile.TemporaryDirectory(prefix="polyrelay-fuzz-") as directory:
            port = free_port()
            settings = Settings.load(
                {
                    **fake.env(),
                    "ENABLE_IMAGES": "true",
                    "ENABLE_VISION": "true",
                    "GATEWAYS_ENABLED": "true",
                    "GATEWAYS_PORT": str(port),
                    "GATEWAYS_DATABASE_URL": f"sqlite:///{directory}/gateways.db",
                }
            )
            async with serve(settings) as url:
                # The data plane, then the management API (the paths under /v1alpha1/, on its port).
                data_plane = await _schemathesis(url, max_examples, "--exclude-path-regex", "^/(proxy|v1alpha1)/")
                management = await _schemathesis(
                    f"http://127.0.0.1:{port}", max_examples, "--include-path-regex", "^/v1alpha1/"
                )
                return data_plane or management
    finally:
        await fake.stop()


async def _schemathesis(url: str, max_examples: int, *selection: str) -> int:
    # /proxy/ is the provider's own API: its answers are not ours.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(ROOT / "openapi.yaml"),
        "--url",
        url,
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(max_examples),
        *selection,
    )
    return await process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--max-examples", type=int, default=50)
    sys.exit(asyncio.run(main(parser.parse_args().max_examples)))
