"""The README's table of endpoints by provider is the registry's data, rendered: it cannot drift.

On a mismatch the assertion shows the table to paste between the README's markers.
"""

from __future__ import annotations

from pathlib import Path

from providers.registry import ENDPOINTS, ProviderSpec, load_registry

README = Path(__file__).parent.parent / "README.md"
START, END = "<!-- endpoints-by-provider:start -->", "<!-- endpoints-by-provider:end -->"
# The front doors served for every provider: natively where its entry lists them, else through chat.
FRONT_DOORS = ("messages", "responses")


def how(spec: ProviderSpec, endpoint: str) -> str:
    """How the gateway serves ``endpoint`` for the provider of ``spec``."""
    if endpoint == "chat":
        return "relayed" if spec.adapter == "openai" else "translated"
    if endpoint in spec.endpoints:
        if endpoint in FRONT_DOORS:
            return "native"
        return "relayed" if spec.adapter == "openai" else "translated"
    return "via chat" if endpoint in FRONT_DOORS else "—"


def table() -> str:
    columns = ["chat", *ENDPOINTS]
    lines = ["| Provider | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for pid, spec in load_registry().items():
        lines.append(f"| `{pid}` | " + " | ".join(how(spec, c) for c in columns) + " |")
    return "\n".join(lines)


def test_the_readme_table_is_the_registrys() -> None:
    text = README.read_text()
    written = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert written == table(), f"README's endpoints table is out of date; it should read:\n{table()}"


def test_the_legend_names_every_route() -> None:
    legend = " ".join(README.read_text().split(END, 1)[1].split("\n\n", 2)[1].split())
    for name, route in {"chat": "/v1/chat/completions", **ENDPOINTS}.items():
        assert f"`{name}` `{route}`" in legend
