"""``POST /v1/metrics``: clients push their token usage in OTLP (TELEMETRY_METRICS_PUSH_ENABLED).

For clients that call providers without the gateway (a subscription CLI, say) and still want their
usage on the gateway's dashboards, as inference-gateway offers. The body is an OTLP
``ExportMetricsServiceRequest``, protobuf (``application/x-protobuf``) or JSON (``application/json``),
gzip allowed, 4 MiB at most once decoded. Accepted: ``gen_ai.client.token.usage`` as a sum with delta
temporality (each data point an amount of tokens: ``gen_ai.token.type`` one of input, output,
cache_read, cache_write, reasoning; ``gen_ai.provider.name``; ``source``, else the resource's
``service.name``). Each adds to ``polyrelay_pushed_token_usage_total``; anything else is counted
as rejected in the answer's ``partialSuccess``, as OTLP has it.

Labels stay bounded: a provider name that is not one the gateway knows is "other", and at most
``SOURCE_CAP`` sources are kept per process (then "other").
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from providers.errors import InvalidRequest, PayloadTooLarge, PermissionDenied

from ..body import read_body

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = ["MAX_DECODED", "MetricsPush"]

MAX_DECODED = 4 * 1024 * 1024
SOURCE_CAP = 50
TOKEN_TYPES = frozenset({"input", "output", "cache_read", "cache_write", "reasoning"})
_METRIC = "gen_ai.client.token.usage"
_DELTA = 1  # AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
_PROTOBUF = "application/x-protobuf"


def _unsupported(message: str) -> InvalidRequest:
    return InvalidRequest(message, status=415, code="unsupported_media_type")


class MetricsPush:
    """The route; ``metrics`` is ``None`` when pushing is off (then 403, as inference-gateway)."""

    def __init__(self, metrics: Metrics | None, read_timeout: float) -> None:
        self.metrics = metrics
        self.read_timeout = read_timeout
        self.sources: set[str] = set()
        self.providers = frozenset(metrics.provider_names.values()) if metrics is not None else frozenset()

    async def handle(self, request: Request) -> Response:
        if self.metrics is None:
            raise PermissionDenied(
                "Pushing metrics is off on this gateway: set TELEMETRY_ENABLED=true and "
                "TELEMETRY_METRICS_PUSH_ENABLED=true.",
                code="metrics_push_disabled",
            )
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind not in (_PROTOBUF, "application/json"):
            raise _unsupported(
                f"Send an OTLP ExportMetricsServiceRequest as {_PROTOBUF} or application/json, not {kind or 'nothing'}."
            )
        body = await read_body(request, MAX_DECODED, self.read_timeout)
        body = _decoded(body, request.headers.get("content-encoding", "").strip().lower())
        from google.protobuf import json_format
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as otlp

        export = otlp.ExportMetricsServiceRequest()
        try:
            if kind == _PROTOBUF:
                export.ParseFromString(body)
            else:
                json_format.Parse(body.decode("utf-8"), export)
        except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"The body is not a valid OTLP ExportMetricsServiceRequest: {exc}") from None
        rejected, problems = self._record(export)
        answer = otlp.ExportMetricsServiceResponse()
        if rejected:
            answer.partial_success.rejected_data_points = rejected
            answer.partial_success.error_message = "; ".join(sorted(problems))[:1000]
        if kind == _PROTOBUF:
            return Response(answer.SerializeToString(), media_type=_PROTOBUF)
        return Response(json_format.MessageToJson(answer, indent=None), media_type="application/json")

    def _record(self, export: Any) -> tuple[int, set[str]]:
        assert self.metrics is not None
        counter = self.metrics.pushed_tokens
        rejected, problems = 0, set()
        for resource_metrics in export.resource_metrics:
            service = _attributes(resource_metrics.resource.attributes).get("service.name", "")
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    points = list(getattr(metric, kind).data_points) if kind else []
                    if metric.name != _METRIC:
                        rejected += len(points)
                        problems.add(f"unsupported metric {metric.name!r}")
                        continue
                    if kind != "sum" or metric.sum.aggregation_temporality != _DELTA:
                        rejected += len(points)
                        problems.add(f"{_METRIC}: only a sum with delta temporality is supported")
                        continue
                    for point in points:
                        labels = _attributes(point.attributes)
                        token_type = labels.get("gen_ai.token.type", "")
                        value = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
                        if token_type not in TOKEN_TYPES or value < 0:
                            rejected += 1
                            problems.add(f"{_METRIC}: a data point needs gen_ai.token.type and a count >= 0")
                            continue
                        provider = labels.get("gen_ai.provider.name", "")
                        provider = provider if provider in self.providers else "other"
                        source = self._source(labels.get("source") or service or "unknown")
                        counter.labels(provider, token_type, source).inc(value)
        return rejected, problems

    def _source(self, source: str) -> str:
        if source in self.sources:
            return source
        if len(self.sources) < SOURCE_CAP and len(source) <= 64 and source.isprintable():
            self.sources.add(source)
            return source
        return "other"


def _attributes(pairs: Iterable[Any]) -> dict[str, Any]:
    found = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        if kind in ("string_value", "int_value", "bool_value", "double_value"):
            found[pair.key] = getattr(pair.value, kind)
    return found


def _decoded(body: bytes, coding: str) -> bytes:
    if coding in ("", "identity"):
        return body
    if coding != "gzip":
        raise _unsupported(f"Content-Encoding {coding!r} is not supported; send gzip or none.")
    # gzip's framing (16 + MAX_WBITS), decoded up to the limit: a small bomb cannot expand past it.
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        decoded = decoder.decompress(body, MAX_DECODED + 1)
    except zlib.error as exc:
        raise InvalidRequest(f"The body is not valid gzip: {exc}") from None
    if len(decoded) > MAX_DECODED or decoder.unconsumed_tail:
        raise PayloadTooLarge(f"The decoded body is larger than {MAX_DECODED} bytes (4 MiB).")
    return decoded
