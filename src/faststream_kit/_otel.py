"""OpenTelemetry for every stream: a span and metrics per response, when the app has them.

Optional: nothing here imports ``opentelemetry`` until the first stream starts, and then only
if it is installed; without it (or without a configured provider) a response pays one
attribute check. The names are documented in ``docs/observability.md``; the GenAI ones follow
the OpenTelemetry semantic conventions for generative AI.

The span is started in the context the response runs in, so it is a child of the server span
of whatever telemetry the app uses (FastAPI's own, Starlette's ``OpenTelemetryMiddleware``, the
ASGI instrumentation). The global tracer and meter providers are used, as those do by default.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from starlette.types import Scope

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, UpDownCounter
    from opentelemetry.trace import Span, Tracer

__all__ = ["Outcome", "StreamTelemetry", "start_stream_telemetry"]

Outcome = Literal[
    "completed", "client_disconnected", "error", "send_timeout", "idle_timeout", "shutdown"
]

_NAMESPACE = "faststream_kit"


class _Instruments:
    """The tracer and the metric instruments, made once (the API's proxies follow a provider
    configured later)."""

    def __init__(self) -> None:
        from opentelemetry import metrics, trace

        self.trace = trace
        self.metrics = metrics
        self.tracer: Tracer = trace.get_tracer(_NAMESPACE)
        meter = metrics.get_meter(_NAMESPACE)
        self.time_to_first_byte: Histogram = meter.create_histogram(
            "faststream_kit.stream.time_to_first_byte",
            unit="s",
            description="Time from the start of a streaming response to its first byte",
        )
        self.duration: Histogram = meter.create_histogram(
            "faststream_kit.stream.duration",
            unit="s",
            description="Time from the start of a streaming response to the end of its stream",
        )
        self.outcomes: Counter = meter.create_counter(
            "faststream_kit.stream.outcomes",
            unit="{stream}",
            description="Streams ended, by outcome",
        )
        self.open_streams: UpDownCounter = meter.create_up_down_counter(
            "faststream_kit.stream.open",
            unit="{stream}",
            description="Streams currently open",
        )
        self.token_usage: Histogram = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens used per LLM stream, by token type",
        )
        self.time_to_first_token: Histogram = meter.create_histogram(
            "faststream_kit.llm.time_to_first_token",
            unit="s",
            description="Time from the start of an LLM stream to the model's first output",
        )

    def configured(self) -> bool:
        """Whether the app set a tracer or meter provider (the API's defaults record nothing)."""
        tracer_provider = self.trace.get_tracer_provider()
        meter_provider = self.metrics.get_meter_provider()
        return not (
            type(tracer_provider).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider")
            and type(meter_provider).__name__ in ("_ProxyMeterProvider", "NoOpMeterProvider")
        )


_instruments: _Instruments | None = None
_unavailable = False


def start_stream_telemetry(
    scope: Scope, attributes: Mapping[str, Any] | None
) -> StreamTelemetry | None:
    """A started span and open-stream count for this response, or None without OpenTelemetry."""
    global _instruments, _unavailable
    if _unavailable:
        return None
    if _instruments is None:
        try:
            _instruments = _Instruments()
        except ImportError:
            _unavailable = True  # not installed: never try again
            return None
    if not _instruments.configured():
        return None
    return StreamTelemetry(_instruments, scope, attributes)


def _route_of(scope: Scope) -> str | None:
    path_format = getattr(scope.get("route"), "path_format", None)
    if not isinstance(path_format, str):
        return None
    return scope.get("root_path", "").rstrip("/") + path_format or "/"


class StreamTelemetry:
    """One stream's span and measurements, from the start of the response to its end."""

    __slots__ = (
        "_instruments",
        "_metric_attributes",
        "_started",
        "first_byte",
        "keepalives",
        "span",
    )

    def __init__(
        self, instruments: _Instruments, scope: Scope, attributes: Mapping[str, Any] | None
    ) -> None:
        self._instruments = instruments
        self._started = time.monotonic()
        self.first_byte: float | None = None
        self.keepalives = 0
        route = _route_of(scope)
        self._metric_attributes: dict[str, str] = {"http.route": route} if route else {}
        self.span: Span = instruments.tracer.start_span(
            f"stream {route}" if route else "stream", attributes=attributes
        )
        instruments.open_streams.add(1, self._metric_attributes)

    def annotate(self, attributes: Mapping[str, Any]) -> None:
        """Attributes a helper learns while streaming (an LLM's usage, an object's size)."""
        self.span.set_attributes(attributes)

    def byte_sent(self) -> None:
        """The first byte of the response (headers) went out now."""
        if self.first_byte is None:
            self.first_byte = time.monotonic()

    def since_start(self) -> float:
        return time.monotonic() - self._started

    def finish(
        self, outcome: Outcome, *, sent_bytes: int, chunks: int, error_type: str | None
    ) -> None:
        instruments, span = self._instruments, self.span
        duration = time.monotonic() - self._started
        attributes: dict[str, Any] = {
            "faststream_kit.outcome": outcome,
            "faststream_kit.bytes": sent_bytes,
            "faststream_kit.chunks": chunks,
            "faststream_kit.keepalives": self.keepalives,
        }
        if self.first_byte is not None:
            first_byte = self.first_byte - self._started
            attributes["faststream_kit.time_to_first_byte"] = first_byte
            instruments.time_to_first_byte.record(first_byte, self._metric_attributes)
        if error_type is not None:
            attributes["faststream_kit.error.type"] = error_type
            attributes["error.type"] = error_type
        span.set_attributes(attributes)
        if outcome in ("error", "send_timeout", "idle_timeout"):
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, error_type or outcome))
        span.end()
        instruments.duration.record(
            duration, {**self._metric_attributes, "faststream_kit.outcome": outcome}
        )
        instruments.outcomes.add(1, {**self._metric_attributes, "faststream_kit.outcome": outcome})
        instruments.open_streams.add(-1, self._metric_attributes)

    def llm_usage(
        self,
        *,
        input_tokens: int | None,
        output_tokens: int | None,
        provider: str | None,
    ) -> None:
        """Record the GenAI token usage metric for an LLM stream."""
        attributes = {"gen_ai.operation.name": "chat"}
        if provider is not None:
            attributes["gen_ai.provider.name"] = provider
        if input_tokens is not None:
            self._instruments.token_usage.record(
                input_tokens, {**attributes, "gen_ai.token.type": "input"}
            )
        if output_tokens is not None:
            self._instruments.token_usage.record(
                output_tokens, {**attributes, "gen_ai.token.type": "output"}
            )

    def llm_first_token(self, seconds: float, provider: str | None) -> None:
        attributes = {"gen_ai.provider.name": provider} if provider else {}
        self._instruments.time_to_first_token.record(seconds, attributes)
