"""The benchmark's verdict: each gateway figure as a ratio to the raw relay and to direct, measured in
the same run, against the targets of issue 16. Ratios, not absolute figures, because this is a shared
2-core VM whose speed drifts from one minute to the next: what drifts moves all three targets of a
scenario alike, which the interleaved rounds and their medians take care of.

    row = median_row(rounds)              # one row out of a target's rounds
    lines = ratio_lines(rows)             # the markdown table of ratios and targets
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.__main__ import Row

__all__ = ["TARGETS", "median_row", "ratio_lines"]

# scenario prefix -> the least share of the raw relay's req/s the gateway must reach (c=32)
TARGETS = {
    "1. passthrough JSON": 0.75,
    "2. passthrough stream": 0.70,
    "3. anthropic translation JSON": 0.60,
    "3. anthropic translation stream": 0.60,
    "4. /proxy passthrough": 0.75,
}
ADDED_P50_MS = 0.1  # at c=1, the gateway's p50 at most the raw relay's plus this
STREAMS_P99 = 1.5  # the slow streams' p99 at most this times direct's
STREAMS_RSS_MB = 150.0


def median_row(rounds: list[Row]) -> Row:
    """The rounds of one target as one row: medians of rates and latencies, the highest RSS, all
    errors, every round's req/s kept in ``extra``."""
    first = rounds[0]
    cpus = [r.cpu_ms_per_request for r in rounds if r.cpu_ms_per_request is not None]
    rss = [r.peak_rss_mb for r in rounds if r.peak_rss_mb is not None]
    return replace(
        first,
        requests=sum(r.requests for r in rounds),
        rps=statistics.median(r.rps for r in rounds),
        p50_ms=statistics.median(r.p50_ms for r in rounds),
        p99_ms=statistics.median(r.p99_ms for r in rounds),
        errors=sum(r.errors for r in rounds),
        steal_pct=max(r.steal_pct for r in rounds),
        cpu_ms_per_request=statistics.median(cpus) if cpus else None,
        peak_rss_mb=max(rss) if rss else None,
        extra={"rounds_rps": [r.rps for r in rounds], "rounds_p99_ms": [r.p99_ms for r in rounds]},
    )


def _verdict(met: bool) -> str:
    return "**met**" if met else "missed"


def ratio_lines(rows: list[Row]) -> list[str]:
    """The targets' table: one line per scenario, the gateway against the raw relay and direct."""
    by = {(r.scenario, r.target, r.concurrency): r for r in rows}
    lines = [
        "| scenario | gateway / raw relay | gateway / direct | raw relay / direct | target | |",
        "|---|---:|---:|---:|---|---|",
    ]
    for scenario, share in TARGETS.items():
        gateway, raw, direct = (by.get((scenario, t, 32)) for t in ("gateway", "raw relay", "direct"))
        if gateway is None or raw is None or direct is None:
            continue
        ratio = gateway.rps / raw.rps
        lines.append(
            f"| {scenario}, c=32 req/s | {ratio:.2f} | {gateway.rps / direct.rps:.3f} | {raw.rps / direct.rps:.3f} "
            f"| >= {share:.2f} of raw | {_verdict(ratio >= share)} |"
        )
    gateway, raw, direct = (by.get(("1. passthrough JSON", t, 1)) for t in ("gateway", "raw relay", "direct"))
    if gateway is not None and raw is not None and direct is not None:
        added, raw_added = gateway.p50_ms - direct.p50_ms, raw.p50_ms - direct.p50_ms
        lines.append(
            f"| 1. passthrough JSON, c=1 added p50 | {gateway.p50_ms - raw.p50_ms:+.2f} ms | {added:+.2f} ms "
            f"| {raw_added:+.2f} ms | <= raw's + {ADDED_P50_MS} ms | {_verdict(added <= raw_added + ADDED_P50_MS)} |"
        )
    streams = [r for r in rows if r.scenario.startswith("5.")]
    found = {r.target: r for r in streams}
    gateway, raw, direct = found.get("gateway"), found.get("raw relay"), found.get("direct")
    if gateway is not None and raw is not None and direct is not None:
        ratio = gateway.p99_ms / direct.p99_ms
        lines.append(
            f"| {gateway.scenario}, p99 | {gateway.p99_ms / raw.p99_ms:.2f} | {ratio:.2f} | "
            f"{raw.p99_ms / direct.p99_ms:.2f} | <= {STREAMS_P99}x direct | {_verdict(ratio <= STREAMS_P99)} |"
        )
        rss = gateway.peak_rss_mb or 0.0
        lines.append(
            f"| {gateway.scenario}, gateway peak RSS | {rss:.0f} MB | | | < {STREAMS_RSS_MB:.0f} MB "
            f"| {_verdict(rss < STREAMS_RSS_MB)} |"
        )
    return lines
