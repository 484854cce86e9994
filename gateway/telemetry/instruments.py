"""Counters, gauges and histograms kept in plain Python objects, for a gateway of one process.

prometheus-client's instruments are safe across threads: every value carries a lock, taken on
each ``inc`` and ``observe``. In one gateway process everything that writes a value (the request
path) and the one thing that reads them all (``/metrics``, served on the same event loop by
``scrape.LoopMetricsServer``) run on one thread, so those locks only cost time: about a
microsecond per observation, eight of them per request. These instruments keep the same calls
(``labels(...)``, ``inc``, ``dec``, ``observe``) over bare numbers, and become Prometheus metric
families only when scraped. They must not be written from another thread.

With several workers the values must reach the supervisor's files, so ``Metrics`` uses
prometheus-client's own instruments there (its multiprocess mode); the text a scrape gets is the
same either way (``tests/test_metrics.py`` compares the two).

    requests = LoopCounter("polyrelay_http_requests", "HTTP requests.", ("route",), registry=registry)
    requests.labels("/v1/chat/completions").inc()
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["LoopCounter", "LoopGauge", "LoopHistogram"]


class _Family:
    """The labelled children of one metric, registered as a collector of ``registry``."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.children: dict[tuple[str, ...], Any] = {}
        registry.register(self)  # type: ignore[arg-type]

    def labels(self, *values: str) -> Any:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, not {values!r}")
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self._child()
        return child

    def _child(self) -> Any:
        raise NotImplementedError

    def describe(self) -> list[Metric]:
        return [self._family()]

    def _family(self) -> Metric:
        raise NotImplementedError


class _Count:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount


class LoopCounter(_Family):
    def _child(self) -> _Count:
        return _Count()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in self.children.items():
            family.add_metric(values, child.value)
        yield family


class LoopGauge(_Family):
    """An unlabelled gauge (the only kind the gateway has): ``inc`` and ``dec`` on the family."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        super().__init__(name, documentation, (), registry)
        self.value = self.labels()

    def inc(self, amount: float = 1) -> None:
        self.value.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value.value -= amount

    def _child(self) -> _Count:
        return _Count()

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=())

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        family.add_metric((), self.value.value)
        yield family


class _Buckets:
    """One histogram's counts: ``counts[i]`` observations in (bounds[i-1], bounds[i]], the last
    one above every bound (``+Inf``)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class LoopHistogram(_Family):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.bounds = tuple(sorted(float(bound) for bound in buckets if bound != float("inf")))
        self.les = [*(floatToGoString(bound) for bound in self.bounds), "+Inf"]  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames, registry)

    def _child(self) -> _Buckets:
        return _Buckets(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in self.children.items():
            total = 0
            cumulative = []
            for le, count in zip(self.les, child.counts, strict=True):
                total += count
                cumulative.append((le, total))
            family.add_metric(values, cumulative, child.sum)  # type: ignore[arg-type]
        yield family
