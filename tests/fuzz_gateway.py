"""``make fuzz``: schemathesis over openapi.yaml against a real gateway and the fake providers.

The gateway serves every route with every registry provider configured (pointed at the fakes),
images on, and schemathesis generates requests from openapi.yaml (valid and invalid ones) and
fails on any 5xx the gateway itself answers. A provider's own error status passes through as
documented, so 502/504 from an upstream are not the gateway's fault; the fakes answer at once,
so only the gateway's own 500 (an unhandled exception) can fail it.

    python -m tests.fuzz_gateway [--max-examples N]      # what `make fuzz` runs
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gateway import Settings
from providers.registry import load_registry

from .conftest import serve
from .fakes import FakeProviders

ROOT = Path(__file__).parent.parent


async def main(max_examples: int) -> int:
    fake = FakeProviders(load_registry())
    await fake.start()
    try:
        settings = Settings.load({**fake.env(), "ENABLE_IMAGES": "true", "ENABLE_VISION": "true"})
        async with serve(settings) as url:
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
                "--exclude-path-regex",
                "^/proxy/",  # the provider's own API: its answers are not ours
            )
            return await process.wait()
    finally:
        await fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--max-examples", type=int, default=50)
    sys.exit(asyncio.run(main(parser.parse_args().max_examples)))
