"""An LLM stream's span attributes, in the OpenTelemetry GenAI semantic conventions.

Recorded when the stream ends, also when the client left first: usage is what the provider
reported, or, when it reported none (an abandoned stream), the count of output pieces sent,
marked ``faststream_kit.llm.usage_estimated`` (most providers stream about one token a piece).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._providers import Reader

if TYPE_CHECKING:
    from .._otel import StreamTelemetry

__all__ = ["record_llm_telemetry"]

logger = logging.getLogger("faststream_kit")

_PROVIDER_NAMES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "langchain": "langchain",
}
"""Provider module -> ``gen_ai.provider.name`` (the convention's well-known values)."""


def record_llm_telemetry(
    telemetry: StreamTelemetry,
    finish_reason: str | None,
    usage: dict[str, int] | None,
    reader: Reader | None,
    model: str | None,
    first_output: float | None,
    outputs: int,
) -> None:
    try:
        provider = None
        if reader is not None:
            provider = _PROVIDER_NAMES.get(type(reader).__module__.rsplit(".", 1)[-1])
        attributes: dict[str, Any] = {"gen_ai.operation.name": "chat"}
        if provider is not None:
            attributes["gen_ai.provider.name"] = provider
        if model is not None:
            attributes["gen_ai.request.model"] = model
        if finish_reason is not None:
            attributes["gen_ai.response.finish_reasons"] = [finish_reason]
        input_tokens: int | None = None
        if usage is not None:
            input_tokens = usage.get("prompt_tokens")
            output_tokens = usage.get("completion_tokens", outputs)
        else:
            output_tokens = outputs
            attributes["faststream_kit.llm.usage_estimated"] = True
        if input_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = input_tokens
        attributes["gen_ai.usage.output_tokens"] = output_tokens
        if first_output is not None:
            attributes["faststream_kit.llm.time_to_first_token"] = first_output
            generating = telemetry.since_start() - first_output
            if generating > 0 and output_tokens:
                attributes["faststream_kit.llm.output_tokens_per_second"] = (
                    output_tokens / generating
                )
            telemetry.llm_first_token(first_output, provider)
        telemetry.annotate(attributes)
        telemetry.llm_usage(
            input_tokens=input_tokens, output_tokens=output_tokens, provider=provider
        )
    except Exception:
        logger.exception("recording the LLM stream's telemetry failed")
