"""Telemetry for the tools operators already run: Prometheus metrics and OpenTelemetry traces
from the worker side.

Traces follow one event from the webhook through the workflow into each activity and model
call: Temporal's :class:`~temporalio.contrib.opentelemetry.TracingInterceptor` carries the
context in headers (client → workflow → activity), and :class:`TelemetryInterceptor` adds a
span per model call with the GenAI semantic conventions (``gen_ai.*``). Tracing is on only
when configured: ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (exported by OTLP over HTTP), or a
provider passed to :func:`configure_tracing` (an application's own, a test's in-memory one).

Metrics go to prometheus-client's default registry, which the HTTP server's ``/metrics``
serves when the worker runs in its process (``chamberlain dev``); a separate worker process
exposes its own with ``prometheus_client.start_http_server(port)``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import Counter, Histogram
from temporalio import activity
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from chamberlain.agents._steps import ModelCall, ModelReply

OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
STEP_SECONDS = Histogram(
    "chamberlain_step_seconds",
    "Latency of a graph step's activity, by activity type and outcome",
    ["activity", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TOKENS = Counter("chamberlain_model_tokens", "Model tokens used, by model and direction", ["model", "direction"])

_provider: TracerProvider | None = None
_from_env = False


def configure_tracing(provider: TracerProvider | None) -> None:
    """Trace with ``provider`` (``None``: stop tracing) instead of what the environment says."""
    global _provider, _from_env
    _provider, _from_env = provider, True


def tracer() -> trace.Tracer | None:
    """This process's tracer, or ``None`` when tracing is not configured."""
    global _provider, _from_env
    if not _from_env:
        _from_env = True
        if os.environ.get(OTLP_ENDPOINT):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            service = os.environ.get("OTEL_SERVICE_NAME", "chamberlain")
            _provider = TracerProvider(resource=Resource.create({"service.name": service}))
            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint and headers from env
    return _provider.get_tracer("chamberlain") if _provider else None


def tracing_interceptors() -> list[TracingInterceptor]:
    """Temporal's tracing interceptor on this process's tracer, if tracing is configured."""
    found = tracer()
    return [TracingInterceptor(found)] if found else []


class TelemetryInterceptor(Interceptor):
    """Step latency and tokens as metrics; each model call as a GenAI span. (Decisions are
    counted from the audit log, where every process's gate writes them: see ``/metrics``.)"""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Observe(next)


class _Observe(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        call = input.args[0] if input.args else None
        started, outcome = time.perf_counter(), "failed"
        try:
            if isinstance(call, ModelCall) and (found := tracer()):
                result = await self._model_call(found, call, input)
            else:
                result = await super().execute_activity(input)
            outcome = "completed"
        finally:
            STEP_SECONDS.labels(info.activity_type, outcome).observe(time.perf_counter() - started)
        if isinstance(result, ModelReply):
            TOKENS.labels(result.model, "input").inc(result.usage.input_tokens)
            TOKENS.labels(result.model, "output").inc(result.usage.output_tokens)
        return result

    async def _model_call(self, found: trace.Tracer, call: ModelCall, input: ExecuteActivityInput) -> Any:
        """One model call as a GenAI client span (``gen_ai.*`` semantic conventions)."""
        requested = call.model or (call.tier.value if call.tier else "default")
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": requested,
            "chamberlain.step_id": call.step.step_id,
        }
        kind = trace.SpanKind.CLIENT
        with found.start_as_current_span(f"chat {requested}", kind=kind, attributes=attributes) as span:
            result = await super().execute_activity(input)
            if isinstance(result, ModelReply):
                span.set_attribute("gen_ai.response.model", result.model)
                span.set_attribute("gen_ai.usage.input_tokens", result.usage.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", result.usage.output_tokens)
                if result.error or result.skipped:
                    span.set_attribute("error.type", "skipped" if result.skipped else "invalid_output")
            return result
