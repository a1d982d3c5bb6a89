"""``bench/_apps.py`` with the OpenTelemetry SDK configured as an app would configure it.

A tracer provider with a batch span processor and an exporter that drops what it gets (the
cost of export is the exporter's, not ours), and a meter provider with a reader: every stream
records its span and metrics. Served by ``bench/otel.py`` beside the plain app.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench._apps import app
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class DroppingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
trace.set_tracer_provider(provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))

__all__ = ["app"]
