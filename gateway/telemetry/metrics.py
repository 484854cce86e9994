"""``Metrics``: Prometheus metrics of every request, served on a port of their own (TELEMETRY_ENABLED).

    instruments    made once, on a registry of this gateway's own (several apps in one process never
                   share series), with the process collector: in one process, the loop's own
                   lock-free ones (``instruments``); in a worker of several, prometheus-client's
    series caches  dicts from a tuple of label values to the instruments' children: ``end`` does a
                   few dict lookups and observations, never ``labels()`` with its checks and lock
    ModelLabels    which model names may be label values: names a provider answered successfully,
                   at most ``MODEL_LABEL_CAP`` per process; any other is "other"
    scrape         the /metrics endpoint (a thread of its own), or the supervisor's over the files
                   of several workers (``scrape.WorkersMetrics``)

The names are the OpenTelemetry GenAI semantic conventions' in Prometheus form
(``gen_ai.client.token.usage`` is ``gen_ai_client_token_usage``), plus the gateway's own
``polyrelay_*``; the README's Metrics table lists each with its labels.

    metrics = Metrics.from_settings(settings)  # Telemetry.from_settings adds it when TELEMETRY_ENABLED
    await metrics.start()                      # http://SERVER_HOST:TELEMETRY_METRICS_PORT/metrics
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import prometheus_client
from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics
from prometheus_client.metrics_core import GaugeMetricFamily

from providers.errors import AuthenticationFailed, UpstreamError

from .instruments import LoopCounter, LoopGauge, LoopHistogram
from .scrape import MULTIPROCESS_DIR, LoopMetricsServer
from .sink import Sink

if TYPE_CHECKING:
    from ..aliases import Aliases
    from ..settings import Settings
    from .exchange import Exchange
    from .sink import ToolCall

__all__ = ["MODEL_LABEL_CAP", "OTHER", "Metrics", "ModelLabels"]

MODEL_LABEL_CAP = 200
MAX_MODEL_LABEL = 128  # characters; a longer name is "other"
OTHER = "other"

# The GenAI conventions' advice for each histogram.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
# HTTP requests range from a health check to a stream of several minutes.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)

GEN_AI = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The codes AuthMiddleware and the OIDC verifier refuse with; anything else is "other".
_AUTH_REASONS = frozenset({"missing_credentials", "invalid_api_key", "invalid_token", "invalid_request"})


# A worker's instruments, with the values in the supervisor's files (prometheus-client's
# multiprocess mode); called as the loop's own are.
def _shared_histogram(
    name: str, documentation: str, labelnames: tuple[str, ...], buckets: tuple[float, ...], registry: CollectorRegistry
) -> Any:
    return prometheus_client.Histogram(name, documentation, labelnames, buckets=buckets, registry=registry)


def _shared_counter(name: str, documentation: str, labelnames: tuple[str, ...], registry: CollectorRegistry) -> Any:
    return prometheus_client.Counter(name, documentation, labelnames, registry=registry)


def _shared_gauge(name: str, documentation: str, registry: CollectorRegistry) -> Any:
    # A dead worker's in-flight requests no longer count (scrape.WorkersMetrics.worker_gone).
    return prometheus_client.Gauge(name, documentation, registry=registry, multiprocess_mode="livesum")


class _AliasStates:
    """Each alias deployment's state at scrape time: ``polyrelay_alias_deployment_up`` is 1 while
    it takes requests (ok, or probing after its cool-down), 0 while ejected."""

    def __init__(self, aliases: Aliases) -> None:
        self.aliases = aliases

    def describe(self) -> list[Any]:
        return [self._family()]

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "polyrelay_alias_deployment_up",
            "Whether an alias's deployment takes requests (0 while it is ejected after failures).",
            labels=("alias", "deployment"),
        )

    def collect(self) -> Iterator[Any]:
        family = self._family()
        for name, alias in self.aliases.items():
            for deployment, state in alias.states().items():
                family.add_metric((name, deployment), 0.0 if state == "ejected" else 1.0)
        yield family


class ModelLabels:
    """The model names that may be label values.

    A model name in a request is the caller's text: as a label value, anyone could make series at
    will. A name becomes one once a provider answered a request for it successfully (so it names a
    model that exists there), per provider, and only the first ``cap`` names; any other is "other".

    >>> names = ModelLabels(cap=1)
    >>> names.label("openai", "typo", accepted=False), names.label("openai", "gpt-4o", accepted=True)
    ('other', 'gpt-4o')
    >>> names.label("openai", "gpt-4o", accepted=False), names.label("openai", "gpt-5", accepted=True)
    ('gpt-4o', 'other')
    """

    def __init__(self, cap: int = MODEL_LABEL_CAP) -> None:
        self.cap = cap
        self.admitted: set[tuple[str, str]] = set()

    def label(self, provider: str, model: str, accepted: bool) -> str:
        key = (provider, model)
        if key in self.admitted:
            return model
        if accepted and len(self.admitted) < self.cap and len(model) <= MAX_MODEL_LABEL:
            self.admitted.add(key)
            return model
        return OTHER


class _GenAISeries:
    """The children of one (operation, provider, request model, response model)."""

    __slots__ = ("input", "labels", "optional", "output", "tokens", "tpot", "ttft")

    def __init__(self, metrics: Metrics, labels: tuple[str, str, str, str]) -> None:
        self.labels = labels
        self.tokens = metrics.tokens
        self.input = metrics.tokens.labels(*labels, "input")
        self.output = metrics.tokens.labels(*labels, "output")
        self.ttft = metrics.ttft.labels(*labels)
        self.tpot = metrics.tpot.labels(*labels)
        self.optional: dict[str, Any] = {}  # cache_read, cache_write, reasoning: made when first reported

    def token(self, kind: str) -> Any:
        child = self.optional.get(kind)
        if child is None:
            child = self.optional[kind] = self.tokens.labels(*self.labels, kind)
        return child


class Metrics(Sink):
    """The Prometheus sink. ``multiprocess``: this is one of several workers, whose values go to the
    files the supervisor serves, so it serves nothing itself."""

    def __init__(
        self,
        *,
        provider_names: Mapping[str, str],
        host: str = "127.0.0.1",
        port: int = 9464,
        multiprocess: bool = False,
        model_cap: int = MODEL_LABEL_CAP,
    ) -> None:
        self.host, self.port, self.multiprocess = host, port, multiprocess
        self.provider_names = dict(provider_names)  # registry id -> gen_ai.provider.name
        self.request_models = ModelLabels(model_cap)
        self.response_models = ModelLabels(model_cap)
        self.server: LoopMetricsServer | None = None
        # The *_created series would double what is scraped, for a time Prometheus does not use.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry = CollectorRegistry()
        histogram: Callable[..., Any] = LoopHistogram
        counter: Callable[..., Any] = LoopCounter
        gauge: Callable[..., Any] = LoopGauge
        if multiprocess:
            histogram, counter, gauge = _shared_histogram, _shared_counter, _shared_gauge
        else:
            ProcessCollector(registry=registry)

        # -- GenAI semantic conventions --
        self.tokens = histogram(
            "gen_ai_client_token_usage",
            "Tokens used per GenAI operation, by token type (input, output; cache_read, cache_write, reasoning "
            "when the provider reports a non-zero count).",
            (*GEN_AI, "gen_ai_token_type"),
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.duration = histogram(
            "gen_ai_server_request_duration_seconds",
            "Duration of GenAI operations (whole streams included); error_type is empty on success.",
            (*GEN_AI, "error_type"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.ttft = histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time from the request's arrival to the provider's first stream event.",
            GEN_AI,
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.tpot = histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first, of streams with more than one output token.",
            GEN_AI,
            buckets=TPOT_BUCKETS,
            registry=registry,
        )
        # -- the gateway's own --
        self.requests = counter(
            "polyrelay_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=registry,
        )
        self.http_duration = histogram(
            "polyrelay_http_request_duration_seconds",
            "HTTP request duration, from arrival to the answer's last byte.",
            ("route", "method"),
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.in_flight = gauge(
            "polyrelay_http_requests_in_flight",
            "HTTP requests being handled.",
            registry=registry,
        )
        self.streams_in_flight = gauge(
            "polyrelay_streams_in_flight",
            "Event streams being relayed.",
            registry=registry,
        )
        self.streams = counter(
            "polyrelay_streams",
            "Event streams, by how they ended: complete, client_gone, upstream_error, drained, internal_error.",
            ("route", "outcome"),
            registry=registry,
        )
        self.upstream_errors = counter(
            "polyrelay_upstream_errors",
            "Failed provider calls, by registry id and kind (upstream_unreachable, upstream_timeout, "
            "upstream_invalid_answer, or the provider's error status).",
            ("provider", "kind"),
            registry=registry,
        )
        self.overhead = histogram(
            "polyrelay_overhead_seconds",
            "Time spent in the gateway itself up to the answer's first byte (provider and tool waits excluded).",
            ("route",),
            buckets=OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.tool_calls = counter(
            "polyrelay_mcp_tool_calls",
            "MCP tool calls run by the gateway, by server and outcome (ok, error, cancelled).",
            ("server", "outcome"),
            registry=registry,
        )
        self.tool_duration = histogram(
            "polyrelay_mcp_tool_call_duration_seconds",
            "MCP tool call duration.",
            ("server",),
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.pushed_tokens = counter(
            "polyrelay_pushed_token_usage",
            "Tokens clients reported through POST /v1/metrics (OTLP), by provider, token type and source.",
            ("gen_ai_provider_name", "gen_ai_token_type", "source"),
            registry=registry,
        )
        self.auth_failures = counter(
            "polyrelay_auth_failures",
            "Requests refused for their credential (401), by reason: missing_credentials, invalid_api_key, "
            "invalid_token, invalid_request.",
            ("reason",),
            registry=registry,
        )
        self.wandb_usage_dropped = counter(
            "polyrelay_wandb_usage_dropped",
            "W&B usage records not delivered, by gateway and reason: queue_full, rejected (the server "
            "refused the batch), shutdown (still unsent when the gateway closed), closed.",
            ("gateway", "reason"),
            registry=registry,
        )
        # The series caches: label values -> children.
        self._http: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self._streams: dict[tuple[str, str], Any] = {}
        self._durations: dict[tuple[str, str, str, str, str], Any] = {}
        self._gen_ai: dict[tuple[str, str, str, str], _GenAISeries] = {}
        self._named: dict[tuple[str, str, str, str, str], list[Any]] = {}  # see _operation
        self._upstream: dict[tuple[str, str], Any] = {}
        self._auth: dict[str, Any] = {}
        self._tools: dict[tuple[str, str], tuple[Any, Any]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Metrics:
        # A worker of several (see scrape.WorkersMetrics) is a child process started with
        # prometheus-client's directory set by its supervisor, which serves the sum of all workers.
        worker = bool(os.environ.get(MULTIPROCESS_DIR)) and multiprocessing.parent_process() is not None
        metrics = cls(
            provider_names={pid: p.spec.telemetry_name for pid, p in settings.providers.items()},
            host=settings.server_host,
            port=settings.telemetry_metrics_port,
            multiprocess=worker,
        )
        if settings.aliases and not worker:  # the states live in this process (each worker has its own)
            metrics.registry.register(_AliasStates(settings.aliases))  # type: ignore[arg-type]
        return metrics

    async def start(self) -> None:
        if not self.multiprocess:
            self.server = await LoopMetricsServer.start(self.registry, self.host, self.port)

    async def close(self) -> None:
        if self.server is not None:
            await self.server.aclose()
            self.server = None

    # -- the hooks ----------------------------------------------------------------------------

    def begin(self, exchange: Exchange) -> None:
        # Unlabelled: the route is known only once the router has matched, and a gauge must come
        # down under the labels it went up with.
        self.in_flight.inc()

    def stream_started(self, exchange: Exchange) -> None:
        self.streams_in_flight.inc()

    def end(self, exchange: Exchange) -> None:
        self.in_flight.dec()
        route = exchange.route
        method = exchange.method if exchange.method in _METHODS else OTHER
        key = (route, method, exchange.status)
        http = self._http.get(key)
        if http is None:
            http = self._http[key] = (
                self.requests.labels(route, method, str(exchange.status)),
                self.http_duration.labels(route, method),
                self.overhead.labels(route),
            )
        duration = exchange.duration
        http[0].inc()
        http[1].observe(duration)
        http[2].observe(exchange.overhead)
        if exchange.stream:
            self.streams_in_flight.dec()
            outcome = (route, exchange.outcome)
            stream = self._streams.get(outcome)
            if stream is None:
                stream = self._streams[outcome] = self.streams.labels(*outcome)
            stream.inc()
        if exchange.error is not None:
            self._error(exchange)
        if exchange.operation is not None:
            self._operation(exchange, duration)

    def _error(self, exchange: Exchange) -> None:
        error = exchange.error
        if isinstance(error, UpstreamError):
            key = (exchange.provider or "", exchange.error_type or "")
            counter = self._upstream.get(key)
            if counter is None:
                counter = self._upstream[key] = self.upstream_errors.labels(*key)
            counter.inc()
        elif isinstance(error, AuthenticationFailed) and exchange.status == 401:
            reason = error.code if error.code in _AUTH_REASONS else OTHER
            counter = self._auth.get(reason)
            if counter is None:
                counter = self._auth[reason] = self.auth_failures.labels(reason)
            counter.inc()

    def _operation(self, exchange: Exchange, duration: float) -> None:
        usage = exchange.tokens()
        operation, pid, error_type = exchange.operation or "", exchange.provider or "", exchange.error_type or ""
        # By the exchange's own names once both are labels (the usual request): then labelling them
        # again would change nothing, so one lookup replaces it.
        named = (operation, pid, exchange.model or "", exchange.response_model or "", error_type)
        children = self._named.get(named)
        if children is None:
            children = self._children(named, accepted=exchange.status < 400)
        children[0].observe(duration)
        first_token = exchange.first_token if exchange.stream else None
        if usage is None and first_token is None:
            return
        series = children[1]
        if series is None:
            series = children[1] = self._series(children[2])
        if usage is not None:
            series.input.observe(usage.input)
            series.output.observe(usage.output)
            # OpenAI reports zero cached and reasoning tokens on every answer: a zero is left out, so
            # these series count the requests that did use a cache or reasoning.
            if usage.cache_read:
                series.token("cache_read").observe(usage.cache_read)
            if usage.cache_write:
                series.token("cache_write").observe(usage.cache_write)
            if usage.reasoning:
                series.token("reasoning").observe(usage.reasoning)
        if first_token is not None:
            ttft = first_token - exchange.started
            series.ttft.observe(ttft)
            if usage is not None and usage.output > 1:
                series.tpot.observe((duration - ttft) / (usage.output - 1))

    def _children(self, named: tuple[str, str, str, str, str], accepted: bool) -> list[Any]:
        """[duration child, GenAI series (made when first needed), their labels] of an operation;
        remembered by its names when both are label values as they are."""
        operation, pid, model, answered, error_type = named
        request_model = self.request_models.label(pid, model, accepted)
        response_model = self.response_models.label(pid, answered, accepted) if answered else ""
        key = (operation, pid, request_model, response_model, error_type)
        child = self._durations.get(key)
        if child is None:
            provider = self.provider_names.get(pid, pid)
            child = self._durations[key] = self.duration.labels(
                operation, provider, request_model, response_model, error_type
            )
        base = (operation, pid, request_model, response_model)
        children = [child, self._gen_ai.get(base), base]
        if (pid, model) in self.request_models.admitted and (
            not answered or (pid, answered) in self.response_models.admitted
        ):
            self._named[named] = children
        return children

    def _series(self, base: tuple[str, str, str, str]) -> _GenAISeries:
        series = self._gen_ai.get(base)
        if series is None:
            operation, pid, request_model, response_model = base
            labels = (operation, self.provider_names.get(pid, pid), request_model, response_model)
            series = self._gen_ai[base] = _GenAISeries(self, labels)
        return series

    def tool_end(self, call: ToolCall) -> None:
        error = call.error
        outcome = "ok" if error is None else "cancelled" if error == "CancelledError" else "error"
        key = (call.server, outcome)
        children = self._tools.get(key)
        if children is None:
            children = self._tools[key] = (self.tool_calls.labels(*key), self.tool_duration.labels(call.server))
        children[0].inc()
        children[1].observe(call.duration)
