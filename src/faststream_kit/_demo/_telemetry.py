"""OpenTelemetry for the demo, from the standard environment variables.

``OTEL_TRACES_EXPORTER=console`` (and/or ``OTEL_METRICS_EXPORTER=console``) prints every
stream's span (and the metrics) to the terminal: what an app sees once it configures its own
exporter. Needs ``opentelemetry-sdk`` (in the ``demo`` extra).
"""

from __future__ import annotations

import os
import sys

from starlette.types import ASGIApp

__all__ = ["with_telemetry"]


def with_telemetry(app: ASGIApp) -> ASGIApp:
    """The app, with server spans and a console exporter if the environment asks for one."""
    traces = os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")
    metrics_exporters = os.environ.get("OTEL_METRICS_EXPORTER", "").split(",")
    if "console" not in traces and "console" not in metrics_exporters:
        return app
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            ConsoleMetricExporter,
            PeriodicExportingMetricReader,
        )
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
        from starlette.middleware.opentelemetry import OpenTelemetryMiddleware
    except ImportError as exc:
        print(f"OpenTelemetry export needs {exc.name}: pip install 'faststream-kit[demo]'")
        return app
    if "console" in traces:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
        trace.set_tracer_provider(provider)
    if "console" in metrics_exporters:
        reader = PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stdout))
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return OpenTelemetryMiddleware(app)
